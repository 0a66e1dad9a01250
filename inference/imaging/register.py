"""Image registration: sequences within a visit, and visits of one patient to each other.

One recipe (after the SimpleITK notebooks): geometry-centred (or identity) initialisation,
Mattes mutual information with seeded random sampling, physical-shift optimizer scales and a
multi-resolution pyramid. Transforms map points of the fixed image to points of the moving image,
as ITK's resampler wants them, and are saved as ``.tfm`` files.
"""

from __future__ import annotations

import enum
import functools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from inference.errors import MissingSequenceError, UnreadableFileError
from inference.files import atomic_path
from inference.labels import REGISTRATION_PREFERENCE, Sequence


class Optimizer(enum.StrEnum):
    # Regular-step gradient descent: halves its step on each reversal; converges to a small
    # fraction of a millimetre, so visit-to-visit registration uses it.
    REGULAR_STEP = "regular_step"
    # Gradient descent with a learning rate re-estimated each iteration and a convergence
    # window: stops early, robust for the coarse template fit behind the brain mask.
    GRADIENT_DESCENT = "gradient_descent"


class Init(enum.StrEnum):
    GEOMETRY = "geometry"  # align the centres of the two images' boxes
    MOMENTS = "moments"  # align the intensity centres of mass
    IDENTITY = "identity"  # trust the scanner coordinates (sequences of one session)


@dataclass(frozen=True)
class Pyramid:
    shrink: tuple[int, ...] = (4, 2, 1)
    smoothing_mm: tuple[float, ...] = (2.0, 1.0, 0.0)


