"""The REST API: views, serializers (the OpenAPI shapes), tokens, the schema's error responses."""
