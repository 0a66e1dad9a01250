"""REST API (DESIGN.md contract). Views validate input, call one service or selector, and shape
the output; every read of a patient's data is audited."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db import IntegrityError, transaction
from django.db.models import Prefetch
from django.http import FileResponse, HttpResponse, HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tracker import inputs, selectors
from tracker.api import serializers as s
from tracker.models import AnalysisRun, Assessment, CareTeam, Patient, Review, RunStatus, Visit
from tracker.services.corrections import correction_from_input
from tracker.services.exports import EXPORTS, export_response
from tracker.services.performance import model_performance, teams_for_user
from tracker.services.runs import run_create, run_retry
from tracker.services.uploads import ARCHIVE_FIELD, UPLOAD_FIELDS, UploadError
from tracker.services.visits import (
    ConflictError,
    audit,
    patient_create,
    review_create,
    treatment_create,
    visit_create,
    visit_delete,
    visit_update,
)
from tracker.storage import run_files
from tracker.timeline import (
    segmentation_dict,
    segmentation_versions,
    timeline_dict,
    visit_dict,
)


def _visits_with_results() -> Any:
    return Visit.objects.select_related("patient").prefetch_related(
        Prefetch(
            "runs",
            queryset=AnalysisRun.objects.select_related("measurement").prefetch_related(
                "lesions", "registrations__to_visit"
            ),
        ),
        Prefetch(
            "assessments",
            queryset=Assessment.objects.filter(is_current=True).select_related(
                "reference_visit", "pseudoprogression_of"
            ),
        ),
        Prefetch("reviews", queryset=Review.objects.select_related("reviewer")),
    )


class PatientFilter(django_filters.FilterSet):  # type: ignore[misc]
    """The list's filters; a filter given with no value is a 400 (it read as "no filter", which
    a client that meant to filter would not notice)."""

    class Meta:
        model = Patient
        fields = ["presentation", "setting", "team__code"]

    def is_valid(self) -> bool:
        valid: bool = super().is_valid()
        empty = [name for name in self.filters if self.data.get(name, None) == ""]
        for name in empty:
            self.form.add_error(name, "give a value or leave the parameter out")
        return valid and not empty


class PatientListCreateApi(generics.ListAPIView):
    """Your care teams' patients; create one in a team you belong to."""

    serializer_class = s.PatientOutput
    filterset_class = PatientFilter

    def get_queryset(self) -> Any:
        queryset = selectors.patients_for_user(self.request.user)
        label = self.request.query_params.get("search")
        if label:
            queryset = queryset.filter(label__icontains=label)
        return queryset.order_by("label")

    @extend_schema(request=inputs.PatientInput, responses={201: s.PatientOutput})
    def post(self, request: Request) -> Response:
        data = inputs.PatientInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        team = CareTeam.objects.filter(
            code=fields.pop("team"), membership__user=request.user
        ).first()
        if team is None:
            raise ValidationError({"team": "not one of your care teams"})
        try:
            with transaction.atomic():
                patient = patient_create(team=team, by=request.user, **fields)
        except IntegrityError:
            raise ValidationError(
                {"label": "this team already has a patient with this label"}
            ) from None
        return Response(s.PatientOutput(patient).data, status=status.HTTP_201_CREATED)


class PatientDetailApi(APIView):
    @extend_schema(responses=s.PatientOutput)
    def get(self, request: Request, code: str) -> Response:
        patient = selectors.patient_get_for_user(code, request.user)
        audit(user=request.user, action="read_patient", patient=patient, code=str(patient.code))
        return Response(s.PatientOutput(patient).data)


class TreatmentCreateApi(APIView):
    @extend_schema(request=inputs.TreatmentInput, responses={201: s.TreatmentOutput})
    def post(self, request: Request, code: str) -> Response:
        patient = selectors.patient_get_for_user(code, request.user)
        data = inputs.TreatmentInput(data=request.data)
        data.is_valid(raise_exception=True)
        event = treatment_create(patient=patient, by=request.user, **data.validated_data)
        return Response(s.TreatmentOutput(event).data, status=status.HTTP_201_CREATED)


class VisitCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]  # files

    @extend_schema(
        request={"multipart/form-data": inputs.VisitInput},
        responses={
            201: s.VisitOutput,
            409: OpenApiResponse(description="The patient already has a visit on that date."),
        },
    )
    def post(self, request: Request, code: str) -> Response:
        patient = selectors.patient_get_for_user(code, request.user)
        data = inputs.VisitInput(data=request.data)
        data.is_valid(raise_exception=True)
        files, archive = data.files()
        fields = data.validated_data
        extra = sorted(set(request.FILES) - {*UPLOAD_FIELDS, ARCHIVE_FIELD})
        if extra:
            raise ValidationError({name: ["not an upload field"] for name in extra})
        try:
            visit = visit_create(
                patient=patient, files=files, archive=archive, by=request.user, **fields
            )
        except UploadError as error:
            raise ValidationError(error.problems) from None
        except ConflictError as error:
            return Response({"acquired_on": [str(error)]}, status=status.HTTP_409_CONFLICT)
        visit = _visits_with_results().get(pk=visit.pk)
        return Response(visit_dict(visit), status=status.HTTP_201_CREATED)


class VisitDetailApi(APIView):
    @extend_schema(responses=s.VisitOutput)
    def get(self, request: Request, code: str) -> Response:
        visit = selectors.visit_get_for_user(code, request.user)
        visit = _visits_with_results().get(pk=visit.pk)
        audit(user=request.user, action="read_visit", patient=visit.patient, code=str(visit.code))
        return Response(visit_dict(visit))

    @extend_schema(request=inputs.VisitUpdateInput, responses=s.VisitOutput)
    def patch(self, request: Request, code: str) -> Response:
        """Clinical status, corticosteroid dose, non-target status or notes; the patient's
        timeline is assessed again."""
        visit = selectors.visit_get_for_user(code, request.user)
        data = inputs.VisitUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        visit_update(visit=visit, by=request.user, **data.validated_data)
        return Response(visit_dict(_visits_with_results().get(pk=visit.pk)))

    @extend_schema(
        request=None,
        responses={204: None, 409: OpenApiResponse(description="reviewed: kept, reason in detail")},
    )
    def delete(self, request: Request, code: str) -> Response:
        """Removes the visit and its results; the patient's timeline is assessed again. A visit
        whose assessment a clinician reviewed is kept: 409 with the reason."""
        visit = selectors.visit_get_for_user(code, request.user)
        try:
            visit_delete(visit=visit, by=request.user)
        except ConflictError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VisitReanalyseApi(APIView):
    """Analyse the visit again (a new model, or after a failure). The current results stay until
    the new run completes."""

    @extend_schema(
        request=None,
        responses={
            202: s.RunOutput,
            409: OpenApiResponse(s.RunOutput, description="An analysis is already in flight."),
        },
    )
    def post(self, request: Request, code: str) -> Response:
        visit = selectors.visit_get_for_user(code, request.user)
        with transaction.atomic():
            # One analysis in flight per visit: requests for one visit queue up on its row, and
            # each sees the run the one before it started.
            Visit.objects.select_for_update().filter(pk=visit.pk).first()
            busy = visit.runs.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).first()
            if busy is not None:
                return Response(s.RunOutput(busy).data, status=status.HTTP_409_CONFLICT)
            failed = visit.runs.filter(status=RunStatus.FAILED).order_by("-created_at").first()
            run = run_retry(run=failed) if failed is not None else run_create(visit=visit)
            audit(
                user=request.user,
                action="reanalyse_visit",
                patient=visit.patient,
                code=str(visit.code),
            )
        return Response(s.RunOutput(run).data, status=status.HTTP_202_ACCEPTED)


class VisitReviewApi(APIView):
    @extend_schema(
        request={"application/json": s.REVIEW_SCHEMA},
        responses={
            201: s.ReviewOutput,
            409: OpenApiResponse(description="The visit has no assessment to review yet."),
        },
    )
    def post(self, request: Request, code: str) -> Response:
        visit = selectors.visit_get_for_user(code, request.user)
        data = inputs.ReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            review = review_create(visit=visit, by=request.user, **data.validated_data)
        except ConflictError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        except ValueError as error:  # an override to the category the engine already gave
            raise ValidationError({"category": [str(error)]}) from None
        return Response(s.ReviewOutput(review).data, status=status.HTTP_201_CREATED)


