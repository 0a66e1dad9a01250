"""The main imaging job on data it makes itself: a synthetic visit from the MNI152 template.

SYNTHETIC PHANTOM DATA. The demo needs nothing but the installed packages: it synthesises the four
sequences of a head (with a skull and a small enhancing lesion) from the MNI152 template and
tissue maps shipped in the nilearn wheel, then

1. prepares the visit (the seven steps of ``preprocess``), and
2. registers a copy of the visit moved by a known rigid motion back onto it, and reports how far
   the recovered motion is from the true one (target registration error inside the brain).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from inference import atlas
from inference.io import read_visit, write_image, write_text
from inference.labels import Sequence
from inference.preprocess import prepare_visit, write_prepared
from inference.register import (
    mask_points,
    register_visits,
    save_transform,
    target_registration_error,
)

# Relative signal of grey matter, white matter, CSF, lesion rim and lesion core per sequence.
_CONTRAST = {
    Sequence.T1: {"gm": 0.62, "wm": 0.85, "csf": 0.25, "rim": 0.55, "core": 0.3},
    Sequence.T1C: {"gm": 0.62, "wm": 0.85, "csf": 0.25, "rim": 1.3, "core": 0.3},
    Sequence.T2: {"gm": 0.7, "wm": 0.5, "csf": 1.0, "rim": 0.8, "core": 1.0},
    Sequence.FLAIR: {"gm": 0.7, "wm": 0.55, "csf": 0.15, "rim": 1.1, "core": 0.8},
}
_SCANNER_SCALE = {
    Sequence.T1: 900.0,
    Sequence.T1C: 1100.0,
    Sequence.T2: 1400.0,
    Sequence.FLAIR: 700.0,
}


def synthetic_visit(seed: int, *, skull: bool = True) -> dict[Sequence, sitk.Image]:
    """Four int16 sequences of one synthetic head on the template's 1 mm grid (SYNTHETIC)."""
    rng = np.random.default_rng(seed)
    gm = sitk.GetArrayFromImage(atlas.tissue_map("gm"))
    wm = sitk.GetArrayFromImage(atlas.tissue_map("wm"))
    brain = sitk.GetArrayFromImage(atlas.template_brain_mask()) > 0
    csf = np.clip(brain.astype(np.float32) - gm - wm, 0.0, 1.0)
    template = atlas.template_t1()
    # A small ring-enhancing lesion in the right frontal white matter.
    zz, yy, xx = np.ogrid[: gm.shape[0], : gm.shape[1], : gm.shape[2]]
    cz, cy, cx = np.array(gm.shape) * np.array([0.62, 0.4, 0.35])
    distance = np.sqrt((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2)
    core = distance < 6.0
    rim = (distance >= 6.0) & (distance < 9.0)
    head = brain.copy()
    scalp = np.zeros_like(brain)
    if skull:
        outside = ndimage.distance_transform_edt(~brain)
        head = outside <= 14.0
        scalp = (outside > 8.0) & head
    bias = _bias_field(gm.shape, rng)
    images = {}
    for sequence, c in _CONTRAST.items():
        signal = c["gm"] * gm + c["wm"] * wm + c["csf"] * csf
        signal = np.where(rim, c["rim"], np.where(core, c["core"], signal))
        if skull:
            signal = np.where(scalp, 0.9 if sequence is Sequence.T1 else 0.6, signal)
        signal = signal * bias * _SCANNER_SCALE[sequence]
        noise = 0.03 * _SCANNER_SCALE[sequence]
        real = signal + rng.normal(0.0, noise, signal.shape)
        imaginary = rng.normal(0.0, noise, signal.shape)
        magnitude = np.sqrt(real**2 + imaginary**2)  # Rician noise, as in magnitude MRI
        image = sitk.GetImageFromArray(np.rint(magnitude).astype(np.int16))
        image.CopyInformation(template)
        images[sequence] = image
    return images


def _bias_field(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    coefficients = rng.uniform(-0.12, 0.12, size=3)
    field: np.ndarray = np.exp(sum(c * g for c, g in zip(coefficients, grids, strict=True)))
    return field.astype(np.float32)


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
    baseline = synthetic_visit(seed)
    motion = demo_motion()
    follow_up = {s: moved(image, motion) for s, image in synthetic_visit(seed + 1).items()}
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
    say(f"  outputs under {out}")
    return summary
