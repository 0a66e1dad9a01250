from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from tracker.api.health import healthz
from tracker.api.tokens import TokenIssueApi, TokenRevokeAllApi, TokenRevokeApi

urlpatterns = [
    path("", include("tracker.web.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("tracker.api.urls")),
    path("api/token/", TokenIssueApi.as_view(), name="api-token"),
    path("api/token/revoke/", TokenRevokeApi.as_view(), name="api-token-revoke"),
    path("api/token/revoke-all/", TokenRevokeAllApi.as_view(), name="api-token-revoke-all"),
    path("api-auth/", include("rest_framework.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI from vendored files, its start-up script a file too (no inline script: CSP).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html"),
        name="api-docs",
    ),
    path("healthz/", healthz, name="healthz"),
]

# Errors under /api/ come back as JSON (tracker/api/errors.py); the pages keep HTML.
handler400 = "tracker.api.errors.bad_request"
handler403 = "tracker.api.errors.permission_denied"
handler404 = "tracker.api.errors.not_found"
handler500 = "tracker.api.errors.server_error"
