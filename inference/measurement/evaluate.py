"""Segmentation quality against a reference, per BraTS region (ET, TC, WT).

Definitions follow the BraTS challenge:
- Dice = 2|P & T| / (|P| + |T|); both empty -> 1 (a correct "no tumour"), one empty -> 0.
- HD95 (mm): the larger of the two directed 95th-percentile distances between the surfaces of
  prediction and truth (surface = mask voxels with a face-neighbour outside); both empty -> 0, one
  empty -> ``EMPTY_HD95_MM``, the diagonal of the BraTS 240 x 240 x 155 mm box, as the challenge
  scores it.
- Volume error: prediction minus truth in mL, and relative to the truth (None when the truth is
  empty).
Distances are physical (the images' spacing), computed with an exact Euclidean distance
transform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from inference.errors import GeometryMismatchError
from inference.labels import REGION_LABELS, Region

EMPTY_HD95_MM = math.sqrt(240**2 + 240**2 + 155**2)  # 373.13 mm


@dataclass(frozen=True)
class RegionScore:
    region: Region
    dice: float
    hd95_mm: float
    truth_ml: float
    prediction_ml: float

    @property
    def volume_error_ml(self) -> float:
        return self.prediction_ml - self.truth_ml

    @property
    def relative_volume_error(self) -> float | None:
        return None if self.truth_ml == 0 else self.volume_error_ml / self.truth_ml

    def as_dict(self) -> dict[str, Any]:
        relative = self.relative_volume_error
        return {
            "dice": round(self.dice, 5),
            "hd95_mm": round(self.hd95_mm, 3),
            "truth_ml": round(self.truth_ml, 4),
            "prediction_ml": round(self.prediction_ml, 4),
            "volume_error_ml": round(self.volume_error_ml, 4),
            "relative_volume_error": None if relative is None else round(relative, 5),
        }


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """The box holding every nonzero voxel of ``mask``, grown by ``margin`` voxels on each
    side within the array (array axes, z-y-x for a SimpleITK array); the whole array when the
    mask is empty."""
    if not mask.any():
        return tuple(slice(None) for _ in mask.shape)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        start = max(0, int(present[0]) - margin)
        stop = min(mask.shape[axis], int(present[-1]) + 1 + margin)
        box.append(slice(start, stop))
    return tuple(box)


def same_grid(a: sitk.Image, b: sitk.Image, *, tolerance: float = 1e-3) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance)
    )


def require_same_grid(a: sitk.Image, b: sitk.Image, what: str) -> None:
    if not same_grid(a, b):
        raise GeometryMismatchError(
            f"{what} are not on the same grid (size {a.GetSize()} vs {b.GetSize()}, spacing "
            f"{tuple(round(s, 3) for s in a.GetSpacing())} vs "
            f"{tuple(round(s, 3) for s in b.GetSpacing())}); resample one onto the other first"
        )


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean arrays; 1.0 when both are empty."""
    total = int(prediction.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * float(np.logical_and(prediction, truth).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))
    surface: np.ndarray = mask & ~eroded
    return surface


def surface_distances(
    a: np.ndarray, b: np.ndarray, spacing_zyx: tuple[float, float, float]
) -> np.ndarray:
    """Distance (mm) from each surface voxel of ``a`` to the nearest surface voxel of ``b``."""
    to_b = ndimage.distance_transform_edt(~_surface(b), sampling=spacing_zyx)
    distances: np.ndarray = to_b[_surface(a)]
    return distances


def hd95(
    prediction: np.ndarray, truth: np.ndarray, spacing_zyx: tuple[float, float, float]
) -> float:
    """Symmetric 95th-percentile Hausdorff distance (mm), with the BraTS empty-mask rules."""
    has_prediction, has_truth = bool(prediction.any()), bool(truth.any())
    if not has_prediction and not has_truth:
        return 0.0
    if not has_prediction or not has_truth:
        return EMPTY_HD95_MM
    forward = surface_distances(prediction, truth, spacing_zyx)
    backward = surface_distances(truth, prediction, spacing_zyx)
    return float(max(np.percentile(forward, 95), np.percentile(backward, 95)))


def region_mask(labels: np.ndarray, region: Region) -> np.ndarray:
    return np.isin(labels, [int(label) for label in REGION_LABELS[region]])


def evaluate(
    prediction: sitk.Image, truth: sitk.Image, *, distances: bool = True
) -> dict[Region, RegionScore]:
    """Dice, HD95 and volume error per region of two label maps on one grid (HD95 NaN with
    ``distances=False``: it costs most of the time)."""
    require_same_grid(prediction, truth, "prediction and truth")
    predicted = sitk.GetArrayFromImage(prediction)
    expected = sitk.GetArrayFromImage(truth)
    spacing_zyx = tuple(float(s) for s in reversed(truth.GetSpacing()))
    voxel_ml = float(np.prod(truth.GetSpacing())) / 1000.0
    scores = {}
    for region in Region:
        p, t = region_mask(predicted, region), region_mask(expected, region)
        scores[region] = RegionScore(
            region=region,
            dice=dice(p, t),
            hd95_mm=hd95(p, t, spacing_zyx) if distances else float("nan"),  # type: ignore[arg-type]
            truth_ml=float(t.sum()) * voxel_ml,
            prediction_ml=float(p.sum()) * voxel_ml,
        )
    return scores
