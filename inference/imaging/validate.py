"""Checks that an image, and a visit's set of images, can be used.

Every failure raises a typed ``InputError`` whose message names the file and the problem. The
checks that can run on a header alone (dimensions, size, spacing) run before any voxel is read.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Collection, Mapping
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from inference.errors import (
    ConstantImageError,
    FieldOfViewMismatchError,
    FileTooLargeError,
    MissingSequenceError,
    NonFiniteVoxelsError,
    NotThreeDimensionalError,
    SpacingOutOfRangeError,
)
from inference.labels import ALL_SEQUENCES, Sequence

# A visit can be segmented when it holds at least one of these: the tumour is seen on T1
# post-contrast (core and enhancing part) or on FLAIR (whole tumour). T1 and T2 alone are not
# enough. The model takes the missing channels as zeros (inference/segmentation/segment.py).
SEGMENTABLE: tuple[Sequence, ...] = (Sequence.T1C, Sequence.FLAIR)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from error


@dataclass(frozen=True)
class ImageLimits:
    """What an acceptable image looks like. Defaults come from the environment, read lazily."""

    max_voxels: int = field(
        default_factory=lambda: _env_int("INFERENCE_MAX_VOXELS", 512 * 512 * 320)
    )
    max_file_bytes: int = field(
        default_factory=lambda: _env_int("INFERENCE_MAX_FILE_MB", 1024) * 1024 * 1024
    )
    min_spacing_mm: float = 0.2
    max_spacing_mm: float = 7.0
    # Sequences of one visit must share at least this fraction of the smaller one's volume.
    min_fov_overlap: float = 0.5


def check_header(
    name: str,
    size: SequenceOf[int],
    spacing: SequenceOf[float],
    components: int,
    limits: ImageLimits,
) -> None:
    """Checks that need only the header: dimensions, components, voxel count and spacing."""
    dims = [int(s) for s in size]
    if len(dims) == 4 and dims[3] == 1:
        dims = dims[:3]
        spacing = spacing[:3]
    if len(dims) != 3:
        shape = " x ".join(str(d) for d in dims)
        detail = (
            f"a 4-D series of {dims[3]} volumes" if len(dims) == 4 else f"a {len(dims)}-D image"
        )
        raise NotThreeDimensionalError(
            f"{name}: expected a 3-D image but found {detail} ({shape}); "
            "export one volume per sequence"
        )
    if min(dims) < 2:
        raise NotThreeDimensionalError(
            f"{name}: expected a 3-D image but it is a single slice "
            f"({' x '.join(str(d) for d in dims)})"
        )
    if components != 1:
        raise NotThreeDimensionalError(
            f"{name}: expected one intensity per voxel but found {components} (colour or vector "
            "image)"
        )
    voxels = int(np.prod(dims, dtype=np.int64))
    if voxels > limits.max_voxels:
        raise FileTooLargeError(
            f"{name}: image of {' x '.join(str(d) for d in dims)} = {voxels:,} voxels is larger "
            f"than the limit of {limits.max_voxels:,} voxels (INFERENCE_MAX_VOXELS)"
        )
    check_spacing(name, spacing[:3], limits)


def check_spacing(name: str, spacing: SequenceOf[float], limits: ImageLimits) -> None:
    bad = [s for s in spacing if not (limits.min_spacing_mm <= s <= limits.max_spacing_mm)]
    if bad:
        shown = " x ".join(f"{s:g}" for s in spacing)
        raise SpacingOutOfRangeError(
            f"{name}: voxel spacing {shown} mm is outside {limits.min_spacing_mm:g}-"
            f"{limits.max_spacing_mm:g} mm; check the header (a wrong unit or a missing slice "
            "thickness)"
        )


def check_voxels(name: str, image: sitk.Image) -> None:
    """Checks on the voxel values: all finite, not all equal."""
    check_raw_values(name, sitk.GetArrayViewFromImage(image))


def check_raw_values(name: str, values: np.ndarray) -> None:
    """All finite, not all equal."""
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not finite.all():
            nan = int(np.isnan(values).sum())
            inf = int(values.size - finite.sum() - nan)
            raise NonFiniteVoxelsError(
                f"{name}: {nan:,} NaN and {inf:,} infinite voxel values "
                f"({100 * (nan + inf) / values.size:.2g} % of the image)"
            )
    low, high = values.min(), values.max()
    if low == high:
        raise ConstantImageError(
            f"{name}: every voxel has the value {float(low):g}; the image is empty"
        )


def check_segmentable(found: Mapping[Sequence, str] | Collection[Sequence]) -> None:
    """A visit must hold T1 post-contrast or FLAIR; ``found`` lists its sequences, or maps them
    to the file each came from (named in the message).

    >>> try:
    ...     check_segmentable({Sequence.T1: "a_t1.nii.gz", Sequence.T2: "a_t2.nii.gz"})
    ... except MissingSequenceError as error:
    ...     print(error)
    cannot segment without T1 post-contrast or FLAIR: found T1 (a_t1.nii.gz), T2 (a_t2.nii.gz)
    >>> check_segmentable([Sequence.FLAIR])
    """
    if any(s in found for s in SEGMENTABLE):
        return
    raise MissingSequenceError(f"cannot segment without {_either()}: found {_listed(found)}")


def reference_sequence(found: Collection[Sequence]) -> Sequence:
    """The sequence whose grid a visit is prepared and segmented on: T1 post-contrast, else
    FLAIR.

    >>> reference_sequence([Sequence.T1, Sequence.FLAIR]).value
    'flair'
    """
    check_segmentable(found)
    return next(s for s in SEGMENTABLE if s in found)


def _either() -> str:
    return " or ".join(s.long_name for s in SEGMENTABLE)


def _listed(found: Mapping[Sequence, str] | Collection[Sequence]) -> str:
    names = [
        f"{s.long_name} ({found[s]})" if isinstance(found, Mapping) else s.long_name
        for s in ALL_SEQUENCES
        if s in found
    ]
    return ", ".join(names) or "no sequence"


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned physical bounding box (mm) of an image's voxel centres, in (x, y, z)."""
    size = image.GetSize()
    corners = [
        image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
        for corner in itertools.product(*[(-0.5, s - 0.5) for s in size])
    ]
    points = np.array(corners)
    return points.min(axis=0), points.max(axis=0)


