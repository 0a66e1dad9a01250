"""Server-rendered pieces of the web pages and reports (charts) that need no database."""
