"""Learning from corrections: the corrected visits as a training set, a fine-tuned model
registered, evaluated on the corrected visits it did not train on, and activated.

The loop (each step a management command):

1. ``export_training_set --team T --out DIR``: each corrected visit (its latest correction whose
   analysis is done) as a BraTS 2023 folder: the sequences as uploaded, defaced (blanked outside
   the brain mask the analysis computed, see ``inference.imaging.deface``; NIfTI header text and
   extensions cleared) and the corrected labels (``-seg``, on the grid they were drawn on).
   Folders are named ``TRACKER-<patient hash>-<visit hash>`` (the trainer splits by the
   patient part); ``manifest.json`` gives each folder's patient pseudonym, visit order and
   segmentation version, and the visits held out (whole patients, one in five by hash, at
   least one where there are three or more): they are not exported, so a model trained on the
   folder can be evaluated on them. Nothing else identifies a patient.
2. ``python -m inference train DIR/train --init-weights inference/weights --out W``: fine-tune.
3. ``register_model W``: the weights copied under MEDIA_ROOT/models, the card read.
4. ``evaluate_model NAME VERSION``: the model segments every corrected visit whose folder it
   did not train on (its card lists them); Dice per region against the corrections, beside the
   Dice of the model that made those segmentations.
5. ``activate_model NAME VERSION``: only an evaluated model; new analyses use it. Re-analysing a
   visit keeps its results until the new ones exist.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inference.errors import InputError
from inference.imaging.deface import blank_outside, displacement_bound_mm, keep_mask
from inference.imaging.io import read_image, read_label_map
from inference.imaging.preprocess import read_prepared
from inference.labels import Region
from inference.measurement.agreement import REGIONS, mean_interval
from inference.measurement.evaluate import evaluate
from inference.segmentation.segment import Segmenter, read_card
from tracker.models import (
    CareTeam,
    ModelVersion,
    RunStatus,
    SegmentationVersion,
    Visit,
)
from tracker.services.visits import ConflictError, audit
from tracker.storage import media, original_folder, run_files, stored

BRATS_SUFFIX = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"}
HOLD_OUT_EVERY = 5  # one corrected patient in five is kept for evaluation
# A sequence that co-registration moved farther than this is left out of an export rather than
# defaced with a margin so wide it would keep part of the face.
DEFACE_MAX_SHIFT_MM = 10.0
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _digest(text: str) -> str:
    """A keyed hash (the deployment's secret key): a folder name cannot be recomputed from the
    visit and patient codes the pages and exports show."""
    key = settings.SECRET_KEY.encode("utf-8")
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def case_name(visit: Visit) -> str:
    """The visit's folder in a training set: stable, and telling nothing about the patient."""
    number = int(_digest(f"visit:{visit.code}")[:7], 16)
    return f"TRACKER-{_digest(f'patient:{visit.patient.code}')[:8]}-{number:09d}"


def _held_out(names: list[str]) -> set[str]:
    """Whole patients held out (a model is never evaluated on a patient it saw): one in five
    by hash; at least one where there are three or more, and two left to train on (the
    trainer validates on a patient of its own)."""
    patients = sorted({_patient(n) for n in names}, key=lambda p: _digest(f"hold:{p}"))
    held = {p for p in patients if int(_digest(f"hold:{p}")[:8], 16) % HOLD_OUT_EVERY == 0}
    if len(patients) >= 3 and (not held or len(patients) - len(held) < 2):
        held = {patients[0]}
    if len(patients) < 3:
        held = set()
    return {n for n in names if _patient(n) in held}


def _patient(name: str) -> str:
    """``TRACKER-<patient>-<visit>`` -> ``TRACKER-<patient>`` (as the trainer groups them)."""
    return name.rsplit("-", maxsplit=1)[0]


def corrected_visits(team: CareTeam | None = None) -> list[SegmentationVersion]:
    """Each corrected visit's latest correction whose analysis is done (of one team, or all)."""
    versions = SegmentationVersion.objects.filter(run__status=RunStatus.DONE)
    if team is not None:
        versions = versions.filter(visit__patient__team=team)
    latest: dict[int, SegmentationVersion] = {}
    for version in versions.select_related("visit__patient", "run").order_by("visit_id", "-number"):
        latest.setdefault(version.visit_id, version)
    return list(latest.values())


def _scrubbed_copy(source: Path, target: Path, *, keep: np.ndarray | None = None) -> None:
    """The NIfTI image with no free text in its header (description, auxiliary file, intent
    name) and no extensions: scanners and converters put names and dates there; with ``keep``,
    every voxel outside it blanked (``inference.imaging.deface``)."""
    image = nib.load(str(source))
    header = image.header.copy()
    for key in ("descrip", "aux_file", "intent_name", "db_name", "data_type", "unused_str"):
        if key in header:
            header[key] = b""
    header.extensions.clear()
    data = np.asanyarray(image.dataobj)
    if keep is not None:
        data = blank_outside(data, keep)
    clean = type(image)(data, image.affine, header)
    nib.save(clean, str(target))


def _coregistration_shifts(qc: dict[str, Any]) -> dict[str, float]:
    """How far the analysis' co-registration moved each sequence onto the reference (mm, an
    upper bound over the brain), from its QC record; the reference moved 0."""
    shifts = {qc["sequences"]["reference"]: 0.0}
    for step in qc.get("steps", []):
        if step.get("name") == "coregister_sequences":
            for sequence, metrics in step.get("metrics", {}).items():
                shifts[sequence] = displacement_bound_mm(
                    translation_mm=float(metrics["translation_mm"]),
                    rotation_deg=float(metrics["rotation_deg"]),
                )
    return shifts


def _defaced_case(version: SegmentationVersion, folder: Path, name: str) -> dict[str, Any]:
    """One visit's BraTS folder: each sequence as uploaded, blanked outside the analysis' brain
    mask joined with the corrected labels (the reference sequence exactly; the others grown by
    how far co-registration moved them plus a voxel), and the corrected labels. Returns what
    was done, for the manifest."""
    files = run_files(version.run)
    _, mask, qc = read_prepared(files.prepared)
    labels, _ = read_label_map(files.labels)
    shifts = _coregistration_shifts(qc)
    done: dict[str, Any] = {"margins_mm": {}, "left_out": {}}
    for scan in version.visit.scans.all():
        source = media(str(scan.file.name))
        shift = shifts.get(scan.sequence)
        if shift is None or shift > DEFACE_MAX_SHIFT_MM:
            done["left_out"][scan.sequence] = (
                "not in the analysis"
                if shift is None
                else f"co-registration moved it {shift:.1f} mm"
            )
            continue
        image = read_image(source)
        margin = 0.0 if shift == 0.0 else shift + max(image.GetSpacing())
        done["margins_mm"][scan.sequence] = round(margin, 1)
        keep = keep_mask(image, mask, keep=labels, margin_mm=margin)
        target = folder / f"{name}-{BRATS_SUFFIX[scan.sequence]}.nii.gz"
        _scrubbed_copy(source, target, keep=keep)
    _scrubbed_copy(files.labels, folder / f"{name}-seg.nii.gz")
    return done


def training_set_export(*, team: CareTeam, out: Path) -> dict[str, Any]:
    """Write the team's corrected visits under ``out/train`` (one BraTS folder each, the held-out
    ones left out) and ``out/manifest.json``; ``out`` must not exist yet. Written whole or not at
    all. Returns the manifest."""
    out = Path(out)
    if out.exists():
        raise InputError(f"{out} exists already: give a new folder")
    versions = corrected_visits(team)
    if not versions:
        raise InputError(f"team {team.name} has no corrected visit whose analysis is done")
    names = {v.pk: case_name(v.visit) for v in versions}
    held = _held_out(list(names.values()))
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "train").mkdir(parents=True)
    cases = []
    try:
        for version in sorted(versions, key=lambda v: names[v.pk]):
            visit, name = version.visit, names[version.pk]
            order = list(visit.patient.visits.order_by("acquired_on")).index(visit) + 1
            case = {
                "folder": name,
                "patient": visit.patient.label,
                "visit_order": order,
                "segmentation_version": version.number,
                "source": version.source,
                "held_out": name in held,
            }
            cases.append(case)
            if name in held:
                continue
            folder = staging / "train" / name
            folder.mkdir()
            defaced = _defaced_case(version, folder, name)
            case["defacing_margin_mm"] = defaced["margins_mm"]
            if defaced["left_out"]:
                case["sequences_left_out"] = defaced["left_out"]
        manifest = {
            "team": team.name,
            "exported_at": timezone.now().isoformat(timespec="seconds"),
            "label_convention": "BraTS 2023 (1 NCR, 2 ED, 3 ET)",
            "defacing": "each sequence blanked outside the analysis' brain mask joined with the "
            "corrected labels: the reference sequence exactly, the others grown by how far "
            "co-registration moved them plus one voxel (defacing_margin_mm per case); a "
            f"sequence moved more than {DEFACE_MAX_SHIFT_MM:g} mm is left out",
            "labels": "the clinicians' corrected segmentations, on the grid they were drawn on "
            "(the visit's T1 post-contrast as acquired, else its FLAIR)",
            "train": sorted(n for n in names.values() if n not in held),
            "held_out": sorted(held),
            "cases": cases,
        }
        (staging / "manifest.json").write_text(
            json.dumps(manifest, indent=2) + "\n", encoding="utf-8"
        )
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    audit(user=None, action="export_training_set", patient=None, team=team.name, cases=len(cases))
    return manifest


