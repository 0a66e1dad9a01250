from django.urls import path

from tracker.api import views

urlpatterns = [
    path("patients/", views.PatientListCreateApi.as_view(), name="patient-list"),
    path("patients/<uuid:code>/", views.PatientDetailApi.as_view(), name="patient-detail"),
    path(
        "patients/<uuid:code>/treatments/",
        views.TreatmentCreateApi.as_view(),
        name="patient-treatments",
    ),
    path("patients/<uuid:code>/visits/", views.VisitCreateApi.as_view(), name="patient-visits"),
    path(
        "patients/<uuid:code>/timeline/",
        views.PatientTimelineApi.as_view(),
        name="patient-timeline",
    ),
    path(
        "patients/<uuid:code>/export/<str:kind>",
        views.PatientExportApi.as_view(),
        name="patient-export",
    ),
    path("visits/<uuid:code>/", views.VisitDetailApi.as_view(), name="visit-detail"),
    path("model-performance/", views.ModelPerformanceApi.as_view(), name="model-performance"),
    path(
        "visits/<uuid:code>/reanalyse/", views.VisitReanalyseApi.as_view(), name="visit-reanalyse"
    ),
    path("visits/<uuid:code>/review/", views.VisitReviewApi.as_view(), name="visit-review"),
    path(
        "visits/<uuid:code>/segmentations/",
        views.VisitSegmentationsApi.as_view(),
        name="visit-segmentations",
    ),
    path(
        "visits/<uuid:code>/segmentations/<uuid:run>/labels.nii.gz",
        views.VisitSegmentationLabelsApi.as_view(),
        name="visit-segmentation-labels",
    ),
]
