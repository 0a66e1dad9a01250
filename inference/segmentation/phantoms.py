"""Synthetic patients with exact ground truth, built on real anatomy (SYNTHETIC PHANTOM DATA).

No labelled clinical archive is reachable, so the project makes its own truth: the MNI152
template and grey/white-matter maps shipped in nilearn give the anatomy; tumours are continuous
shapes defined in template space (mm), so their volumes and diameters are known independently of
any voxel grid.

- Contrasts: T1, T1 post-contrast, T2 and FLAIR from tissue fractions (GM, WM, CSF, necrosis,
  enhancing tumour, oedema), with a per-visit scanner scaling, a smooth multiplicative bias field,
  Rician noise and (optionally) a scalp and skull.
- Tumours: star-shaped blobs (a radius that varies with direction), a necrotic core whose share
  varies around the lesion, an enhancing rim of varying thickness that is sometimes incomplete,
  oedema that reaches further into white matter, optional mass effect, sometimes a second lesion,
  sometimes a non-enhancing tumour.
- Visits: weeks apart, each with a new random head pose, noise, bias and scanner scale; some
  follow-ups are acquired with 5 mm slices (partial volume integrated across the slice).
- Scenarios with a known outcome: progression, partial_response, stable, complete_response,
  new_lesion, pseudoprogression.

Each visit is written as a BraTS 2023 folder (``-t1n -t1c -t2w -t2f -seg``) with ``truth.json``:
volumes per compartment of the continuous shapes (integrated on a 0.5 mm grid), per-lesion RANO
diameters and products in the acquired axial plane (measured on a 0.25 mm grid of the continuous
shape), the head pose, and the response expected from the products. Deterministic per seed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from inference.imaging import atlas
from inference.imaging.io import output_folder, write_image, write_text
from inference.imaging.register import as_affine
from inference.labels import Sequence, TumorLabel
from inference.measurement.measure import bidimensional

SYNTHETIC = "SYNTHETIC PHANTOM"
BASELINE_DATE = dt.date(2024, 1, 8)


class Scenario(enum.StrEnum):
    PROGRESSION = "progression"
    PARTIAL_RESPONSE = "partial_response"
    STABLE = "stable"
    COMPLETE_RESPONSE = "complete_response"
    NEW_LESION = "new_lesion"
    PSEUDOPROGRESSION = "pseudoprogression"


# Linear size of the tumour (radius multiplier) at each visit, per scenario. Products scale with
# its square, volumes with its cube.
_GROWTH: dict[Scenario, tuple[float, ...]] = {
    Scenario.PROGRESSION: (1.0, 1.08, 1.22, 1.35, 1.5),
    Scenario.PARTIAL_RESPONSE: (1.0, 0.85, 0.66, 0.6, 0.58),
    Scenario.STABLE: (1.0, 1.02, 0.99, 1.01, 1.0),
    Scenario.COMPLETE_RESPONSE: (1.0, 0.7, 0.4, 0.0, 0.0),
    Scenario.NEW_LESION: (1.0, 1.0, 1.02, 1.01, 1.03),
    Scenario.PSEUDOPROGRESSION: (1.0, 1.3, 1.05, 0.9, 0.85),
}

# Relative signal per tissue and sequence.
_SIGNAL: dict[Sequence, dict[str, float]] = {
    Sequence.T1: {"gm": 0.62, "wm": 0.85, "csf": 0.25, "ncr": 0.33, "et": 0.6, "ed": 0.55},
    Sequence.T1C: {"gm": 0.62, "wm": 0.85, "csf": 0.25, "ncr": 0.33, "et": 1.35, "ed": 0.55},
    Sequence.T2: {"gm": 0.7, "wm": 0.5, "csf": 1.0, "ncr": 1.0, "et": 0.8, "ed": 0.92},
    Sequence.FLAIR: {"gm": 0.7, "wm": 0.55, "csf": 0.15, "ncr": 0.7, "et": 0.9, "ed": 1.15},
}
_SCALP = {Sequence.T1: 0.95, Sequence.T1C: 0.95, Sequence.T2: 0.6, Sequence.FLAIR: 0.7}
_SCANNER = {Sequence.T1: 900.0, Sequence.T1C: 1100.0, Sequence.T2: 1400.0, Sequence.FLAIR: 700.0}
_BRATS_SUFFIX = {Sequence.T1: "t1n", Sequence.T1C: "t1c", Sequence.T2: "t2w", Sequence.FLAIR: "t2f"}


def _unit(vector: np.ndarray) -> np.ndarray:
    unit: np.ndarray = vector / np.linalg.norm(vector)
    return unit


@dataclass(frozen=True)
class Lesion:
    """A tumour as a continuous shape in template space (mm)."""

    centre_mm: tuple[float, float, float]
    radius_mm: float
    bumps: tuple[
        tuple[tuple[float, float, float], float, float], ...
    ]  # direction, amplitude, width
    core_fraction: float
    core_bumps: tuple[tuple[tuple[float, float, float], float, float], ...]
    enhancing: bool
    gap: tuple[tuple[float, float, float], float] | None  # direction, cosine: unenhancing sector
    oedema_mm: float
    appears_at: int = 0  # first visit index where it exists

    def fields(
        self, points: np.ndarray, scale: float, wm: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Boolean (lesion, core, enhancing, oedema) for points (N, 3) in template mm."""
        offset = points - np.array(self.centre_mm)
        distance = np.linalg.norm(offset, axis=1)
        direction = offset / np.maximum(distance, 1e-9)[:, None]
        radius = scale * self.radius_mm * _bumpy(direction, self.bumps)
        lesion = distance < radius
        core_share = np.clip(self.core_fraction * _bumpy(direction, self.core_bumps), 0.15, 0.85)
        core = distance < radius * core_share
        if self.enhancing:
            enhancing = lesion & ~core
            if self.gap is not None:
                gap_direction, gap_cos = self.gap
                enhancing &= direction @ np.array(gap_direction) < gap_cos
        else:
            enhancing = np.zeros_like(lesion)
        reach = self.oedema_mm * scale * (0.3 + 0.7 * (wm if wm is not None else 0.5))
        oedema = (distance < radius + reach) & ~lesion
        return lesion, core, enhancing, oedema

    def bounding_radius(self, scale: float) -> float:
        peak = 1.0 + sum(max(a, 0.0) for _, a, _ in self.bumps)
        return scale * (self.radius_mm * peak + self.oedema_mm) + 2.0