@dataclass
class StageRecord:
    """What one stage (rigid or affine) did."""

    kind: str
    metric: float
    stop_condition: str
    iterations: int
    seconds: float
    kept: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "kept": self.kept,
            "metric": round(self.metric, 5),
            "stop_condition": self.stop_condition,
            "iterations": self.iterations,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class RegistrationResult:
    """A transform from fixed to moving physical space, and how it was found."""

    transform: sitk.Transform
    stages: list[StageRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_stage(self) -> StageRecord | None:
        kept = [s for s in self.stages if s.kept]
        return kept[-1] if kept else None

    @property
    def metric(self) -> float:
        stage = self.final_stage
        return stage.metric if stage else math.nan

    @property
    def stop_condition(self) -> str:
        stage = self.final_stage
        return stage.stop_condition if stage else ""


def _float(image: sitk.Image) -> sitk.Image:
    return image if image.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(image, sitk.sitkFloat32)


def _initial_transform(
    fixed: sitk.Image, moving: sitk.Image, init: Init, kind: type[sitk.Transform]
) -> sitk.Transform:
    if init is Init.IDENTITY:
        transform = kind()
        # Rotate about the fixed image's centre so rotations and shifts stay decoupled.
        centre = fixed.TransformContinuousIndexToPhysicalPoint(
            [(s - 1) / 2 for s in fixed.GetSize()]
        )
        transform.SetCenter(centre)
        return transform
    mode = (
        sitk.CenteredTransformInitializerFilter.GEOMETRY
        if init is Init.GEOMETRY
        else sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    return sitk.CenteredTransformInitializer(fixed, moving, kind(), mode)


def _mattes_method(
    *, fixed_mask: sitk.Image | None, sampling: float, bins: int, seed: int
) -> sitk.ImageRegistrationMethod:
    """Mattes MI with seeded random sampling (inside ``fixed_mask``), linear interpolation."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling, seed)
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    # Gradients at the sampled points only: a whole-image gradient per level costs seconds.
    method.MetricUseFixedImageGradientFilterOff()
    method.MetricUseMovingImageGradientFilterOff()
    return method


def _run_stage(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
    *,
    kind: str,
    fixed_mask: sitk.Image | None,
    pyramid: Pyramid,
    sampling: float,
    bins: int,
    iterations: int,
    seed: int,
    optimizer: Optimizer,
    min_step: float,
) -> tuple[sitk.Transform, StageRecord]:
    started = time.perf_counter()
    method = _mattes_method(fixed_mask=fixed_mask, sampling=sampling, bins=bins, seed=seed)
    if optimizer is Optimizer.GRADIENT_DESCENT:
        method.SetOptimizerAsGradientDescent(
            learningRate=1.0,
            numberOfIterations=iterations,
            convergenceMinimumValue=1e-6,
            convergenceWindowSize=10,
            estimateLearningRate=method.EachIteration,
        )
    else:
        method.SetOptimizerAsRegularStepGradientDescent(
            learningRate=2.0,
            minStep=min_step,
            numberOfIterations=iterations,
            relaxationFactor=0.6,
            gradientMagnitudeTolerance=1e-6,
        )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(pyramid.shrink))
    method.SetSmoothingSigmasPerLevel(list(pyramid.smoothing_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(transform, inPlace=False)
    result = method.Execute(fixed, moving)
    if isinstance(result, sitk.CompositeTransform) and result.GetNumberOfTransforms() == 1:
        result = result.GetNthTransform(0)
    record = StageRecord(
        kind=kind,
        metric=float(method.GetMetricValue()),
        stop_condition=method.GetOptimizerStopConditionDescription(),
        iterations=int(method.GetOptimizerIteration()),
        seconds=time.perf_counter() - started,
    )
    return result, record


DEFAULT_PYRAMID = Pyramid((4, 2), (2.0, 1.0))  # shrink factors; smoothing sigmas in mm


def register_images(
    fixed: sitk.Image,
    moving: sitk.Image,
    *,
    affine: bool = True,
    init: Init = Init.GEOMETRY,
    initial_transform: sitk.Transform | None = None,
    fixed_mask: sitk.Image | None = None,
    pyramid: Pyramid = DEFAULT_PYRAMID,
    affine_pyramid: Pyramid = Pyramid((2,), (1.0,)),
    sampling: float = 0.02,
    bins: int = 32,
    iterations: int = 200,
    seed: int = 20240601,
    optimizer: Optimizer = Optimizer.REGULAR_STEP,
    min_step: float = 1e-3,
) -> RegistrationResult:
    """Rigid, then (optionally) affine registration of ``moving`` onto ``fixed``.

    The result maps fixed points to moving points; resample ``moving`` with it to bring it onto
    the fixed grid. Deterministic for a given seed. ``min_step`` (regular-step optimizer only)
    ends a level once the step has relaxed below it, in mm (optimizer scales from physical shift).
    """
    started = time.perf_counter()
    fixed_f, moving_f = _float(fixed), _float(moving)
    pyramid, affine_pyramid = _fit(pyramid, fixed), _fit(affine_pyramid, fixed)
    sampling = _enough_samples(
        sampling, fixed if fixed_mask is None else fixed_mask, fixed_mask is not None
    )
    if initial_transform is not None:
        rigid: sitk.Transform = sitk.Euler3DTransform()
        rigid.SetCenter(
            fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in fixed.GetSize()])
        )
        rigid.SetMatrix(_matrix_of(initial_transform).ravel().tolist())
        rigid.SetTranslation(_translation_about(initial_transform, rigid.GetCenter()))
    else:
        rigid = _initial_transform(fixed_f, moving_f, init, sitk.Euler3DTransform)
    options = {
        "fixed_mask": fixed_mask,
        "sampling": sampling,
        "bins": bins,
        "iterations": iterations,
        "seed": seed,
        "optimizer": optimizer,
        "min_step": min_step,
    }
    transform, rigid_record = _run_stage(
        fixed_f,
        moving_f,
        rigid,
        kind="rigid",
        pyramid=pyramid,
        **options,  # type: ignore[arg-type]
    )
    stages = [rigid_record]
    if affine:
        euler = sitk.Euler3DTransform(transform)
        start = sitk.AffineTransform(3)
        start.SetCenter(euler.GetCenter())
        start.SetMatrix(euler.GetMatrix())
        start.SetTranslation(euler.GetTranslation())
        affine_transform, affine_record = _run_stage(
            fixed_f,
            moving_f,
            start,
            kind="affine",
            pyramid=affine_pyramid,
            **options,  # type: ignore[arg-type]
        )
        # Keep the affine refinement only if it fits better on the finest grid and stays a
        # plausible head (no collapse or blow-up along an axis); otherwise keep the rigid result.
        # Both are scored on the same samples, drawn within the mask's box: the metric samples
        # only inside the mask, and setting it up over the whole grid costs more than scoring.
        scored, scored_mask = _mask_box(fixed_f, fixed_mask)
        evaluate = functools.partial(
            _metric_at,
            scored,
            moving_f,
            fixed_mask=scored_mask,
            sampling=sampling,
            bins=bins,
            seed=seed,
        )
        scales = np.linalg.svd(_matrix_of(affine_transform), compute_uv=False)
        affine_record.kept = bool(
            evaluate(affine_transform) <= evaluate(transform)
            and 0.8 <= scales.min() <= scales.max() <= 1.25
        )
        stages.append(affine_record)
        if affine_record.kept:
            transform = affine_transform
    return RegistrationResult(transform, stages, time.perf_counter() - started)


def _mask_box(image: sitk.Image, mask: sitk.Image | None) -> tuple[sitk.Image, sitk.Image | None]:
    """``image`` and ``mask`` cropped to the mask's bounding box (whole, without a mask or with
    a mask on another grid)."""
    if mask is None or not _on_grid(mask, image):
        return image, mask
    inside = sitk.GetArrayViewFromImage(mask) > 0
    if not inside.any():
        return image, mask
    box = [np.flatnonzero(inside.any(axis=other)) for other in ((1, 2), (0, 2), (0, 1))]
    start = [int(b[0]) for b in box][::-1]
    size = [int(b[-1] - b[0] + 1) for b in box][::-1]
    crop = sitk.RegionOfInterest(image, size, start)
    return crop, sitk.RegionOfInterest(mask, size, start)


def _metric_at(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
    *,
    fixed_mask: sitk.Image | None,
    sampling: float,
    bins: int,
    seed: int,
) -> float:
    """Mattes MI of ``transform`` on the full-resolution grids (lower is better)."""
    method = _mattes_method(fixed_mask=fixed_mask, sampling=sampling, bins=bins, seed=seed)
    method.SetInitialTransform(transform)
    return float(method.MetricEvaluate(fixed, moving))


MIN_LEVEL_VOXELS = 16  # the coarsest level keeps at least this many voxels along every axis
MIN_SAMPLES = 20_000  # metric samples at the finest level, whatever the image size


def _fit(pyramid: Pyramid, image: sitk.Image) -> Pyramid:
    """Drop the levels that would shrink a small image to a handful of voxels."""
    levels = [
        (shrink, sigma)
        for shrink, sigma in zip(pyramid.shrink, pyramid.smoothing_mm, strict=True)
        if shrink == 1 or min(image.GetSize()) / shrink >= MIN_LEVEL_VOXELS
    ]
    if not levels:
        return Pyramid((1,), (0.0,))
    return Pyramid(tuple(s for s, _ in levels), tuple(g for _, g in levels))


def _enough_samples(sampling: float, image: sitk.Image, is_mask: bool) -> float:
    """Raise the sampling fraction of a small image (or mask) to at least ``MIN_SAMPLES`` points."""
    if is_mask:
        voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(image)))
    else:
        voxels = int(np.prod(image.GetSize()))
    return float(min(1.0, max(sampling, MIN_SAMPLES / max(voxels, 1))))


def _matrix_of(transform: sitk.Transform) -> np.ndarray:
    affine = as_affine(transform)
    return np.array(affine.GetMatrix()).reshape(3, 3)


def as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    """Any linear transform as one AffineTransform (composites are flattened)."""
    return chain(transform)


def chain(*transforms: sitk.Transform) -> sitk.AffineTransform:
    """One affine transform doing ``transforms`` in the order given (the first one first):
    linear transforms only, as this module's are."""
    points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float) * 100.0
    mapped = []
    for point in points:
        p = point.tolist()
        for transform in transforms:
            p = list(transform.TransformPoint(p))
        mapped.append(p)
    moved = np.array(mapped)
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(((moved[1:] - moved[0]).T / 100.0).ravel().tolist())
    affine.SetTranslation(moved[0].tolist())
    return affine


