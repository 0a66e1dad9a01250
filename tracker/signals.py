"""Failed logins are audit events (who was tried, from where); django-axes locks them out."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from tracker.models import AuditEvent


@receiver(user_login_failed)
def audit_failed_login(
    sender: Any, credentials: dict[str, Any], request: Any = None, **_: Any
) -> None:
    AuditEvent.objects.create(
        action="login_failed",
        detail={
            "username": str(credentials.get("username", ""))[:150],
            "address": (request.META.get("REMOTE_ADDR", "") if request is not None else ""),
            "path": (request.path if request is not None else ""),
        },
    )
