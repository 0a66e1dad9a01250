"""The pages care teams use (server-rendered views and their URLs)."""
