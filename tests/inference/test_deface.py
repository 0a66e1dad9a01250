"""Defacing an exported image: blank outside the brain (SYNTHETIC: a ball for a brain in a
shell for a scalp, on an anisotropic grid in another orientation than the mask's)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from inference.imaging.deface import blank_outside, displacement_bound_mm, keep_mask


def _head(spacing: tuple[float, float, float]) -> tuple[sitk.Image, np.ndarray, np.ndarray]:
    """A head on a grid of ``spacing``: brain a ball of radius 40 mm (value 100), scalp a shell
    from 55 to 65 mm (value 300), air 0 elsewhere. Returns the image and the two masks in
    nibabel's (i, j, k) order."""
    size = [round(160 / s) for s in spacing]
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin([-80.0, -80.0, -80.0])
    i, j, k = np.meshgrid(*[np.arange(n) for n in size], indexing="ij")
    radius = np.sqrt(
        sum((index * s - 80.0) ** 2 for index, s in zip((i, j, k), spacing, strict=True))
    )
    brain = radius <= 40.0
    scalp = (radius >= 55.0) & (radius <= 65.0)
    values = np.where(brain, 100.0, np.where(scalp, 300.0, 0.0)).astype(np.float32)
    filled = sitk.GetImageFromArray(values.transpose(2, 1, 0))
    filled.CopyInformation(image)
    return filled, brain, scalp


def _mask_on_1mm_grid_lps() -> sitk.Image:
    """The brain ball as the pipeline's mask: 1 mm, axes flipped (another orientation)."""
    mask = sitk.Image([160, 160, 160], sitk.sitkUInt8)
    mask.SetSpacing([1.0, 1.0, 1.0])
    mask.SetDirection([-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0])
    mask.SetOrigin([80.0, 80.0, -80.0])
    z, y, x = np.meshgrid(*[np.arange(160)] * 3, indexing="ij")
    centre = np.sqrt((80.0 - x) ** 2 + (80.0 - y) ** 2 + (z - 80.0) ** 2)  # physical
    array = (centre <= 40.0).astype(np.uint8)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(mask)
    return out


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 0.5, 5.0)])
def test_the_scalp_is_blanked_and_the_brain_kept(spacing: tuple[float, float, float]) -> None:
    image, brain, scalp = _head(spacing)
    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    keep = keep_mask(image, _mask_on_1mm_grid_lps())
    out = blank_outside(data, keep)
    assert not out[scalp].any()  # no scalp left
    kept = np.mean(out[brain] == 100.0)
    assert kept > 0.99, kept  # the brain, but for voxels cut at its edge by nearest-neighbour
    assert out.dtype == data.dtype
    assert out.shape == data.shape


def test_a_margin_grows_the_mask_in_millimetres_and_labels_outside_it_are_kept() -> None:
    image, _brain, scalp = _head((1.0, 1.0, 2.0))
    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    mask = _mask_on_1mm_grid_lps()
    within_8 = np.count_nonzero(keep_mask(image, mask, margin_mm=8.0))
    sphere_48 = 4.0 / 3.0 * math.pi * 48.0**3 / (1.0 * 1.0 * 2.0)
    assert abs(within_8 - sphere_48) / sphere_48 < 0.05
    # A label on the scalp (a clinician painted there) keeps that part of the image.
    label = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    label.CopyInformation(image)
    label[80, 20, 40] = 2  # index (i, j, k): 60 mm from the centre, in the scalp shell
    out = blank_outside(data, keep_mask(image, mask, keep=label))
    assert out[80, 20, 40] == 300.0
    assert np.count_nonzero(out[scalp]) == 1


def test_background_is_the_minimum_and_a_single_volume_4d_image_works() -> None:
    data = np.full((4, 4, 4, 1), -5, dtype=np.int16)
    data[1:3, 1:3, 1:3] = 7
    data[0, 0, 0] = 9  # outside: blanked to the minimum, -5
    keep = np.zeros((4, 4, 4), dtype=bool)
    keep[1:3, 1:3, 1:3] = True
    out = blank_outside(data, keep)
    assert out.dtype == np.int16
    assert out.shape == (4, 4, 4, 1)
    assert out[0, 0, 0, 0] == -5
    assert (out[1:3, 1:3, 1:3] == 7).all()
    with pytest.raises(ValueError, match="differ in size"):
        blank_outside(data, np.zeros((4, 4, 5), dtype=bool))


def test_displacement_bound() -> None:
    assert displacement_bound_mm(translation_mm=2.0, rotation_deg=0.0) == 2.0
    # 1 degree about a centre 150 mm away moves a voxel by 2.6 mm
    assert displacement_bound_mm(translation_mm=0.0, rotation_deg=1.0) == pytest.approx(2.618, 1e-3)