class ModelPerformanceApi(APIView):
    """Per team of the user and per model version: the model's segmentations against the
    clinicians' corrections of them (Dice and volume differences per region with 95 %
    intervals, how often the correction changed the RANO category, the worst visits)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        teams = [model_performance(team=team) for team in teams_for_user(request.user)]
        audit(user=request.user, action="read_model_performance", patient=None)
        return Response({"teams": teams})


class VisitSegmentationsApi(APIView):
    """The visit's segmentation versions (the model's and each correction), and a correction:
    a label map on the grid of the segmentation it corrects, measured and assessed as an
    analysis of its own."""

    parser_classes = [MultiPartParser, FormParser]  # the label map

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, code: str) -> Response:
        visit = selectors.visit_get_for_user(code, request.user)
        return Response({"versions": segmentation_versions(visit)})

    @extend_schema(
        request={"multipart/form-data": inputs.CorrectionInput},
        responses={
            201: OpenApiTypes.OBJECT,
            409: OpenApiResponse(
                description="The segmentation changed since it was read, or an analysis of "
                "the visit is running."
            ),
        },
    )
    def post(self, request: Request, code: str) -> Response:
        visit = selectors.visit_get_for_user(code, request.user)
        data = inputs.CorrectionInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        try:
            version = correction_from_input(visit=visit, data=fields, by=request.user)
        except UploadError as error:
            raise ValidationError(error.problems) from None
        except ConflictError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        body = {**segmentation_dict(version.run), "run": str(version.run.code)}
        return Response(body, status=status.HTTP_201_CREATED)


class VisitSegmentationLabelsApi(APIView):
    """One segmentation version's label map (NIfTI, BraTS 2023 labels). Audited."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, code: str, run: str) -> HttpResponseBase:
        visit = selectors.visit_get_for_user(code, request.user)
        found = AnalysisRun.objects.filter(visit=visit, code=run).first()
        path = None if found is None else run_files(found).labels
        if path is None or not path.is_file():
            raise NotFound("no such segmentation")
        audit(user=request.user, action="read_segmentation", patient=visit.patient, code=run)
        response = FileResponse(path.open("rb"), content_type="application/octet-stream")
        response["Content-Disposition"] = f'attachment; filename="{visit.code}-{run}-seg.nii.gz"'
        response["Cache-Control"] = "no-store"
        return response


class PatientTimelineApi(APIView):
    """Everything for one patient's timeline in one response."""

    @extend_schema(
        responses=inline_serializer(
            "Timeline",
            {
                "patient": s.PatientOutput(),
                "treatments": s.TreatmentOutput(many=True),
                "visits": s.VisitOutput(many=True),
                "baseline_visit": serializers.UUIDField(allow_null=True),
                "nadir_visit": serializers.UUIDField(allow_null=True),
                "progression_visit": serializers.UUIDField(allow_null=True),
            },
        )
    )
    def get(self, request: Request, code: str) -> Response:
        patient = selectors.patient_get_for_user(code, request.user)
        data = timeline_dict(patient)
        audit(user=request.user, action="read_timeline", patient=patient, code=str(patient.code))
        return Response(data)


class PatientExportApi(APIView):
    """The exports the pages offer, with token or session authentication: ``report.pdf`` (the
    tumour-board report), ``measurements.csv``, ``lesions.csv``, ``timeline.json``,
    ``fhir.json`` (FHIR R4 bundle). Each download is audited."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "kind", str, OpenApiParameter.PATH, enum=list(EXPORTS), description="the export"
            )
        ],
        responses={
            (200, "application/pdf"): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "application/fhir+json"): OpenApiTypes.OBJECT,
        },
    )
    def get(self, request: Request, code: str, kind: str) -> HttpResponse:
        patient = selectors.patient_get_for_user(code, request.user)
        if kind not in EXPORTS:
            raise NotFound(f"no such export: {kind} (one of {', '.join(EXPORTS)})")
        return export_response(patient, kind, by=request.user)
