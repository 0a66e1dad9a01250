"""The admin: patient data read there is audited like the pages; the audit log is read-only
(append-only: no one edits or deletes a row); API tokens are stored and shown only as digests
(django-rest-knox), and deleting one revokes it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from knox.admin import AuthTokenAdmin
from knox.models import AuthToken
from knox.settings import knox_settings

from tracker import models
from tracker.services.learning import model_activate
from tracker.services.visits import ConflictError, audit


def _patient_of(obj: Any) -> models.Patient | None:
    if isinstance(obj, models.Patient):
        return obj
    if isinstance(obj, models.TreatmentEvent | models.Visit):
        return obj.patient
    if isinstance(obj, models.Scan | models.AnalysisRun | models.Assessment | models.Review):
        return obj.visit.patient
    return None


class AuditedAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Every list and record of patient data opened in the admin is an audit event."""

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        audit(
            user=request.user,
            action=f"admin_list_{self.model._meta.model_name}",
            patient=None,
            query=request.GET.urlencode()[:200],
        )
        return super().changelist_view(request, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        audit(
            user=request.user,
            action=f"admin_read_{self.model._meta.model_name}",
            patient=_patient_of(obj),
            code=str(getattr(obj, "code", object_id)),
        )
        return super().change_view(request, object_id, form_url, extra_context)


for model in (
    models.Patient,
    models.TreatmentEvent,
    models.Visit,
    models.Scan,
    models.AnalysisRun,
    models.Assessment,
    models.Review,
):
    admin.site.register(model, AuditedAdmin)

admin.site.register(models.CareTeam)
admin.site.register(models.Membership)


@admin.register(models.AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only: the audit log is appended to by the service and never edited or deleted."""

    list_display = ("at", "user", "action", "patient", "object_code")
    list_filter = ("action",)
    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class ExpiringTokenAdmin(AuthTokenAdmin):  # type: ignore[misc]
    """Tokens by the start of their digest; the token itself is shown once, when an admin makes
    one for an integration, and that one expires like any other."""

    list_display = ("fingerprint", "user", "created", "expiry")
    search_fields = ("user__username",)

    @admin.display(description="digest (SHA-512)")
    def fingerprint(self, token: AuthToken) -> str:
        return str(token.digest)[:12]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: AuthToken, form: Any, change: bool) -> None:
        if obj.expiry is None:
            obj.expiry = timezone.now() + knox_settings.TOKEN_TTL
        super().save_model(request, obj, form, change)


@admin.register(models.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Registered models (``register_model``): read-only but for activation, which needs an
    evaluation on corrected visits the model did not train on (``evaluate_model``)."""

    list_display = (
        "name",
        "version",
        "is_active",
        "evaluated_at",
        "held_out_cases",
        "activated_by",
    )
    readonly_fields = [f.name for f in models.ModelVersion._meta.fields]
    actions = ["activate"]

    @admin.display(description="held-out corrected visits")
    def held_out_cases(self, obj: models.ModelVersion) -> Any:
        return obj.evaluation.get("cases")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # registered from a weights folder: manage.py register_model

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # runs name the model they used

    @admin.action(
        description="Activate for new analyses (evaluated models only)", permissions=["change"]
    )
    def activate(self, request: HttpRequest, queryset: Any) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Choose one model to activate.", level="error")
            return
        model = queryset.get()
        try:
            model_activate(model=model, by=request.user.get_username())
        except ConflictError as error:
            self.message_user(request, str(error), level="error")
            return
        self.message_user(request, f"{model} is active: new analyses use it.")