def inverse(transform: sitk.Transform) -> sitk.AffineTransform:
    """The inverse of a linear transform, as one AffineTransform."""
    back = as_affine(transform).GetInverse()
    return sitk.AffineTransform(back)


def _translation_about(transform: sitk.Transform, centre: tuple[float, ...]) -> tuple[float, ...]:
    c = np.array(centre)
    return tuple((np.array(transform.TransformPoint(c.tolist())) - c).tolist())


def resample(
    image: sitk.Image,
    reference: sitk.Image,
    transform: sitk.Transform | None = None,
    *,
    labels: bool = False,
    default: float = 0.0,
) -> sitk.Image:
    """``image`` on ``reference``'s grid. Label maps always go nearest-neighbour.

    An image already on that grid, with no transform to apply, is copied rather than
    interpolated (interpolating at the voxels themselves returns the voxels).
    """
    pixel = image.GetPixelID() if labels else sitk.sitkFloat32
    if _is_identity(transform) and _on_grid(image, reference):
        copy = sitk.Cast(image, pixel)
        copy.CopyInformation(reference)  # the grid's own origin and direction, to the last bit
        return copy
    interpolator = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    return sitk.Resample(
        image,
        reference,
        transform or sitk.Transform(),
        interpolator,
        default,
        pixel,
    )


