"""The tumour-board progression report: one PDF per patient (WeasyPrint), built from the same
timeline dict as the pages and exports. Pseudonymised: the label and code only."""

from __future__ import annotations

import base64
from typing import Any

from django.template.loader import render_to_string

from inference.measurement.render import key_slice_png, legend, read_meta
from tracker.charts import growth_chart_svg
from tracker.models import AnalysisRun, Category, Patient
from tracker.services.display import display_ensure, display_same_place
from tracker.timeline import headline

CATEGORY_NAMES: dict[str, str] = dict(Category.choices)


_OWN_IMAGES = ("data:image/png;base64,", "data:image/svg+xml;base64,")


def _url_fetcher() -> Any:
    """WeasyPrint's fetcher, serving only the images this module embeds (PNG and SVG data
    URIs) and refusing everything else: no file:, http: or other data: resource is ever read
    while a report is built, whatever text a report holds."""
    from weasyprint.urls import URLFetcher  # noqa: PLC0415

    class OwnImagesOnly(URLFetcher):  # type: ignore[misc]
        def fetch(self, url: str, headers: Any = None) -> Any:
            if not url.startswith(_OWN_IMAGES):
                raise ValueError(f"the report reads no outside resource ({url[:60]!r} refused)")
            return super().fetch(url, headers)

    return OwnImagesOnly(allowed_protocols=("data",), allow_redirects=False)


def _data_uri(content: bytes, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(content).decode('ascii')}"


def key_visits(timeline: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Baseline and nadir as the RANO engine found them (``baseline_visit``, ``nadir_visit``;
    the first analysed visit where there is no baseline yet), the peak (the largest sum of
    products since the baseline) and the latest analysed visit; each named once."""
    analysed = [v for v in timeline["visits"] if v["results"] is not None]
    if not analysed:
        return []
    by_code = {v["code"]: v for v in analysed}
    baseline = by_code.get(timeline.get("baseline_visit") or "", analysed[0])
    nadir = by_code.get(timeline.get("nadir_visit") or "")
    since = [v for v in analysed if v["acquired_on"] >= baseline["acquired_on"]]
    sized = [v for v in since if v["results"].get("sum_of_products_mm2") is not None]
    peak = max(sized, key=lambda v: v["results"]["sum_of_products_mm2"]) if sized else None
    latest = analysed[-1]
    chosen: list[tuple[str, dict[str, Any]]] = []
    landmarks = (("baseline", baseline), ("nadir", nadir), ("peak", peak), ("latest", latest))
    for name, visit in [(n, v) for n, v in landmarks if v is not None]:
        for index, (other_name, other) in enumerate(chosen):
            if other["code"] == visit["code"]:
                chosen[index] = (f"{other_name} and {name}", other)
                break
        else:
            chosen.append((name, visit))
    return chosen


def _key_slices(timeline: dict[str, Any]) -> list[dict[str, Any]]:
    chosen = key_visits(timeline)
    runs = {
        str(run.code): run
        for run in AnalysisRun.objects.filter(
            code__in=[visit["results"]["run"] for _, visit in chosen]
        )
    }
    slices = []
    for name, visit in chosen:
        run = runs.get(visit["results"]["run"])
        folder = display_ensure(run=run) if run is not None else None
        picture, shown = None, []
        if folder is not None:
            picture = _data_uri(key_slice_png(folder, scale=1), "image/png")
            shown = read_meta(folder).get("labels_shown", [1, 2, 3])
        slices.append({"name": name, "visit": visit, "picture": picture, "labels_shown": shown})
    return slices


def _same_place(timeline: dict[str, Any], key_slices: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest key visit's key slice (its largest target lesion's, diameters drawn) and the
    same place at the other key visits, each brought onto it through the registrations."""
    if len(key_slices) < 2 or key_slices[-1]["picture"] is None:
        return {}
    runs = {
        str(run.code): run
        for run in AnalysisRun.objects.select_related("visit").filter(
            code__in=[k["visit"]["results"]["run"] for k in key_slices]
        )
    }
    latest = key_slices[-1]
    reference = runs.get(latest["visit"]["results"]["run"])
    others = [runs.get(k["visit"]["results"]["run"]) for k in key_slices[:-1]]
    if reference is None or any(run is None for run in others):
        return {}
    found = display_same_place(reference=reference, others=[r for r in others if r is not None])
    pictures = [
        {
            "name": k["name"],
            "visit": k["visit"],
            "picture": None if p.picture is None else _data_uri(p.picture, "image/png"),
            "problem": p.problem,
            "flagged": p.flagged,
            "through": p.through,
        }
        for k, p in zip(key_slices[:-1], found, strict=True)
    ]
    pictures.append({**latest, "problem": "", "flagged": False, "through": []})
    return {"reference": latest["visit"], "pictures": pictures}


def _legend(key_slices: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The colours the key slices use (a visit without T1c: one whole-tumour colour)."""
    return legend(v for k in key_slices for v in k["labels_shown"])


def _state(confirmed: bool | None) -> str:
    """True / False where the category needs confirming, None where it does not."""
    if confirmed is None:
        return "–"
    return "confirmed" if confirmed else "preliminary"


def _rows(timeline: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for visit in timeline["visits"]:
        assessment = visit["assessment"]
        review = visit["reviews"][0] if visit["reviews"] else None
        change = (assessment or {}).get("relative_change")
        rows.append(
            {
                "change": "–" if change is None else f"{100 * change:+.1f} %",
                "state": _state((assessment or {}).get("confirmed")),
                "visit": visit,
                "results": visit["results"],
                "assessment": assessment,
                "category_name": CATEGORY_NAMES.get((assessment or {}).get("category", ""), ""),
                "review": review,
            }
        )
    return rows


def progression_report(
    patient: Patient, timeline: dict[str, Any], *, generated_at: str, by: Any
) -> bytes:
    """The PDF bytes."""
    from weasyprint import HTML  # noqa: PLC0415

    chart = growth_chart_svg(timeline, width=900, height=400, interactive=False)
    models = sorted(
        {
            f"{v['results']['model']['name']} {v['results']['model']['version']}".strip()
            for v in timeline["visits"]
            if v["results"]
        }
    )
    registrations = [
        (visit, registration)
        for visit in timeline["visits"]
        if visit["results"]
        for registration in visit["results"]["registrations"]
    ]
    key_slices = _key_slices(timeline)
    same_place = _same_place(timeline, key_slices)
    html = render_to_string(
        "reports/progression.html",
        {
            "patient": patient,
            "timeline": timeline,
            "headline": headline(timeline),
            "rows": _rows(timeline),
            "chart": _data_uri(chart.encode("utf-8"), "image/svg+xml"),
            "key_slices": key_slices,
            "same_place": same_place,
            "legend": _legend(key_slices),
            "models": models,
            "registrations": registrations,
            "generated_at": generated_at,
            "generated_by": getattr(by, "username", ""),
        },
    )
    pdf: bytes = HTML(string=html, url_fetcher=_url_fetcher()).write_pdf()
    return pdf
