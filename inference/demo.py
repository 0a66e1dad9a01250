"""The main imaging job on data it makes itself: a synthetic visit from the MNI152 template.

SYNTHETIC PHANTOM DATA. The demo needs nothing but the installed packages: it renders a phantom
patient's visit (``inference.segmentation.phantoms``: the MNI152 template and tissue maps shipped
in the nilearn wheel, a synthetic tumour, a scalp and skull), then

1. prepares the visit (the seven steps of ``preprocess``), and
2. registers a copy of the visit moved by a known rigid motion back onto it, and reports how far
   the recovered motion is from the true one (target registration error inside the brain);
3. segments the prepared visit with the shipped model (trained on other phantom patients: this
   seed was never used in training) and scores it against the phantom's exact labels.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from inference.imaging import atlas
from inference.imaging.io import read_visit, write_image, write_text
from inference.imaging.preprocess import prepare_visit, write_prepared
from inference.imaging.register import (
    mask_points,
    register_visits,
    save_transform,
    target_registration_error,
)
from inference.labels import Sequence
from inference.segmentation.phantoms import make_patient, render_visit


def synthetic_visit(seed: int, *, skull: bool = True) -> dict[Sequence, sitk.Image]:
    """The baseline visit of phantom patient ``seed`` (SYNTHETIC), with a skull by default."""
    return synthetic_visit_and_truth(seed, skull=skull)[0]


def synthetic_visit_and_truth(
    seed: int, *, skull: bool = True
) -> tuple[dict[Sequence, sitk.Image], sitk.Image]:
    """The baseline visit of phantom patient ``seed`` and its exact label map."""
    patient = dataclasses.replace(make_patient(seed, visits=1), skull=skull)
    images, labels, _truth = render_visit(patient, 0)
    return images, labels


def moved(image: sitk.Image, motion: sitk.Transform) -> sitk.Image:
    """The head as it appears after it moved by ``motion`` (fixed -> moving convention)."""
    return sitk.Resample(
        image, image, motion.GetInverse(), sitk.sitkLinear, 0.0, image.GetPixelID()
    )


def demo_motion() -> sitk.Euler3DTransform:
    """A head movement between visits: 6 degrees of nodding and turning, 10 mm of shift."""
    motion = sitk.Euler3DTransform()
    motion.SetCenter(atlas.template_t1().TransformContinuousIndexToPhysicalPoint([98, 116, 94]))
    motion.SetRotation(*np.radians([4.0, -3.0, 5.0]))
    motion.SetTranslation((6.0, -7.0, 4.0))
    return motion


def write_visit(images: dict[Sequence, sitk.Image], folder: Path, case: str) -> Path:
    suffix = {Sequence.T1: "t1n", Sequence.T1C: "t1c", Sequence.T2: "t2w", Sequence.FLAIR: "t2f"}
    for sequence, image in images.items():
        write_image(image, folder / f"{case}-{suffix[sequence]}.nii.gz")
    return folder


def run_demo(out: Path, *, seed: int = 7, say: Callable[[str], None] = print) -> dict[str, Any]:
    started = time.perf_counter()
    say("SYNTHETIC PHANTOM DEMO: a head made from the MNI152 template (nilearn), not a patient")
    baseline, true_labels = synthetic_visit_and_truth(seed)
    motion = demo_motion()
    follow_up = {s: moved(image, motion) for s, image in baseline.items()}
    visit0 = write_visit(baseline, out / "visits" / "demo-000", "DEMO-000")
    visit1 = write_visit(follow_up, out / "visits" / "demo-001", "DEMO-001")
    say(
        f"  wrote two synthetic visits under {out / 'visits'} "
        f"({time.perf_counter() - started:.1f} s)"
    )

    say("1. preparing the baseline visit (seven steps)")
    prepared = prepare_visit(read_visit(visit0), progress=lambda step: say(f"     {step}"))
    write_prepared(prepared, out / "prepared" / "demo-000")

    say("2. registering the follow-up (moved by a known motion) to the baseline")
    fixed = read_visit(visit0, required=())
    registration = register_visits(fixed.images, read_visit(visit1, required=()).images)
    save_transform(registration.result.transform, out / "registration" / "transform.tfm")
    brain = sitk.Cast(atlas.template_brain_mask(), sitk.sitkUInt8)
    tre = target_registration_error(registration.result.transform, motion, mask_points(brain))
    report = registration.as_dict()
    report["target_registration_error_mm"] = {
        "mean": round(float(tre.mean()), 3),
        "max": round(float(tre.max()), 3),
        "truth": "known rigid motion of 4, -3, 5 degrees and 6, -7, 4 mm",
    }
    write_text(json.dumps(report, indent=2) + "\n", out / "registration" / "registration.json")

    say("3. segmenting the prepared baseline with the shipped model")
    from inference.measurement.evaluate import evaluate  # noqa: PLC0415 - Keras loads only here
    from inference.segmentation.segment import Segmenter, write_segmentation  # noqa: PLC0415

    segmenter = Segmenter()
    segmentation = segmenter.segment(
        prepared.images, prepared.brain_mask, geometry=baseline[Sequence.T1C]
    )
    write_segmentation(segmentation, segmenter, out / "segmentation", source=str(visit0))
    scores = {r.value: s.as_dict() for r, s in evaluate(segmentation.labels, true_labels).items()}

    steps = {r.name: r for r in prepared.records}
    mask = steps["brain_mask"].metrics
    summary = {
        "data": "SYNTHETIC PHANTOM (MNI152 template with a synthetic skull and lesion)",
        "prepared": str(out / "prepared" / "demo-000"),
        "prepare_seconds": prepared.qc["seconds"],
        "step_seconds": {name: round(r.seconds, 2) for name, r in steps.items()},
        "brain_mask_ml": mask["volume_ml"],
        "skull_stripped_input": mask["skull_stripped_input"],
        "registration": report,
        "segmentation": {
            "model": segmenter.identity,
            "seconds": segmentation.seconds,
            "volumes_ml": segmentation.volumes_ml,
            "scores_against_truth": scores,
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    say("")
    say("Summary (synthetic phantom)")
    say(
        f"  preparation: {prepared.qc['seconds']:.1f} s  "
        + ", ".join(f"{n} {r.seconds:.1f} s" for n, r in steps.items())
    )
    say(
        f"  brain mask: {mask['volume_ml']:.0f} mL, found by "
        + (
            "the input's own mask"
            if mask["skull_stripped_input"]
            else "MNI152 template registration"
        )
    )
    say(
        f"  registration on {registration.sequence.long_name}: "
        f"{registration.result.seconds:.1f} s, "
        f"correlation {registration.quality['correlation_before']:.2f} -> "
        f"{registration.quality['correlation_after']:.2f}, "
        f"{'passed' if registration.ok else 'FLAGGED'} quality check"
    )
    say(
        f"  target registration error against the known motion: mean {tre.mean():.2f} mm, "
        f"max {tre.max():.2f} mm"
    )
    say(
        f"  segmentation ({segmenter.card.get('name')}, trained on other SYNTHETIC phantoms): "
        f"{segmentation.seconds['total']:.1f} s; Dice against the exact labels "
        + ", ".join(f"{r} {scores[r]['dice']:.3f}" for r in ("WT", "TC", "ET"))
    )
    say(f"  outputs under {out}")
    return summary