# An identity is sitk.Transform() (named "Transform", no parameters) or a rigid kind at zero.
_RIGID_KINDS = ("Transform", "IdentityTransform", "TranslationTransform", "Euler3DTransform")


def _is_identity(transform: sitk.Transform | None) -> bool:
    if transform is None:
        return True
    return transform.GetName() in _RIGID_KINDS and not any(transform.GetParameters())


def _on_grid(image: sitk.Image, reference: sitk.Image) -> bool:
    return (
        image.GetSize() == reference.GetSize()
        and np.allclose(image.GetSpacing(), reference.GetSpacing(), rtol=0, atol=1e-6)
        and np.allclose(image.GetOrigin(), reference.GetOrigin(), rtol=0, atol=1e-6)
        and np.allclose(image.GetDirection(), reference.GetDirection(), rtol=0, atol=1e-9)
    )


def isotropic(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """``image`` resampled (linear, float32) onto an isotropic grid covering the same box."""
    return resample(image, isotropic_grid(image, spacing_mm))


def isotropic_grid(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """An empty isotropic grid over the box of ``image`` (same first-voxel corner and direction)."""
    size = [
        max(2, math.ceil(n * s / spacing_mm))
        for n, s in zip(image.GetSize(), image.GetSpacing(), strict=True)
    ]
    corner = image.TransformContinuousIndexToPhysicalPoint([-0.5, -0.5, -0.5])
    direction = np.array(image.GetDirection()).reshape(3, 3)
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing([spacing_mm] * 3)
    grid.SetDirection(image.GetDirection())
    grid.SetOrigin((np.array(corner) + direction @ np.full(3, spacing_mm / 2)).tolist())
    return grid


def rotation_degrees(transform: sitk.Transform) -> float:
    """Angle (degrees) of the rotation closest to the transform's matrix."""
    u, _, vt = np.linalg.svd(_matrix_of(transform))
    rotation = u @ vt
    cosine = np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0)
    return float(np.degrees(np.arccos(cosine)))


def target_registration_error(
    found: sitk.Transform, truth: sitk.Transform, points: np.ndarray
) -> np.ndarray:
    """Distance (mm) between where ``found`` and ``truth`` send each point."""
    a, b = as_affine(found), as_affine(truth)
    ma, mb = (np.array(t.GetMatrix()).reshape(3, 3) for t in (a, b))
    pa = points @ ma.T + np.array(a.GetTranslation())
    pb = points @ mb.T + np.array(b.GetTranslation())
    distances: np.ndarray = np.linalg.norm(pa - pb, axis=1)
    return distances


def mask_points(mask: sitk.Image, *, step: int = 4) -> np.ndarray:
    """Physical (x, y, z) points of every ``step``-th voxel inside a mask."""
    indices = np.argwhere(sitk.GetArrayViewFromImage(mask)[::step, ::step, ::step] > 0) * step
    origin = np.array(mask.GetOrigin())
    spacing = np.array(mask.GetSpacing())
    direction = np.array(mask.GetDirection()).reshape(3, 3)
    xyz = indices[:, ::-1].astype(float)  # numpy (z, y, x) -> ITK (x, y, z)
    points: np.ndarray = origin + (xyz * spacing) @ direction.T
    return points


def save_transform(transform: sitk.Transform, path: Path | str) -> Path:
    """Write a ``.tfm`` file atomically (temporary name in the same folder, then rename)."""
    with atomic_path(path) as temporary:
        sitk.WriteTransform(transform, str(temporary))
    return Path(path)


def load_transform(path: Path | str) -> sitk.Transform:
    path = Path(path)
    try:
        transform = sitk.ReadTransform(str(path))
    except RuntimeError as error:
        raise UnreadableFileError(
            f"{path.name}: not a readable ITK transform file", path=path
        ) from error
    if isinstance(transform, sitk.CompositeTransform) and transform.GetNumberOfTransforms() == 1:
        transform = transform.GetNthTransform(0)
    return transform


def choose_sequence(
    fixed: Mapping[Sequence, sitk.Image], moving: Mapping[Sequence, sitk.Image]
) -> Sequence:
    """The sequence to register two visits on: the first both have, T1 post-contrast first."""
    for sequence in REGISTRATION_PREFERENCE:
        if sequence in fixed and sequence in moving:
            return sequence

    def have(images: Mapping[Sequence, sitk.Image]) -> str:
        return ", ".join(s.long_name for s in images) or "none"

    raise MissingSequenceError(
        f"the two visits share no sequence to register on (fixed has {have(fixed)}; moving has "
        f"{have(moving)})"
    )


# Visit to visit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityThresholds:
    """When a visit-to-visit registration is flagged as failed."""

    # Pearson correlation of the two images inside the fixed mask, after registration.
    # Aligned same-sequence visits score 0.8-0.95 (open-ms), thick-slice archives with tumour
    # change down to about 0.45 (TCIA 03); unrelated images score below 0.2.
    min_correlation: float = 0.4
    max_rotation_deg: float = 30.0
    # Affine scale factors (singular values of the matrix) must stay within these bounds.
    scale_range: tuple[float, float] = (0.8, 1.25)


@dataclass
class VisitRegistration:
    sequence: Sequence
    result: RegistrationResult
    quality: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.quality["ok"])

    def as_dict(self) -> dict[str, Any]:
        affine = as_affine(self.result.transform)
        translation = np.array(affine.GetTranslation())
        return {
            "sequence": self.sequence.value,
            "transform": {
                "type": "affine",
                "direction": "fixed physical point -> moving physical point (ITK convention)",
                "matrix": np.round(np.array(affine.GetMatrix()).reshape(3, 3), 6).tolist(),
                "translation_mm": np.round(translation, 4).tolist(),
                "rotation_deg": round(rotation_degrees(self.result.transform), 3),
            },
            "metric": round(self.result.metric, 5),
            "stop_condition": self.result.stop_condition,
            "stages": [s.as_dict() for s in self.result.stages],
            "seconds": round(self.result.seconds, 3),
            "quality": self.quality,
        }


