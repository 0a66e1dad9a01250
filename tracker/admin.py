from django.contrib import admin

from tracker import models

for model in (
    models.CareTeam,
    models.Membership,
    models.Patient,
    models.TreatmentEvent,
    models.Visit,
    models.Scan,
    models.AnalysisRun,
    models.Assessment,
    models.Review,
    models.AuditEvent,
):
    admin.site.register(model)
