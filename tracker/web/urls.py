"""The pages (server-rendered) and the exports."""

from django.urls import path

from tracker.web import views

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    path("patients/", views.patient_list, name="patients"),
    path("model-performance/", views.model_performance_page, name="performance"),
    path("patients/<uuid:code>/", views.patient_detail, name="patient"),
    path("patients/<uuid:code>/progress/", views.patient_progress, name="progress"),
    path("patients/<uuid:code>/upload/", views.visit_upload, name="upload"),
    path("patients/<uuid:code>/export/<str:kind>", views.export, name="export"),
    path("visits/<uuid:code>/", views.visit_detail, name="visit"),
    path("visits/<uuid:code>/review/", views.visit_review, name="review"),
    path("visits/<uuid:code>/segmentations/", views.visit_correct, name="correct"),
    path("visits/<uuid:code>/volumes/<str:name>.nii.gz", views.visit_volume, name="volume"),
    path(
        "visits/<uuid:code>/slices/<str:layer>/<str:plane>/<int:index>.png",
        views.visit_slice,
        name="slice",
    ),
]