def _bumpy(
    direction: np.ndarray, bumps: tuple[tuple[tuple[float, float, float], float, float], ...]
) -> np.ndarray:
    """1 + sum of smooth bumps on the unit sphere: a radius that varies with direction."""
    factor = np.ones(len(direction))
    for bump_direction, amplitude, width in bumps:
        factor += amplitude * np.exp((direction @ np.array(bump_direction) - 1.0) / width)
    return factor


@dataclass(frozen=True)
class Patient:
    seed: int
    scenario: Scenario
    lesions: tuple[Lesion, ...]
    weeks: tuple[int, ...]
    anisotropic_visits: frozenset[int]
    skull: bool
    mass_effect: float  # mm of displacement at the tumour's edge

    def scale(self, visit: int, lesion: Lesion) -> float:
        if visit < lesion.appears_at:
            return 0.0
        growth = _GROWTH[self.scenario]
        value = growth[min(visit, len(growth) - 1)]
        if lesion.appears_at > 0:  # a new lesion grows from its first appearance
            return 0.7 + 0.15 * (visit - lesion.appears_at)
        return value


def _random_bumps(
    rng: np.random.Generator, count: int, amplitude: float
) -> tuple[tuple[tuple[float, float, float], float, float], ...]:
    return tuple(
        (
            tuple(_unit(rng.normal(size=3)).tolist()),
            float(rng.uniform(-amplitude, amplitude)),
            float(rng.uniform(0.15, 0.5)),
        )  # type: ignore[misc]
        for _ in range(count)
    )


def _white_matter_point(rng: np.random.Generator, margin_mm: float) -> tuple[float, float, float]:
    """A random point in white matter (template mm), at least ``margin_mm`` inside the brain."""
    depth, wm = _template_depth(), atlas.tissue_map("wm")
    depth_values = sitk.GetArrayViewFromImage(depth)
    wm_values = sitk.GetArrayViewFromImage(wm)
    candidates = np.argwhere((depth_values > margin_mm) & (wm_values > 0.6))
    z, y, x = candidates[rng.integers(len(candidates))]
    return tuple(wm.TransformIndexToPhysicalPoint((int(x), int(y), int(z))))  # type: ignore[return-value]


