"""Display images of an analysed run (``inference.measurement.render``): the prepared sequences,
labels and tumour probability windowed to 8 bits on one grid, and the prior visit brought onto it
through the stored registration. Written once, after measurement; built on first view for runs
analysed before this existed."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from inference.errors import InputError
from inference.imaging.io import read_label_map, read_probability_map
from inference.imaging.preprocess import read_prepared
from inference.imaging.register import chain, inverse, load_transform
from inference.imaging.validate import reference_sequence
from inference.measurement import render
from tracker.models import AnalysisRun, Registration, RegistrationRole
from tracker.storage import media, run_files

log = logging.getLogger(__name__)


def display_build(
    *,
    run: AnalysisRun,
    labels: sitk.Image | None = None,
    probabilities: sitk.Image | None = None,
) -> Path:
    """Write the run's display folder (whole or not at all), with the prior visit's layers
    where the run was registered to one. ``labels`` and ``probabilities``, where the caller has
    just read the run's files, are not read again: pass both (``probabilities`` None for a run
    without a probability map) or neither."""
    files = run_files(run)
    images, mask, _ = read_prepared(files.prepared)
    if labels is None:
        labels, _ = read_label_map(files.labels)
        probabilities = (
            read_probability_map(files.probabilities) if files.probabilities.is_file() else None
        )
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
    images, mask, _ = read_prepared(files.prepared, reference_only=True)
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


@dataclass(frozen=True)
class SamePlace:
    """Another visit on the reference visit's key axial slice: the PNG, or why there is none;
    the registrations it went through and whether any of them was flagged."""

    run: AnalysisRun
    picture: bytes | None
    registrations: tuple[Registration, ...] = ()
    problem: str = ""

    @property
    def flagged(self) -> bool:
        return any(not r.passed for r in self.registrations)

    @property
    def through(self) -> list[str]:
        """The dates of the visits the chain passes through (none for a direct one)."""
        here, dates = self.run.visit_id, []
        for r in self.registrations:
            visit = r.run.visit if r.to_visit_id == here else r.to_visit
            here = visit.pk
            dates.append(visit.acquired_on.isoformat())
        return dates[:-1]


def registration_path(
    registrations: Iterable[Registration], start: int, goal: int
) -> list[tuple[Registration, bool]] | None:
    """The shortest chain of stored registrations from visit ``start`` to visit ``goal`` (visit
    ids): each step a registration and whether it is followed forwards (its ``to_visit``'s
    space onto its run's visit's) or backwards. [] when they are the same visit; None when no
    chain joins them."""
    steps: dict[int, list[tuple[int, Registration, bool]]] = {}
    for r in registrations:
        moving = r.run.visit_id
        steps.setdefault(r.to_visit_id, []).append((moving, r, True))
        steps.setdefault(moving, []).append((r.to_visit_id, r, False))
    came: dict[int, tuple[int, Registration, bool] | None] = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if here == goal:
            path: list[tuple[Registration, bool]] = []
            while (back := came[here]) is not None:
                here, r, forwards = back
                path.append((r, forwards))
            return path[::-1]
        for there, r, forwards in steps.get(here, []):
            if there not in came:
                came[there] = (here, r, forwards)
                queue.append(there)
    return None


def display_same_place(*, reference: AnalysisRun, others: Iterable[AnalysisRun]) -> list[SamePlace]:
    """Each of ``others`` on ``reference``'s key axial slice (its largest target lesion's
    measured slice), brought there through the stored registrations of the patient's current
    runs: directly where one joins the two visits, else through a visit both were registered
    to (the baseline, the prior). A run without images or without a chain gets the reason."""
    folder = display_ensure(run=reference)
    if folder is None:
        return [SamePlace(run, None, problem="no images of the reference visit") for run in others]
    meta = render.read_meta(folder)
    index = int(meta["key_slices"]["axial"])
    stored = list(
        Registration.objects.select_related("run__visit", "to_visit").filter(
            run__is_current=True, run__visit__patient_id=reference.visit.patient_id
        )
    )
    out = []
    passed = [r for r in stored if r.passed]
    for run in others:
        # through registrations that passed their check where such a chain exists
        path = registration_path(passed, run.visit_id, reference.visit_id)
        if path is None:
            path = registration_path(stored, run.visit_id, reference.visit_id)
        if path is None:
            out.append(SamePlace(run, None, problem="not registered to this visit"))
            continue
        used = tuple(r for r, _ in path)
        try:
            picture = _same_place_png(meta, index, run, path)
        except (InputError, OSError, RuntimeError) as error:
            log.warning("no registered slice of run %s: %s", run.code, error)
            out.append(SamePlace(run, None, used, problem="images not readable"))
            continue
        out.append(SamePlace(run, picture, used))
    return out


def _same_place_png(
    meta: dict[str, Any], index: int, run: AnalysisRun, path: list[tuple[Registration, bool]]
) -> bytes:
    steps: list[sitk.Transform] = []
    for registration, forwards in path:
        transform = load_transform(media(registration.transform))
        steps.append(transform if forwards else inverse(transform))
    files = run_files(run)
    images, mask, _ = read_prepared(files.prepared)
    labels, _ = read_label_map(files.labels)
    picture = render.registered_axial_slice(
        meta,
        index,
        image=images[reference_sequence(images)],
        mask=mask,
        labels=labels,
        to_this=chain(*steps),
        supported_regions=run.supported_regions,
    )
    return render.png(picture)
