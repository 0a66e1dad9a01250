"""Template filters for measurements: a volume the visit's sequences do not support is null,
and is shown as words, never as a number."""

from __future__ import annotations

from typing import Any

from django import template
from django.template.defaultfilters import floatformat

from tracker.reports.exports import REVIEW_VERBS

register = template.Library()

NOT_MEASURED = "not measured"


@register.filter
def measured(value: Any, digits: int = 2) -> str:
    """``floatformat`` of a number; 'not measured' for null (a region the sequences do not
    support)."""
    if value is None:
        return NOT_MEASURED
    return str(floatformat(value, digits))


@register.filter
def review_verb(action: Any) -> str:
    """A review's action as people read it: 'agreed' (the API's 'confirm': not a RANO
    confirmation) or 'overridden'."""
    return REVIEW_VERBS.get(str(action), str(action))


@register.filter
def signed_percent(value: Any) -> str:
    """+25.3 % / -50.0 %; '–' for null. One decimal, as everywhere a change is shown."""
    if value is None:
        return "–"
    return f"{float(value):+.1f} %".replace("-", "\u2212")