@functools.cache
def _template_depth() -> sitk.Image:
    """Distance (mm) from each template voxel to the outside of the brain (positive inside)."""
    brain = atlas.template_brain_mask()
    return sitk.SignedMaurerDistanceMap(
        brain, insideIsPositive=True, squaredDistance=False, useImageSpacing=True
    )


def make_patient(seed: int, *, visits: int = 4, scenario: Scenario | None = None) -> Patient:
    """Draw a synthetic patient: deterministic for a given seed (and scenario)."""
    rng = np.random.default_rng(seed)
    chosen = scenario or list(Scenario)[seed % len(Scenario)]
    radius = float(rng.uniform(9.0, 20.0))
    enhancing = bool(rng.random() > 0.12)
    main = Lesion(
        centre_mm=_white_matter_point(rng, margin_mm=radius + 8.0),
        radius_mm=radius,
        bumps=_random_bumps(rng, 4, 0.25),
        core_fraction=float(rng.uniform(0.3, 0.6)),
        core_bumps=_random_bumps(rng, 3, 0.3),
        enhancing=enhancing,
        gap=(tuple(_unit(rng.normal(size=3)).tolist()), float(rng.uniform(0.5, 0.8)))
        if rng.random() < 0.4
        else None,  # type: ignore[arg-type]
        oedema_mm=float(rng.uniform(4.0, 14.0)),
    )
    lesions = [main]
    if chosen is Scenario.NEW_LESION or rng.random() < 0.25:
        small = float(rng.uniform(6.0, 10.0))
        lesions.append(
            Lesion(
                centre_mm=_far_point(rng, main, small),
                radius_mm=small,
                bumps=_random_bumps(rng, 3, 0.2),
                core_fraction=float(rng.uniform(0.2, 0.5)),
                core_bumps=(),
                enhancing=True,
                gap=None,
                oedema_mm=float(rng.uniform(2.0, 6.0)),
                appears_at=min(2, visits - 1) if chosen is Scenario.NEW_LESION else 0,
            )
        )
    weeks = tuple(
        int(w) for w in np.cumsum([0] + [int(rng.integers(6, 13)) for _ in range(visits - 1)])
    )
    anisotropic = frozenset(v for v in range(1, visits) if rng.random() < 0.35)
    return Patient(
        seed=seed,
        scenario=chosen,
        lesions=tuple(lesions),
        weeks=weeks,
        anisotropic_visits=anisotropic,
        skull=bool(rng.random() < 0.5),
        mass_effect=float(rng.uniform(0.0, 4.0)) if rng.random() < 0.5 else 0.0,
    )


def _far_point(rng: np.random.Generator, main: Lesion, radius: float) -> tuple[float, float, float]:
    for _ in range(200):
        point = _white_matter_point(rng, margin_mm=radius + 5.0)
        gap = np.linalg.norm(np.array(point) - np.array(main.centre_mm))
        if gap > main.bounding_radius(1.5) + radius * 1.5 + 10.0:
            return point
    raise RuntimeError("no room for a second lesion")  # pragma: no cover - the brain is large


def with_satellites(patient: Patient, count: int, *, seed: int) -> Patient:
    """The patient with ``count`` extra small enhancing lesions (radius 3-6.5 mm: about 0.1 to
    1 mL of enhancing tumour each), present from baseline and sized like the main tumour's
    course. For training and for measuring small-lesion sensitivity."""
    rng = np.random.default_rng([seed, 7919])
    lesions = list(patient.lesions)
    for _ in range(count):
        radius = float(rng.uniform(3.0, 6.5))
        for _attempt in range(50):
            centre = _far_point(rng, patient.lesions[0], radius)
            if all(
                np.linalg.norm(np.array(centre) - np.array(other.centre_mm))
                > other.bounding_radius(1.5) + radius + 8.0
                for other in lesions
            ):
                break
        lesions.append(
            Lesion(
                centre_mm=centre,
                radius_mm=radius,
                bumps=_random_bumps(rng, 2, 0.15),
                core_fraction=float(rng.uniform(0.15, 0.45)),
                core_bumps=(),
                enhancing=True,
                gap=None,
                oedema_mm=float(rng.uniform(1.0, 5.0)),
            )
        )
    return dataclasses.replace(patient, lesions=tuple(lesions))