# --- models -----------------------------------------------------------------------------------


def model_register(*, folder: Path, version: str = "") -> ModelVersion:
    """Copy a weights folder (``export_weights``' card and weights) under MEDIA_ROOT/models and
    record it, inactive. ``version`` renames a version that is taken (the card copy says so)."""
    card = read_card(Path(folder))  # WeightsError names what is wrong
    name = str(card.get("name") or "")
    chosen = version or str(card.get("version") or "")
    for what, value in (("name", name), ("version", chosen)):
        if not _SAFE_NAME.fullmatch(value):
            raise InputError(f"model {what} {value!r}: letters, digits, '.', '_' and '-' only")
    if ModelVersion.objects.filter(name=name, version=chosen).exists():
        raise ConflictError(f"{name} {chosen} is registered already: give --as-version")
    target = media(f"models/{name}-{chosen}")
    if target.exists():
        raise ConflictError(f"{target} exists already")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(folder, staging)
        if version:
            card = {**card, "version": chosen, "registered_as": chosen}
            (staging / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        read_card(staging)  # the copy reads (weights checksum included)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        return ModelVersion.objects.create(
            name=name,
            version=chosen,
            weights_sha256=str(card.get("weights_sha256") or ""),
            folder=stored(target),
            card=card,
        )
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def model_evaluate(*, model: ModelVersion) -> dict[str, Any]:
    """Segment every corrected visit the model did not train on with it, and score it against
    the correction (Dice per region, mean with a 95 % interval), beside the model that made
    the corrected segmentations; stored on the model."""
    cases = (model.card.get("training") or {}).get("cases")
    if cases is None:
        raise ConflictError(
            f"{model}'s card does not list the folders it was trained on: it cannot be evaluated "
            "on visits it did not see (train it with this version of python -m inference train)"
        )
    trained_patients = {_patient(c) for c in cases}
    segmenter = Segmenter(
        media(model.folder),
        runtime=settings.TRACKER_SEGMENTER_RUNTIME,
        cache=settings.TRACKER_MODEL_CACHE,
    )
    rows: list[dict[str, Any]] = []
    for version in corrected_visits():
        name = case_name(version.visit)
        if _patient(name) in trained_patients:  # never a patient it saw, in any visit
            continue
        corrected, _ = read_label_map(run_files(version.run).labels)
        images, mask, _ = read_prepared(run_files(version.run).prepared)
        geometry = _reference_original(version.visit)
        result = segmenter.segment(images, mask, geometry=geometry)
        scores = evaluate(result.labels, corrected, distances=False)
        earlier = version.changes.get("against_model", {}).get("regions", {})
        rows.append(
            {
                "case": name,
                "dice": {r: round(scores[Region(r)].dice, 4) for r in REGIONS},
                "earlier_dice": {r: earlier.get(r, {}).get("dice") for r in REGIONS},
            }
        )
    evaluation = {
        "cases": len(rows),
        "patients_left_out_as_trained_on": len(trained_patients),
        "regions": {
            r: {
                "dice": mean_interval([row["dice"][r] for row in rows], bounds=(0.0, 1.0)),
                "earlier_model_dice": mean_interval(
                    [row["earlier_dice"][r] for row in rows if row["earlier_dice"][r] is not None],
                    bounds=(0.0, 1.0),
                ),
            }
            for r in REGIONS
        },
        "per_case": rows,
    }
    model.evaluation = evaluation
    model.evaluated_at = timezone.now()
    model.save(update_fields=["evaluation", "evaluated_at"])
    return evaluation


