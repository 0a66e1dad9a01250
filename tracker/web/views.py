"""The pages oncology teams use: patient list, patient timeline, visit viewer, review, upload, and
the exports a tumour board takes away. Server-rendered from the same timeline dict the API
returns; scoped to the user's care teams like the API (another team's patient is a 404); every
page that shows a patient's data and every export is an audit row."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from inference.errors import InputError
from inference.measurement.render import (
    LABEL_COLOURS,
    LABEL_NAMES,
    TUMOUR_LABELS,
    display_labels,
    layer_png,
    legend,
    read_meta,
)
from tracker import inputs, selectors
from tracker.charts import growth_chart_svg
from tracker.models import (
    OVERRIDE_CATEGORIES,
    AnalysisRun,
    Assessment,
    CareTeam,
    Category,
    ClinicalStatus,
    Registration,
    Review,
    RunStatus,
    Visit,
)
from tracker.services.corrections import IN_PROGRESS, correction_from_input, segmentation_head
from tracker.services.display import display_ensure
from tracker.services.exports import EXPORTS, export_response
from tracker.services.performance import model_performance, teams_for_user
from tracker.services.uploads import FIELDS, UploadError
from tracker.services.visits import ConflictError, audit, review_create, visit_create
from tracker.storage import run_files, viewer_volume
from tracker.timeline import headline, lesion_table, segmentation_versions, timeline_dict

CATEGORY_NAMES: dict[str, str] = dict(Category.choices)
PLANES = ("axial", "coronal", "sagittal")
SEQUENCES = (("t1c", "T1 post-contrast"), ("t1", "T1"), ("t2", "T2"), ("flair", "FLAIR"))
PAGE_SIZE = 50


class NextAction:
    """Why a patient needs someone, most urgent first (the list is sorted by it)."""

    FAILED = 0
    REVIEW_PROGRESSION = 1
    REVIEW = 2
    RUNNING = 3
    NO_VISITS = 4
    NONE = 5
    LABELS = {
        FAILED: "analysis failed: re-analyse",
        REVIEW_PROGRESSION: "review progression",
        REVIEW: "review the latest response",
        RUNNING: "analysis running",
        NO_VISITS: "upload a first visit",
        NONE: "up to date",
    }


def _annotated_patients(user: Any) -> QuerySet[Any]:
    """The user's patients with what the list shows and sorts by (annotations: the ORM's types
    do not follow them, hence ``Any``)."""
    latest = Assessment.objects.filter(visit__patient=OuterRef("pk"), is_current=True).order_by(
        "-visit__acquired_on"
    )
    failed = AnalysisRun.objects.filter(
        visit__patient=OuterRef("pk"), status=RunStatus.FAILED
    ).exclude(visit__runs__created_at__gt=F("created_at"))
    busy = AnalysisRun.objects.filter(
        visit__patient=OuterRef("pk"), status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
    )
    patients: QuerySet[Any] = selectors.patients_for_user(user)
    annotated: QuerySet[Any] = (
        patients.annotate(
            visit_count=Count("visits", distinct=True),
            last_visit=Max("visits__acquired_on"),
            last_category=Subquery(latest.values("category")[:1]),
            last_confirmed=Subquery(latest.values("confirmed")[:1]),
            last_assessment=Subquery(latest.values("pk")[:1]),
            failed=Exists(failed),
            busy=Exists(busy),
            # a progression anywhere on the timeline that no one has reviewed (not only the
            # latest visit's): the board must see it
            unreviewed_progression=Exists(
                Assessment.objects.filter(
                    visit__patient=OuterRef("pk"), is_current=True, category=Category.PD
                ).exclude(visit__reviews__isnull=False)
            ),
            registration_flagged=Exists(
                Registration.objects.filter(
                    run__visit__patient=OuterRef("pk"), run__is_current=True, passed=False
                )
            ),
        )
        .annotate(
            reviewed=Exists(Review.objects.filter(assessment=OuterRef("last_assessment"))),
            override=Subquery(
                Review.objects.filter(
                    assessment=OuterRef("last_assessment"), action=Review.Action.OVERRIDE
                )
                .order_by("-reviewed_at")
                .values("category")[:1]
            ),
        )
        .annotate(
            next_action=Case(
                When(failed=True, then=Value(NextAction.FAILED)),
                When(unreviewed_progression=True, then=Value(NextAction.REVIEW_PROGRESSION)),
                When(last_category__isnull=False, reviewed=False, then=Value(NextAction.REVIEW)),
                When(busy=True, then=Value(NextAction.RUNNING)),
                When(visit_count=0, then=Value(NextAction.NO_VISITS)),
                default=Value(NextAction.NONE),
                output_field=IntegerField(),
            )
        )
        .order_by("next_action", F("last_visit").desc(nulls_last=True), "label")
    )
    return annotated


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return redirect("web:patients")


@login_required
@require_GET
def patient_list(request: HttpRequest) -> HttpResponse:
    patients: QuerySet[Any] = _annotated_patients(request.user)
    user: Any = request.user
    query = request.GET.get("q", "").strip()
    team = request.GET.get("team", "")
    response = request.GET.get("response", "")
    status = request.GET.get("status", "")
    if query:
        patients = patients.filter(Q(label__icontains=query) | Q(diagnosis__icontains=query))
    if team:
        patients = patients.filter(team__code=team) if _is_uuid(team) else patients.none()
    if response:
        patients = patients.filter(last_category=response)
    if status == "failed":
        patients = patients.filter(failed=True)
    elif status == "running":
        patients = patients.filter(busy=True)
    elif status == "review":
        patients = patients.filter(
            Q(last_category__isnull=False, reviewed=False) | Q(unreviewed_progression=True)
        )
    page = Paginator(patients, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {
            "patient": p,
            "next_action": NextAction.LABELS[p.next_action],
            "urgent": p.next_action <= NextAction.REVIEW_PROGRESSION,
            "category": p.override or p.last_category,
            "category_name": CATEGORY_NAMES.get(p.override or p.last_category or "", ""),
        }
        for p in page
    ]
    teams = CareTeam.objects.filter(membership__user=user).order_by("name")
    audit(user=request.user, action="read_patient_list", patient=None, count=len(rows))
    return render(
        request,
        "tracker/patients.html",
        {
            "rows": rows,
            "page": page,
            "teams": teams,
            "categories": [(c, CATEGORY_NAMES[c]) for c in Category.values],
            "filters": {"q": query, "team": team, "response": response, "status": status},
            "querystring": _querystring(request, exclude="page"),
        },
    )


def _querystring(request: HttpRequest, *, exclude: str) -> str:
    params = request.GET.copy()
    params.pop(exclude, None)
    return params.urlencode()


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# --- the patient's timeline ------------------------------------------------------------------


def _badge(visit: dict[str, Any]) -> dict[str, Any] | None:
    assessment = visit["assessment"]
    if assessment is None:
        return None
    reviews = visit["reviews"]
    latest_review = reviews[0] if reviews else None
    override = latest_review if latest_review and latest_review["action"] == "override" else None
    category = override["category"] if override else assessment["category"]
    # confirmed: True / False where the category needs confirming (a response, progression),
    # None where it does not (baseline, stable disease).
    state = {True: "confirmed", False: "preliminary"}.get(assessment["confirmed"], "")
    return {
        "category": category,
        "name": CATEGORY_NAMES.get(category, category),
        "engine_category": assessment["category"],
        "state": state,
        "reviewed": latest_review,
        "overridden": override is not None,
        "reasons": assessment["reasons"],
        "relative_change": assessment["relative_change"],
        "flags": registration_flags(visit),
    }


def _visit_rows(timeline: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for visit in timeline["visits"]:
        analysis = visit["analysis"]
        results = visit["results"]
        rows.append(
            {
                "visit": visit,
                "badge": _badge(visit),
                "volumes": results["volumes_ml"] if results else None,
                "spd": results["sum_of_products_mm2"] if results else None,
                "lesion_count": None
                if not results or "TC" in results.get("not_measured", {})
                else len(results["lesions"]),
                "sequences": results.get("sequences", "") if results else "",
                "partial": bool(results and results.get("sequences_missing")),
                "busy": analysis is not None
                and analysis["status"] in {RunStatus.QUEUED, RunStatus.RUNNING},
                "failed": analysis is not None and analysis["status"] == RunStatus.FAILED,
            }
        )
    return rows


@login_required
@require_GET
def patient_detail(request: HttpRequest, code: str) -> HttpResponse:
    patient = selectors.patient_get_for_user(code, request.user)
    timeline = timeline_dict(patient)
    audit(user=request.user, action="read_timeline_page", patient=patient, code=str(patient.code))
    rows = _visit_rows(timeline)
    return render(
        request,
        "tracker/patient.html",
        {
            "patient": patient,
            "timeline": timeline,
            "rows": rows,
            "chart": growth_chart_svg(timeline),
            "busy": any(r["busy"] for r in rows),
            "treatments": timeline["treatments"],
            "headline": headline(timeline),
            "lesions": lesion_table(timeline),
        },
    )


@login_required
@never_cache
@require_GET
def patient_progress(request: HttpRequest, code: str) -> JsonResponse:
    """Pipeline state of each visit, for the page to poll while analyses run. Only run states:
    no clinical data, so polls are not audited one by one."""
    patient = selectors.patient_get_for_user(code, request.user)
    visits = []
    for visit in patient.visits.prefetch_related("runs").order_by("acquired_on"):
        run = selectors.latest_run(visit)
        visits.append(
            {
                "code": str(visit.code),
                "stage": run.stage if run else None,
                "status": run.status if run else None,
                "error": run.error if run else "",
            }
        )
    busy = any(v["status"] in {RunStatus.QUEUED, RunStatus.RUNNING} for v in visits)
    return JsonResponse({"visits": visits, "busy": busy})


# --- a visit ---------------------------------------------------------------------------------


def _qc_flags(run: AnalysisRun | None, results: dict[str, Any] | None) -> list[dict[str, Any]]:
    flags = []
    if results is not None:
        for registration in results["registrations"]:
            flags.append(
                {
                    "name": f"registration to the {registration['role']} visit",
                    "ok": registration["passed"],
                    "detail": "; ".join(registration["problems"])
                    or _registration_detail(registration["quality"]),
                }
            )
    if run is not None:
        flags.extend(_preparation_flags(run))
    return flags


def _registration_detail(quality: dict[str, Any]) -> str:
    """A passed registration's figures: the similarity after it and the rotation it found."""
    checks = quality.get("quality", {})
    parts = []
    if isinstance(checks.get("correlation_after"), int | float):
        parts.append(f"correlation {checks['correlation_after']:.2f} inside the mask")
    rotation = quality.get("transform", {}).get("rotation_deg")
    if isinstance(rotation, int | float):
        parts.append(f"rotation {rotation:.1f} degrees")
    return ", ".join(parts)