@dataclass(frozen=True)
class Pose:
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]

    def transform(self) -> sitk.Euler3DTransform:
        """Template -> scanner (where a template point ends up in the acquisition)."""
        transform = sitk.Euler3DTransform()
        transform.SetCenter(_template_centre())
        transform.SetRotation(*np.radians(self.rotation_deg))
        transform.SetTranslation(self.translation_mm)
        return transform


@functools.cache
def _template_centre() -> tuple[float, float, float]:
    template = atlas.template_t1()
    return tuple(
        template.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in template.GetSize()])
    )  # type: ignore[return-value]


def _acquisition_grid(spacing: tuple[float, float, float]) -> sitk.Image:
    """The scanner's grid: the template's box, LPS, at ``spacing``."""
    template = atlas.template_t1()
    extent = np.array(template.GetSize()) * np.array(template.GetSpacing())
    size = [math.ceil(e / s) for e, s in zip(extent, spacing, strict=True)]
    corner = np.array(template.TransformContinuousIndexToPhysicalPoint([-0.5, -0.5, -0.5]))
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing(spacing)
    grid.SetDirection(template.GetDirection())
    direction = np.array(template.GetDirection()).reshape(3, 3)
    grid.SetOrigin((corner + direction @ (np.array(spacing) / 2)).tolist())
    return grid