def _working_copy(image: sitk.Image) -> sitk.Image:
    """Thick-slice images are registered on an isotropic copy (a pyramid needs slices to shrink)."""
    spacing = np.array(image.GetSpacing())
    if spacing.max() / spacing.min() <= 1.5:
        return _float(image)
    return isotropic(image, max(1.0, float(spacing.min())))


def _foreground(image: sitk.Image) -> sitk.Image:
    return sitk.Cast(
        sitk.OtsuThreshold(sitk.SmoothingRecursiveGaussian(image, 2.0), 0, 1), sitk.sitkUInt8
    )


def correlation_inside(fixed: sitk.Image, moving_on_fixed: sitk.Image, mask: sitk.Image) -> float:
    """Pearson correlation of two images on one grid, over the voxels of ``mask``."""
    inside = sitk.GetArrayViewFromImage(mask) > 0
    a = sitk.GetArrayViewFromImage(fixed)[inside].astype(np.float64)
    b = sitk.GetArrayViewFromImage(moving_on_fixed)[inside].astype(np.float64)
    if a.size < 10 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def assess_registration(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
    mask: sitk.Image,
    thresholds: QualityThresholds = QualityThresholds(),
) -> dict[str, Any]:
    """Flag a failed registration: low similarity inside the mask, or an implausible transform."""
    before = correlation_inside(fixed, resample(moving, fixed), mask)
    after = correlation_inside(fixed, resample(moving, fixed, transform), mask)
    scales = np.linalg.svd(_matrix_of(transform), compute_uv=False)
    rotation = rotation_degrees(transform)
    problems = []
    if after < thresholds.min_correlation:
        problems.append(
            f"low similarity after registration (correlation {after:.2f} inside the mask, "
            f"at least {thresholds.min_correlation:.2f} expected)"
        )
    if rotation > thresholds.max_rotation_deg:
        problems.append(f"implausible rotation of {rotation:.1f} degrees")
    low, high = thresholds.scale_range
    if scales.min() < low or scales.max() > high:
        problems.append(
            f"implausible scaling ({scales.min():.2f}-{scales.max():.2f}, expected {low}-{high})"
        )
    return {
        "ok": not problems,
        "problems": problems,
        "correlation_before": round(before, 4),
        "correlation_after": round(after, 4),
        "scales": np.round(scales, 4).tolist(),
    }


