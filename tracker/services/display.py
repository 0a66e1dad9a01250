"""Display images of an analysed run (``inference.measurement.render``): the prepared sequences,
labels and tumour probability windowed to 8 bits on one grid, and the prior visit brought onto it
through the stored registration. Written once, after measurement; built on first view for runs
analysed before this existed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from inference.imaging.io import read_label_map, read_probability_map
from inference.imaging.preprocess import read_prepared
from inference.imaging.register import load_transform
from inference.imaging.validate import reference_sequence
from inference.measurement import render
from tracker.models import AnalysisRun, Registration, RegistrationRole
from tracker.storage import media, run_files

log = logging.getLogger(__name__)


def display_build(*, run: AnalysisRun) -> Path:
    """Write the run's display folder (whole or not at all), with the prior visit's layers
    where the run was registered to one."""
    files = run_files(run)
    images, mask, _ = read_prepared(files.prepared)
    labels, _ = read_label_map(files.labels)
    probabilities = read_probability_map(files.probabilities)
    measurement = getattr(run, "measurement", None)
    volumes = render.display_volumes(
        images,
        mask,
        labels,
        probabilities,
        supported_regions=run.supported_regions,
        lesions=(measurement.details.get("lesions") or []) if measurement is not None else [],
    )
    prior = _prior(run)
    if prior is not None:
        registration, prior_run = prior
        try:
            layers, sequence = _prior_layers(volumes.meta, registration, prior_run)
            volumes.layers.update(layers)
            volumes.meta["prior"] = {
                "visit": str(registration.to_visit.code),
                "acquired_on": registration.to_visit.acquired_on.isoformat(),
                "run": str(prior_run.code),
                "registration_passed": registration.passed,
                "sequence": sequence,
                "labels_shown": sorted(
                    {v for v in render.display_labels(prior_run.supported_regions).values() if v}
                ),
            }
        except Exception:
            # The prior's files may have been re-analysed away; this visit still shows.
            log.exception("no prior comparison for run %s", run.code)
    return render.write_display(volumes, files.display)


def _prior(run: AnalysisRun) -> tuple[Registration, AnalysisRun] | None:
    registration = (
        Registration.objects.select_related("to_visit")
        .filter(run=run, role=RegistrationRole.PRIOR)
        .first()
    )
    if registration is None:
        return None
    prior_run = AnalysisRun.objects.filter(visit=registration.to_visit, is_current=True).first()
    if prior_run is None:
        return None
    return registration, prior_run


def _prior_layers(
    meta: dict[str, Any], registration: Registration, prior_run: AnalysisRun
) -> tuple[dict[str, Any], str]:
    """The prior's grey layer and labels on this visit's grid, and which sequence the grey
    layer is: its T1c, or its FLAIR where it has none."""
    files = run_files(prior_run)
    images, mask, _ = read_prepared(files.prepared)
    labels, _ = read_label_map(files.labels)
    sequence = reference_sequence(images)
    transform = load_transform(media(registration.transform))
    layers = render.prior_layers(
        meta,
        images[sequence],
        mask,
        labels,
        transform,
        supported_regions=prior_run.supported_regions,
    )
    return layers, sequence.value


def display_ensure(*, run: AnalysisRun) -> Path | None:
    """The run's display folder, built now if it is missing; None if the run has no images."""
    files = run_files(run)
    if (files.display / "display.json").is_file():
        return files.display
    if not files.labels.is_file():
        return None
    try:
        return display_build(run=run)
    except Exception:
        log.exception("cannot build the display images of run %s", run.code)
        return None
