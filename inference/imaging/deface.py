"""Blank a head image outside its brain, so that a copy leaving the service shows no face.

A training set exported from the service is meant to travel (to the people who fine-tune the
model); a raw MRI with its face can be rendered into a recognisable likeness. The brain mask
the pipeline computed (on the prepared grid) is carried onto each original sequence's grid,
joined with the voxels to keep whatever the mask says (the tumour labels), grown by a margin,
and everything outside is set to the background: the result is skull-stripped, as the BraTS
images are, and the trainer's preparation recognises it as such.

The sequences of one visit were co-registered to the reference sequence with a rigid transform
that is not stored; only how far it moved each one is (``qc.json``). A non-reference sequence's
mask is therefore grown by that distance (``displacement_bound_mm``) so no brain is cut off.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

# The farthest a brain voxel lies from the centre a co-registration rotates about: the prepared
# grid covers the head, about 200 mm across.
ROTATION_RADIUS_MM = 150.0


def displacement_bound_mm(*, translation_mm: float, rotation_deg: float) -> float:
    """How far a rigid transform of this translation and rotation can move a brain voxel."""
    return translation_mm + 2.0 * ROTATION_RADIUS_MM * math.sin(math.radians(rotation_deg) / 2.0)


def keep_mask(
    like: sitk.Image,
    brain: sitk.Image,
    *,
    keep: sitk.Image | None = None,
    margin_mm: float = 0.0,
) -> np.ndarray:
    """The voxels of ``like``'s grid to keep, as a boolean array in ``like``'s index order
    (i, j, k), the order nibabel reads a NIfTI file in: ``brain`` and ``keep`` (any non-zero
    voxel; each on any grid, in the same physical space) carried over nearest-neighbour, joined
    and grown by ``margin_mm``."""
    grid = sitk.Image(like.GetSize()[:3], sitk.sitkUInt8)
    grid.SetOrigin(like.GetOrigin()[:3])
    grid.SetSpacing(like.GetSpacing()[:3])
    direction = np.array(like.GetDirection()).reshape(like.GetDimension(), -1)[:3, :3]
    grid.SetDirection(direction.ravel().tolist())
    inside = np.zeros(grid.GetSize()[::-1], dtype=bool)
    for mask in (brain, keep):
        if mask is not None:
            moved = sitk.Resample(
                sitk.Cast(mask > 0, sitk.sitkUInt8),
                grid,
                sitk.Transform(),
                sitk.sitkNearestNeighbor,
                0,
                sitk.sitkUInt8,
            )
            inside |= sitk.GetArrayViewFromImage(moved) > 0
    if margin_mm > 0 and inside.any():
        joined = sitk.GetImageFromArray(inside.astype(np.uint8))
        joined.CopyInformation(grid)
        distance = sitk.SignedMaurerDistanceMap(
            joined, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
        )
        inside = sitk.GetArrayViewFromImage(distance) <= margin_mm
    return np.ascontiguousarray(inside.transpose(2, 1, 0))


def blank_outside(data: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``data`` (a NIfTI volume as nibabel reads it, 3-D or 4-D with one volume) with every
    voxel outside ``keep`` set to the background: zero, or the image's minimum where that is
    lower, so the brain stays the only non-background region."""
    if data.shape[:3] != keep.shape:
        raise ValueError(f"image {data.shape[:3]} and mask {keep.shape} differ in size")
    fill = min(0, data.min()) if data.size else 0
    if data.ndim > 3:
        keep = keep.reshape(keep.shape + (1,) * (data.ndim - 3))
    return np.where(keep, data, np.asarray(fill, dtype=data.dtype)).astype(data.dtype, copy=False)
