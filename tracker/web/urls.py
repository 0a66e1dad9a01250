"""The pages (server-rendered) and the exports."""

from django.urls import path

from tracker.web import views

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    path("patients/", views.patient_list, name="patients"),
    path("patients/<str:code>/", views.patient_detail, name="patient"),
    path("patients/<str:code>/progress/", views.patient_progress, name="progress"),
    path("patients/<str:code>/upload/", views.visit_upload, name="upload"),
    path("patients/<str:code>/export/<str:kind>", views.export, name="export"),
    path("visits/<str:code>/", views.visit_detail, name="visit"),
    path("visits/<str:code>/review/", views.visit_review, name="review"),
    path("visits/<str:code>/volumes/<str:name>.nii.gz", views.visit_volume, name="volume"),
    path(
        "visits/<str:code>/slices/<str:layer>/<str:plane>/<int:index>.png",
        views.visit_slice,
        name="slice",
    ),
]