def _reference_original(visit: Visit) -> Any:
    """The original image the visit's segmentation is on (its grid is the corrected map's)."""
    for sequence in ("t1c", "flair"):
        found = sorted(original_folder(visit).glob(f"{sequence}.nii*"))
        if found:
            return read_image(found[0])
    raise InputError(f"visit {visit.code} has no original T1 post-contrast or FLAIR")


def model_get(*, name: str, version: str) -> ModelVersion:
    """A registered model by name and version; ``InputError`` names it where there is none."""
    model = ModelVersion.objects.filter(name=name, version=version).first()
    if model is None:
        raise InputError(f"no registered model {name} {version}")
    return model


def model_activate(*, model: ModelVersion, by: str) -> ModelVersion:
    """Make an evaluated model the one new analyses use."""
    if not model.evaluated_at or not model.evaluation.get("cases"):
        raise ConflictError(
            f"{model} has not been evaluated on a corrected visit it did not train on: run "
            "evaluate_model first (with at least one held-out corrected visit)"
        )
    with transaction.atomic():
        ModelVersion.objects.filter(is_active=True).exclude(pk=model.pk).update(is_active=False)
        model.is_active = True
        model.activated_at = timezone.now()
        model.activated_by = by
        model.save(update_fields=["is_active", "activated_at", "activated_by"])
        audit(user=None, action="activate_model", patient=None, model=str(model), by=by)
    return model
