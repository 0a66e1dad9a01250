"""Records for tests and benchmarks: a patient with N analysed and assessed visits, without
running any imaging (the numbers are made up; no image files exist)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tracker.models import (
    AnalysisRun,
    Assessment,
    CareTeam,
    Lesion,
    Measurement,
    Patient,
    Review,
    RunStatus,
    Stage,
    TreatmentEvent,
    Visit,
)


def analysed_patient(team: CareTeam, label: str, visits: int, *, reviewer: Any = None) -> Patient:
    patient = Patient.objects.create(team=team, label=label)
    start = dt.date(2024, 1, 1)
    TreatmentEvent.objects.create(
        patient=patient,
        kind="radiotherapy",
        started_on=start - dt.timedelta(days=70),
        ended_on=start - dt.timedelta(days=28),
    )
    for index in range(visits):
        visit = Visit.objects.create(
            patient=patient, acquired_on=start + dt.timedelta(weeks=8 * index)
        )
        run = AnalysisRun.objects.create(
            visit=visit,
            stage=Stage.DONE,
            status=RunStatus.DONE,
            is_current=True,
            model_name="tumour-segmenter",
            model_version="test",
            weights_sha256="0" * 64,
        )
        Measurement.objects.create(
            run=run,
            volumes_ml={"NCR": 1.0, "ED": 10.0, "ET": 3.0, "TC": 4.0, "WT": 14.0},
            sum_of_products_mm2=400.0 + index,
            lesion_map="x",
            segmentation="x",
        )
        for number in (1, 2):
            Lesion.objects.create(
                run=run,
                number=number,
                track=f"L{number}",
                volume_ml=2.0,
                et_volume_ml=1.0,
                longest_mm=20.0,
                perpendicular_mm=10.0 + number,
                product_mm2=200.0,
                measurable=True,
                target=True,
                centroid_mm=[0.0, 0.0, 0.0],
            )
        assessment = Assessment.objects.create(
            visit=visit,
            category="baseline" if index == 0 else "SD",
            criteria="rano2-2d",
            reasons=["made up for a test"],
        )
        if reviewer is not None:
            Review.objects.create(
                visit=visit, assessment=assessment, action="confirm", reviewer=reviewer
            )
    return patient