def fov_overlap(a: sitk.Image, b: sitk.Image) -> float:
    """Volume shared by two images' boxes as a fraction of the smaller box.

    >>> img = sitk.Image([10, 10, 10], sitk.sitkUInt8)
    >>> shifted = sitk.Image(img); shifted.SetOrigin((5.0, 0.0, 0.0))
    >>> fov_overlap(img, shifted)
    0.5
    """
    (a_low, a_high), (b_low, b_high) = physical_bounds(a), physical_bounds(b)
    extent = np.clip(np.minimum(a_high, b_high) - np.maximum(a_low, b_low), 0, None)
    shared = float(np.prod(extent))
    smaller = min(float(np.prod(a_high - a_low)), float(np.prod(b_high - b_low)))
    return shared / smaller if smaller > 0 else 0.0


def check_same_head(images: Mapping[Sequence, sitk.Image], limits: ImageLimits) -> None:
    """The sequences of one visit must cover the same part of physical space."""
    for (seq_a, a), (seq_b, b) in itertools.combinations(images.items(), 2):
        overlap = fov_overlap(a, b)
        if overlap < limits.min_fov_overlap:
            raise FieldOfViewMismatchError(
                f"{seq_a.long_name} and {seq_b.long_name} do not cover the same head: their "
                f"fields of view share {100 * overlap:.0f} % (at least "
                f"{100 * limits.min_fov_overlap:.0f} % expected); were they taken from different "
                "patients or visits?"
            )