def register_visits(
    fixed: Mapping[Sequence, sitk.Image],
    moving: Mapping[Sequence, sitk.Image],
    *,
    fixed_mask: sitk.Image | None = None,
    sequence: Sequence | None = None,
    thresholds: QualityThresholds = QualityThresholds(),
    seed: int = 20240601,
) -> VisitRegistration:
    """Register a follow-up (``moving``) to an earlier visit (``fixed``): rigid, then affine.

    Works on raw or prepared visits and on any sequence the two share (T1 post-contrast first),
    so a follow-up with fewer sequences, or a single-sequence archive, still registers. The
    metric is sampled inside the fixed brain mask (or head, if no mask is given); the same mask
    is used for the quality check.
    """
    sequence = sequence or choose_sequence(fixed, moving)
    if sequence not in fixed or sequence not in moving:
        raise MissingSequenceError(f"both visits need {sequence.long_name} to register on it")
    fixed_image = _working_copy(fixed[sequence])
    moving_image = _working_copy(moving[sequence])
    if fixed_mask is not None:
        mask = resample(sitk.Cast(fixed_mask > 0, sitk.sitkUInt8), fixed_image, labels=True)
        mask = sitk.BinaryDilate(mask, [2, 2, 2])
    else:
        mask = _foreground(fixed_image)
    # The metric samples only inside the mask, so the fixed image is cut to the mask's box: the
    # pyramid then smooths and shrinks that box, not the air and neck around it. The search
    # starts where it would on the whole images (their centres aligned).
    # A box too small for the pyramid's coarse levels is not cut: those levels give the search
    # its reach.
    start = _initial_transform(fixed_image, moving_image, Init.GEOMETRY, sitk.Euler3DTransform)
    boxed, boxed_mask = _mask_box(fixed_image, mask)
    if _fit(DEFAULT_PYRAMID, boxed) == _fit(DEFAULT_PYRAMID, fixed_image):
        fixed_image, mask = boxed, boxed_mask
    result = register_images(
        fixed_image, moving_image, fixed_mask=mask, initial_transform=start, seed=seed
    )
    quality = assess_registration(fixed_image, moving_image, result.transform, mask, thresholds)
    return VisitRegistration(sequence, result, quality)