def _voxel_points(grid: sitk.Image, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Physical (x, y, z) points of the voxels in the index box [start, stop) (x, y, z order),
    shaped (z, y, x, 3)."""
    spacing = np.array(grid.GetSpacing())
    direction = np.array(grid.GetDirection()).reshape(3, 3)
    origin = np.array(grid.GetOrigin())
    k, j, i = np.meshgrid(
        *[np.arange(a, b, dtype=np.float32) for a, b in zip(start[::-1], stop[::-1], strict=True)],
        indexing="ij",
    )
    index = np.stack([i, j, k], axis=-1)
    points: np.ndarray = (origin + (index * spacing) @ direction.T).astype(np.float32)
    return points


def _index_box(
    grid: sitk.Image, centre: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Index box (x, y, z) of ``grid`` holding a ball of ``radius`` mm around ``centre``."""
    corners = [centre + radius * (2 * np.array(c) - 1) for c in np.ndindex(2, 2, 2)]
    indices = np.array([grid.TransformPhysicalPointToContinuousIndex(c.tolist()) for c in corners])
    size = np.array(grid.GetSize())
    start = np.clip(np.floor(indices.min(axis=0)).astype(int), 0, size)
    stop = np.clip(np.ceil(indices.max(axis=0)).astype(int) + 1, 0, size)
    return start, stop


def _sample(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Trilinear samples of ``image`` at physical (x, y, z) points (template is axis-aligned)."""
    origin = np.array(image.GetOrigin(), np.float32)
    spacing = np.array(image.GetSpacing(), np.float32)
    direction = np.array(image.GetDirection(), np.float32).reshape(3, 3)
    index = ((points - origin) @ direction) / spacing  # continuous (x, y, z) index
    coordinates = [index[..., 2], index[..., 1], index[..., 0]]
    values: np.ndarray = ndimage.map_coordinates(
        sitk.GetArrayViewFromImage(image), coordinates, order=1, cval=0.0
    )
    return values


def _anatomy(grid: sitk.Image, to_template: sitk.Transform) -> dict[str, np.ndarray]:
    """Template maps (GM, WM, brain, depth) resampled onto the scanner grid through the pose."""
    maps = {
        "gm": atlas.tissue_map("gm"),
        "wm": atlas.tissue_map("wm"),
        "brain": sitk.Cast(atlas.template_brain_mask(), sitk.sitkFloat32),
        "depth": _template_depth(),
    }
    out = {}
    for name, image in maps.items():
        outside = -100.0 if name == "depth" else 0.0
        resampled = sitk.Resample(
            image, grid, to_template, sitk.sitkLinear, outside, sitk.sitkFloat32
        )
        out[name] = sitk.GetArrayFromImage(resampled)
    return out


def _tumour(
    patient: Patient,
    visit: int,
    grid: sitk.Image,
    to_template: sitk.Transform,
    anatomy: dict[str, np.ndarray],
) -> np.ndarray:
    """Tumour labels on the scanner grid, and the anatomy pushed aside by its mass effect."""
    labels = np.zeros(anatomy["gm"].shape, np.uint8)
    to_scanner = to_template.GetInverse()
    for number, lesion in enumerate(patient.lesions):
        scale = patient.scale(visit, lesion)
        if scale <= 0:
            continue
        centre = np.array(to_scanner.TransformPoint(lesion.centre_mm))
        reach = lesion.bounding_radius(scale)
        if number == 0 and patient.mass_effect > 0:
            reach = max(reach, 4.0 * lesion.radius_mm * scale)
        start, stop = _index_box(grid, centre, reach)
        box = tuple(slice(a, b) for a, b in zip(start[::-1], stop[::-1], strict=True))
        template = _apply(to_template, _voxel_points(grid, start, stop).reshape(-1, 3))
        if number == 0 and patient.mass_effect > 0:
            moved = _mass_effect(patient, visit, template)
            for name in ("gm", "wm", "brain", "depth"):
                source = (
                    _template_depth()
                    if name == "depth"
                    else (
                        sitk.Cast(atlas.template_brain_mask(), sitk.sitkFloat32)
                        if name == "brain"
                        else atlas.tissue_map(name)
                    )
                )
                anatomy[name][box] = _sample(source, moved).reshape(anatomy[name][box].shape)
        # The tumour's own shape (oedema follows the undisplaced white matter, as in the truth);
        # only the surrounding anatomy is pushed aside by the mass effect.
        wm = _sample(atlas.tissue_map("wm"), template)
        inside, _, enhancing, oedema = lesion.fields(template, scale, wm)
        part = labels[box].reshape(-1)
        part[oedema & (part == 0)] = TumorLabel.ED
        part[inside] = TumorLabel.NCR
        part[enhancing] = TumorLabel.ET
        labels[box] = part.reshape(labels[box].shape)
    return labels


def _apply(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """A linear transform applied to many (x, y, z) points at once."""
    affine = as_affine(transform)
    matrix = np.array(affine.GetMatrix()).reshape(3, 3)
    moved: np.ndarray = points @ matrix.T.astype(np.float32) + np.array(
        affine.GetTranslation(), np.float32
    )
    return moved


def _bias(rng: np.random.Generator, grid: sitk.Image) -> np.ndarray:
    """A smooth multiplicative field over the scanner grid (z, y, x): a ramp and a bowl."""
    centre = np.array(_template_centre())
    axes = []
    for axis in range(3):
        index = np.arange(grid.GetSize()[axis], dtype=np.float32)
        position = grid.GetOrigin()[axis] + index * grid.GetSpacing()[axis]
        axes.append((position - centre[axis]) / 100.0)
    x, y, z = axes[0][None, None, :], axes[1][None, :, None], axes[2][:, None, None]
    a, b, c = rng.uniform(-0.15, 0.15, 3)
    curvature = rng.uniform(-0.08, 0.08)
    field: np.ndarray = np.exp(a * x + b * y + c * z + curvature * (x**2 + y**2 + z**2))
    return field.astype(np.float32)


def _mass_effect(patient: Patient, visit: int, points: np.ndarray) -> np.ndarray:
    """Where to read the anatomy for each template point: pushed away from the main tumour."""
    main = patient.lesions[0]
    scale = patient.scale(visit, main)
    offset = points - np.array(main.centre_mm, np.float32)
    distance = np.linalg.norm(offset, axis=1, keepdims=True)
    reach = 2.0 * main.radius_mm * scale
    push = patient.mass_effect * scale * np.exp(-((distance / reach) ** 2))
    moved: np.ndarray = points - push * offset / np.maximum(distance, 1e-6)
    return moved


def _pose(rng: np.random.Generator) -> Pose:
    rotation = rng.uniform(-8.0, 8.0, 3)
    translation = rng.uniform(-8.0, 8.0, 3)
    return Pose(
        (float(rotation[0]), float(rotation[1]), float(rotation[2])),
        (float(translation[0]), float(translation[1]), float(translation[2])),
    )


def visit_pose(patient: Patient, visit: int, *, rescan: int = 0) -> Pose:
    """The head's pose in the scanner at this visit (the same draw ``render_visit`` makes)."""
    return _pose(np.random.default_rng([patient.seed, visit, rescan]))


def true_brain_mask(grid: sitk.Image, pose: Pose) -> sitk.Image:
    """The template's brain mask as the scanner sees it at ``pose``, on ``grid`` (no mass
    effect: the tumour pushes anatomy aside inside the brain, not its outline)."""
    return sitk.Resample(
        atlas.template_brain_mask(),
        grid,
        pose.transform().GetInverse(),
        sitk.sitkNearestNeighbor,
        0,
        sitk.sitkUInt8,
    )


def render_visit(
    patient: Patient, visit: int, *, rescan: int = 0, thick_slices: bool | None = None
) -> tuple[dict[Sequence, sitk.Image], sitk.Image, dict[str, Any]]:
    """The four sequences and the ground-truth labels of one visit, and its truth record.

    ``rescan`` > 0 images the same tumour again with another pose, noise, bias and scanner
    scale (a scan-rescan pair); ``thick_slices`` overrides whether it is acquired with 5 mm slices.
    """
    rng = np.random.default_rng([patient.seed, visit, rescan])
    pose = _pose(rng)  # the first draw: ``visit_pose`` repeats it
    anisotropic = visit in patient.anisotropic_visits if thick_slices is None else thick_slices
    spacing = (1.0, 1.0, 5.0) if anisotropic else (1.0, 1.0, 1.0)
    grid = _acquisition_grid(spacing)
    # Thick slices integrate the signal across their thickness: render 1 mm sub-slices, average.
    sub = int(spacing[2])
    fine = _acquisition_grid((1.0, 1.0, 1.0))
    fine.SetOrigin(grid.TransformContinuousIndexToPhysicalPoint([0.0, 0.0, -(sub - 1) / (2 * sub)]))
    fine_size = list(grid.GetSize())
    fine_size[2] *= sub
    fine = sitk.Image(fine_size, sitk.sitkUInt8)
    fine.SetSpacing((1.0, 1.0, 1.0))
    fine.SetDirection(grid.GetDirection())
    fine.SetOrigin(grid.TransformContinuousIndexToPhysicalPoint([0.0, 0.0, -(sub - 1) / (2 * sub)]))
    to_template = pose.transform().GetInverse()
    anatomy = _anatomy(fine, to_template)
    labels = _tumour(patient, visit, fine, to_template, anatomy)
    csf = np.clip(anatomy["brain"] - anatomy["gm"] - anatomy["wm"], 0.0, 1.0)
    scalp = (anatomy["depth"] < -7.0) & (anatomy["depth"] > -13.0) if patient.skull else None
    bias = _bias(rng, fine)
    shape = grid.GetSize()[::-1]
    images = {}
    for sequence, signal in _SIGNAL.items():
        values = signal["gm"] * anatomy["gm"] + signal["wm"] * anatomy["wm"] + signal["csf"] * csf
        for label, key in ((TumorLabel.ED, "ed"), (TumorLabel.NCR, "ncr"), (TumorLabel.ET, "et")):
            values[labels == label] = signal[key]
        if scalp is not None:
            values[scalp] = _SCALP[sequence]
        scale = _SCANNER[sequence] * float(rng.uniform(0.8, 1.25))
        values *= bias * scale
        if sub > 1:
            values = values.reshape(shape[0], sub, shape[1], shape[2]).mean(axis=1)
        sigma = np.float32(0.025 * scale)
        real = values + sigma * rng.standard_normal(values.shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(values.shape, dtype=np.float32)
        image = sitk.GetImageFromArray(np.rint(np.hypot(real, imaginary)).astype(np.int16))
        image.CopyInformation(grid)
        images[sequence] = image
    centre_labels = labels.reshape(shape[0], sub, shape[1], shape[2])[:, sub // 2]
    seg = sitk.GetImageFromArray(np.ascontiguousarray(centre_labels))
    seg.CopyInformation(grid)
    truth = _truth(patient, visit, pose, seg)
    return images, seg, truth


def _truth(patient: Patient, visit: int, pose: Pose, seg: sitk.Image) -> dict[str, Any]:
    volumes = {"NCR": 0.0, "ED": 0.0, "ET": 0.0}
    lesions = []
    to_scanner = pose.transform()
    for number, lesion in enumerate(patient.lesions, start=1):
        scale = patient.scale(visit, lesion)
        if scale <= 0:
            continue
        part = _continuous_volumes(lesion, scale)
        for key in volumes:
            volumes[key] += part[key]
        lesions.append(
            {"track": f"L{number}", **_continuous_bidimensional(lesion, scale, to_scanner)}
        )
    volumes["TC"] = volumes["NCR"] + volumes["ET"]
    volumes["WT"] = volumes["TC"] + volumes["ED"]
    values = sitk.GetArrayViewFromImage(seg)
    voxel_ml = float(np.prod(seg.GetSpacing())) / 1000.0
    measurable = [x for x in lesions if x["measurable"]]
    sum_of_products = sum(sorted((x["product_mm2"] for x in measurable), reverse=True)[:3])
    return {
        "data": SYNTHETIC,
        "seed": patient.seed,
        "scenario": patient.scenario.value,
        "visit": visit,
        "weeks": patient.weeks[visit],
        "acquired_on": (BASELINE_DATE + dt.timedelta(weeks=patient.weeks[visit])).isoformat(),
        "spacing_mm": list(seg.GetSpacing()),
        "skull": patient.skull,
        "mass_effect_mm": round(patient.mass_effect, 3),
        "pose": {
            "rotation_deg": [round(v, 4) for v in pose.rotation_deg],
            "translation_mm": [round(v, 4) for v in pose.translation_mm],
            "centre_mm": [round(v, 4) for v in _template_centre()],
            "convention": "template point -> scanner point (Euler ZYX about centre)",
        },
        "volumes_ml": {k: round(v, 4) for k, v in volumes.items()},
        "volumes_method": "continuous shapes integrated on a 0.5 mm grid (8 samples per mm3)",
        "label_map_volumes_ml": {
            "NCR": float((values == TumorLabel.NCR).sum()) * voxel_ml,
            "ED": float((values == TumorLabel.ED).sum()) * voxel_ml,
            "ET": float((values == TumorLabel.ET).sum()) * voxel_ml,
        },
        "lesions": lesions,
        "sum_of_products_mm2": round(sum_of_products, 2),
    }


def _fine_points(centre: np.ndarray, radius: float, step: float) -> np.ndarray:
    axis = np.arange(-radius, radius + step, step, dtype=np.float32)
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([x, y, z], axis=-1).reshape(-1, 3) + centre.astype(np.float32)


def _continuous_volumes(lesion: Lesion, scale: float) -> dict[str, float]:
    centre = np.array(lesion.centre_mm)
    step = 0.5
    points = _fine_points(centre, lesion.bounding_radius(scale), step)
    wm = _sample(atlas.tissue_map("wm"), points)
    inside, _, enhancing, oedema = lesion.fields(points, scale, wm)
    cube = step**3 / 1000.0
    return {
        "ET": float(enhancing.sum()) * cube,
        "NCR": float((inside & ~enhancing).sum()) * cube,
        "ED": float(oedema.sum()) * cube,
    }


def _continuous_bidimensional(
    lesion: Lesion, scale: float, to_scanner: sitk.Transform
) -> dict[str, Any]:
    """RANO diameters of the continuous lesion in the scanner's axial plane (0.25 mm grid)."""
    centre = np.array(to_scanner.TransformPoint(lesion.centre_mm))
    reach = scale * lesion.radius_mm * (1.0 + sum(max(a, 0.0) for _, a, _ in lesion.bumps)) + 1.0
    step_xy, step_z = 0.25, 0.5
    xy = np.arange(-reach, reach + step_xy, step_xy, dtype=np.float32)
    zs = np.arange(-reach, reach + step_z, step_z, dtype=np.float32)
    z, y, x = np.meshgrid(zs, xy, xy, indexing="ij")
    scanner = np.stack([x, y, z], axis=-1).reshape(-1, 3) + centre.astype(np.float32)
    template = _apply(to_scanner.GetInverse(), scanner)
    inside = lesion.fields(template, scale, None)[0].reshape(z.shape)
    if not inside.any():
        return {
            "longest_mm": 0.0,
            "perpendicular_mm": 0.0,
            "product_mm2": 0.0,
            "measurable": False,
            "enhancing": lesion.enhancing,
        }
    fine = sitk.GetImageFromArray(inside.astype(np.uint8))
    fine.SetSpacing((step_xy, step_xy, step_z))
    measured = bidimensional(inside, fine)
    return {
        "centroid_mm": [round(float(v), 3) for v in centre],
        "longest_mm": round(measured.longest_mm, 3),
        "perpendicular_mm": round(measured.perpendicular_mm, 3),
        "product_mm2": round(measured.product_mm2, 2),
        "measurable": measured.measurable,
        "enhancing": lesion.enhancing,
    }


def expected_responses(truths: list[dict[str, Any]]) -> list[str]:
    """The response each visit's true products imply, by the plain 2-D RANO thresholds (no
    confirmation, steroid or clinical data): PD >= +25 % over the nadir or a new measurable
    lesion, PR <= -50 % of baseline, CR no enhancing disease (no lesion at all for a
    non-enhancing tumour), otherwise SD."""
    responses = ["baseline"]
    baseline = truths[0]["sum_of_products_mm2"]
    nadir = baseline
    tracks = {x["track"] for x in truths[0]["lesions"]}
    enhancing_tumour = any(x.get("enhancing", True) for x in truths[0]["lesions"])
    for truth in truths[1:]:
        current = truth["sum_of_products_mm2"]
        new = any(x["track"] not in tracks and x["measurable"] for x in truth["lesions"])
        disease = truth["volumes_ml"]["ET"] > 0 if enhancing_tumour else bool(truth["lesions"])
        if new or (nadir > 0 and current >= 1.25 * nadir):
            responses.append("PD")
        elif not disease:
            responses.append("CR")
        elif baseline > 0 and current <= 0.5 * baseline:
            responses.append("PR")
        else:
            responses.append("SD")
        nadir = min(nadir, current)
        tracks |= {x["track"] for x in truth["lesions"]}
    return responses


def write_patient(
    patient: Patient, out: Path | str, *, progress: Callable[[str], None] | None = None
) -> list[Path]:
    """Write every visit as a BraTS 2023 folder with its ``truth.json``."""
    out = Path(out)
    folders, truths = [], []
    rendered = []
    for visit in range(len(patient.weeks)):
        started = time.perf_counter()
        images, seg, truth = render_visit(patient, visit)
        truth["render_seconds"] = round(time.perf_counter() - started, 3)
        rendered.append((images, seg))
        truths.append(truth)
        if progress:
            progress(
                f"visit {visit}: {truth['render_seconds']:.1f} s, "
                f"WT {truth['volumes_ml']['WT']:.1f} mL"
            )
    for visit, (response, truth) in enumerate(zip(expected_responses(truths), truths, strict=True)):
        truth["expected_response"] = response
        case = f"PHANTOM-{patient.seed:05d}-{visit:03d}"
        images, seg = rendered[visit]
        with output_folder(out / case) as staging:
            for sequence, image in images.items():
                write_image(image, staging / f"{case}-{_BRATS_SUFFIX[sequence]}.nii.gz")
            write_image(seg, staging / f"{case}-seg.nii.gz")
            write_text(json.dumps(truth, indent=2) + "\n", staging / "truth.json")
        folders.append(out / case)
    return folders


# Analytic ellipsoids: the exact truth the bidimensional measurement is checked against --------


def rotation(yaw: float, tilt_x: float, tilt_y: float) -> np.ndarray:
    """A rotation (x, y, z): about z by ``yaw``, then about x and y by the tilts (radians)."""
    cz, sz = math.cos(yaw), math.sin(yaw)
    cx, sx = math.cos(tilt_x), math.sin(tilt_x)
    cy, sy = math.cos(tilt_y), math.sin(tilt_y)
    about_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    turn: np.ndarray = about_z @ about_x @ about_y
    return turn


def ellipsoid_lesion(
    semi_axes: np.ndarray,
    turn: np.ndarray,
    spacing: tuple[float, float, float],
    offset: np.ndarray,
) -> tuple[sitk.Image, float]:
    """An enhancing ellipsoid (label 3) in any orientation on a grid at a sub-voxel ``offset``
    (voxels inside when their centre is), and the product of the diameters of its largest axial
    cross-section (the central one), computed analytically: that section's quadratic form is
    the (x, y) block of the ellipsoid's."""
    form = turn @ np.diag(1 / semi_axes**2) @ turn.T  # x^T form x <= 1, (x, y, z) in mm
    reach = 1.2 * float(semi_axes.max())
    axes = [
        (np.arange(int(2 * reach / s) + 4) - (int(2 * reach / s) + 4) / 2 + o) * s
        for s, o in zip(spacing, offset, strict=True)
    ]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    points = np.stack([x, y, z], axis=-1)
    inside = np.einsum("...i,ij,...j->...", points, form, points) <= 1
    image = sitk.GetImageFromArray((inside.transpose(2, 1, 0) * 3).astype(np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin((float(axes[0][0]), float(axes[1][0]), float(axes[2][0])))
    section = 2 / np.sqrt(np.linalg.eigvalsh(form[:2, :2]))  # its two diameters
    return image, float(section[0] * section[1])