def registration_flags(visit: dict[str, Any]) -> list[str]:
    """The visit's failed registrations, each with its reason: lesion tracking (and so the
    response) and the prior comparison rest on them."""
    results = visit["results"] or {}
    return [
        f"registration to the {r['role']} visit flagged: {'; '.join(r['problems'])}"
        for r in results.get("registrations", [])
        if not r["passed"]
    ]


def _preparation_flags(run: AnalysisRun) -> list[dict[str, Any]]:
    """The brain mask's checks from the preparation's QC record."""
    try:
        qc = json.loads(run_files(run).qc.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    flags = []
    for step in qc.get("steps", []):
        if step.get("name") != "brain_mask":
            continue
        metrics = step.get("metrics", {})
        fits = metrics.get("template_registration") or []
        if metrics.get("skull_stripped_input"):
            flags.append(
                {"name": "brain mask", "ok": True, "detail": "input already skull-stripped"}
            )
        elif fits:
            last = fits[-1]
            flags.append(
                {
                    "name": "brain mask",
                    "ok": bool(last.get("plausible", False)),
                    "detail": f"template fit, {100 * float(last.get('inside_head', 0)):.0f} % "
                    f"inside the head, {float(metrics.get('volume_ml', 0)):.0f} mL",
                }
            )
    return flags


@login_required
@require_GET
def visit_detail(request: HttpRequest, code: str) -> HttpResponse:
    visit = selectors.visit_get_for_user(code, request.user)
    patient = visit.patient
    timeline = timeline_dict(patient)
    data = next(v for v in timeline["visits"] if v["code"] == str(visit.code))
    run = AnalysisRun.objects.filter(visit=visit, is_current=True).first()
    viewer = None
    if run is not None:
        folder = display_ensure(run=run)
        if folder is not None:
            meta = read_meta(folder)
            # The colours this visit and its prior use (a visit without T1c: one tumour colour).
            labels_shown = set(meta.get("labels_shown", TUMOUR_LABELS))
            labels_shown |= set((meta.get("prior") or {}).get("labels_shown", []))
            mapping = display_labels(run.supported_regions)
            z, y, x = meta["grid"]["shape_zyx"]
            shown = [(value, name) for value, name in SEQUENCES if value in meta["windows"]]
            viewer = {
                "counts": {"axial": z, "coronal": y, "sagittal": x},
                "start": meta["key_slices"],
                # to say where the crosshair is in mm (LPS, the scanner's coordinates)
                "grid": {k: meta["grid"][k] for k in ("origin_mm", "spacing_mm", "direction")},
                "prior": meta.get("prior"),
                "legend": legend(labels_shown),
                # NiiVue colours the stored label map: each stored label as it is shown.
                "niivue_labels": _niivue_colormap(mapping, LABEL_COLOURS, LABEL_NAMES),
                # Only the sequences the visit has; NiiVue shows T1c, else FLAIR.
                "sequences": shown,
                "volume": "t1c" if "t1c" in meta["windows"] else "flair",
                # each sequence's stored range (prepared units: z-score within the brain), for
                # the window/level read-out
                "windows": meta["windows"],
                # the model's tumour probability (none for a clinician's correction)
                "heat": (folder / "tumour.npy").is_file(),
            }
    audit(user=request.user, action="read_visit_page", patient=patient, code=str(visit.code))
    position = [v["code"] for v in timeline["visits"]].index(str(visit.code))
    prior = timeline["visits"][position - 1] if position > 0 else None
    return render(
        request,
        "tracker/visit.html",
        {
            "patient": patient,
            "visit": data,
            "prior": prior,
            "badge": _badge(data),
            "viewer": viewer,
            "viewer_json": json.dumps(viewer),
            "planes": PLANES,
            "sequences": viewer["sequences"] if viewer else SEQUENCES,
            "volumes": _volume_rows(data["results"]),
            "qc": _qc_flags(run, data["results"]),
            "categories": [(c, CATEGORY_NAMES[c]) for c in OVERRIDE_CATEGORIES],
            # a review refused for a reason keeps what the reviewer chose and wrote
            "draft": request.session.pop(_draft_key(visit.code), {}),
            "segmentation": _segmentation_panel(visit),
        },
    )


def _segmentation_panel(visit: Visit) -> dict[str, Any]:
    """The visit's segmentation versions, the one a correction would be drawn on (``head``),
    and whether a correction can be saved now."""
    head = segmentation_head(visit)
    busy = visit.runs.filter(status__in=IN_PROGRESS).first()
    return {
        "versions": segmentation_versions(visit),
        "head": None if head is None else str(head.code),
        "busy": None if busy is None else busy.stage,
    }


@login_required
@require_POST
def visit_correct(request: HttpRequest, code: str) -> HttpResponse:
    """A corrected label map from the visit page (drawn in the viewer or uploaded): the same
    checks as the API; the page says what was saved or why not."""
    visit = selectors.visit_get_for_user(code, request.user)
    url = reverse("web:visit", args=[visit.code]) + "#segmentation"
    data = inputs.CorrectionInput(data={**request.POST.dict(), **request.FILES.dict()})
    if not data.is_valid():
        for field, problems in data.errors.items():
            for problem in problems:
                messages.error(request, f"{field}: {problem}", extra_tags="correction")
        return redirect(url)
    fields = data.validated_data
    try:
        version = correction_from_input(visit=visit, data=fields, by=request.user)
    except UploadError as error:
        for field, problems in error.problems.items():
            for problem in problems:
                messages.error(request, f"{field}: {problem}", extra_tags="correction")
        return redirect(url)
    except ConflictError as error:
        messages.error(request, str(error), extra_tags="correction")
        return redirect(url)
    messages.success(
        request,
        f"Saved as segmentation version {version.number}: it is being measured and assessed; "
        "the numbers on this page follow when that is done.",
        extra_tags="correction",
    )
    return redirect(url)


def _draft_key(code: Any) -> str:
    return f"review-draft-{code}"


def _volume_rows(results: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each volume of the visit's results with, where it is null, why it was not measured."""
    if results is None:
        return []
    reasons = results.get("not_measured", {})
    return [
        {"name": name, "value": value, "reason": reasons.get(name, "")}
        for name, value in results["volumes_ml"].items()
    ]


def _niivue_colormap(
    mapping: dict[int, int],
    colours: dict[int, tuple[int, int, int]],
    names: dict[int, str],
) -> dict[str, list[Any]]:
    """A NiiVue label colormap (``setColormapLabel``) for the stored labels 0-3, each coloured
    as it is shown (``inference.measurement.render.display_labels``); a hidden label is
    transparent."""
    table: dict[str, list[Any]] = {"R": [0], "G": [0], "B": [0], "A": [0], "I": [0], "labels": [""]}
    for value in sorted(mapping):
        shown = mapping[value]
        r, g, b = colours.get(shown, (0, 0, 0))
        for key, item in zip(("R", "G", "B"), (r, g, b), strict=True):
            table[key].append(item)
        table["A"].append(255 if shown else 0)
        table["I"].append(value)
        table["labels"].append(names.get(shown, "").split(" (")[0] if shown else "")
    return table


@login_required
@require_GET
def visit_slice(
    request: HttpRequest, code: str, layer: str, plane: str, index: int
) -> HttpResponse:
    """One slice picture of the viewer (the visit page's read is the audited one)."""
    visit = selectors.visit_get_for_user(code, request.user)
    allowed = {name for name, _ in SEQUENCES} | {"labels", "tumour", "prior-t1c", "prior-labels"}
    if layer not in allowed or plane not in PLANES:
        raise Http404("no such layer")
    run = AnalysisRun.objects.filter(visit=visit, is_current=True).first()
    if run is None:
        raise Http404("no analysis")
    try:
        picture = layer_png(run_files(run).display, layer, plane, index)
    except InputError as error:
        raise Http404(str(error)) from None
    response = HttpResponse(picture, content_type="image/png")
    response["Cache-Control"] = "no-store"  # patient data: kept in no browser cache
    return response


@login_required
@require_GET
def visit_volume(request: HttpRequest, code: str, name: str) -> HttpResponseBase:
    """A NIfTI volume of the current run for the WebGL viewer (NiiVue): the prepared T1c or
    FLAIR, or the segmentation. Audited: the whole volume leaves the server."""
    visit = selectors.visit_get_for_user(code, request.user)
    run = AnalysisRun.objects.filter(visit=visit, is_current=True).first()
    if run is None:
        raise Http404("no analysis")
    path = viewer_volume(run, name)
    if path is None or not path.is_file():
        raise Http404("no such volume")
    audit(
        user=request.user,
        action="read_volume",
        patient=visit.patient,
        code=str(visit.code),
        volume=name,
    )
    response = FileResponse(path.open("rb"), content_type="application/octet-stream")
    response["Cache-Control"] = "no-store"  # patient data: kept in no browser cache
    return response


@login_required
@require_POST
def visit_review(request: HttpRequest, code: str) -> HttpResponse:
    visit = selectors.visit_get_for_user(code, request.user)
    url = reverse("web:visit", args=[visit.code])
    form = request.POST.dict()
    if form.get("action") != Review.Action.OVERRIDE:
        form.pop("category", None)  # the override's choice, left in the form: not sent with it
    data = inputs.ReviewInput(data=form)
    draft = {k: request.POST.get(k, "") for k in ("action", "category", "reason")}
    if not data.is_valid():
        problems = [f"{m}" for field in data.errors.values() for m in field]
        messages.error(request, "; ".join(problems))
        request.session[_draft_key(visit.code)] = draft
        return redirect(f"{url}#review")
    try:
        review_create(visit=visit, by=request.user, **data.validated_data)
    except (ConflictError, ValueError) as error:
        messages.error(request, str(error))
        request.session[_draft_key(visit.code)] = draft
        return redirect(f"{url}#review")
    return redirect(f"{url}#review")


@login_required
@require_GET
def model_performance_page(request: HttpRequest) -> HttpResponse:
    """The model's segmentations against the team's corrections of them (the API's numbers)."""
    teams = [model_performance(team=team) for team in teams_for_user(request.user)]
    audit(user=request.user, action="read_model_performance", patient=None)
    return render(request, "tracker/performance.html", {"teams": teams})


# --- uploading a visit -----------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def visit_upload(request: HttpRequest, code: str) -> HttpResponse:
    """The form posts to the API with JavaScript (progress, the server's messages); without
    JavaScript it posts here and gets the same validation."""
    patient = selectors.patient_get_for_user(code, request.user)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        posted = request.POST.dict()
        if not posted.get("acquired_on"):
            posted.pop("acquired_on", None)  # left empty: a DICOM archive's own date
        data = inputs.VisitInput(data={**posted, **request.FILES.dict()})
        if data.is_valid():
            files, archive = data.files()
            fields = data.validated_data
            try:
                visit_create(
                    patient=patient, files=files, archive=archive, by=request.user, **fields
                )
            except UploadError as error:
                errors = {
                    k: list(v) if isinstance(v, list) else [str(v)]
                    for k, v in error.problems.items()
                }
            except ConflictError as error:
                errors = {"acquired_on": [str(error)]}
            else:
                return redirect("web:patient", code=patient.code)
        else:
            errors = {k: [str(m) for m in v] for k, v in data.errors.items()}
    return render(
        request,
        "tracker/upload.html",
        {
            "patient": patient,
            "errors": errors,
            "today": timezone.localdate().isoformat(),
            "max_mb": _max_upload_mb(),
            "upload_fields": [(name, sequence.long_name) for name, sequence in FIELDS.items()],
            "clinical_statuses": ClinicalStatus.choices,
        },
        status=400 if errors else 200,
    )


def _max_upload_mb() -> int:
    return int(settings.TRACKER_MAX_UPLOAD_MB)


# --- exports ---------------------------------------------------------------------------------


@login_required
@require_GET
def export(request: HttpRequest, code: str, kind: str) -> HttpResponse:
    """report.pdf, measurements.csv, lesions.csv, timeline.json, fhir.json; each audited (the
    API serves the same, ``tracker.services.exports``)."""
    patient = selectors.patient_get_for_user(code, request.user)
    if kind not in EXPORTS:
        raise Http404("no such export")
    return export_response(patient, kind, by=request.user)
