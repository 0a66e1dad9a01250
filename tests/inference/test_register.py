"""Registration on tiny synthetic heads with known motions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference.errors import MissingSequenceError
from inference.imaging.register import (
    Init,
    Pyramid,
    _mask_box,
    choose_sequence,
    load_transform,
    mask_points,
    register_images,
    register_visits,
    resample,
    rotation_degrees,
    save_transform,
    target_registration_error,
)
from inference.labels import Sequence

from .images import head, visit_images


def _rigid(
    degrees: tuple[float, float, float], shift: tuple[float, float, float]
) -> sitk.Euler3DTransform:
    motion = sitk.Euler3DTransform()
    motion.SetRotation(*np.radians(degrees))
    motion.SetTranslation(shift)
    return motion


def _move(image: sitk.Image, motion: sitk.Transform) -> sitk.Image:
    """The head after moving by ``motion``: a point x of the head ends up at motion(x)."""
    return sitk.Resample(image, image, motion.GetInverse(), sitk.sitkLinear, 10.0)


def test_it_recovers_a_known_shift_on_anisotropic_voxels() -> None:
    fixed = head(size=(48, 40, 24), spacing=(1.0, 1.2, 2.0))
    motion = _rigid((0, 0, 0), (3.0, -2.0, 4.0))
    result = register_images(
        fixed,
        _move(fixed, motion),
        affine=False,
        init=Init.IDENTITY,
        pyramid=Pyramid((2, 1), (1.0, 0.0)),
        sampling=0.5,
    )
    tre = target_registration_error(result.transform, motion, mask_points(fixed > 50, step=2))
    assert tre.mean() < 0.3
    assert "RegularStepGradientDescent" in result.stop_condition
    assert result.seconds > 0


def test_it_recovers_a_rotation_and_shift_with_a_non_zero_origin() -> None:
    fixed = head(
        size=(56, 48, 40),
        spacing=(1.0, 1.0, 1.0),
        origin=(-120.0, 40.0, 15.0),
        centre_mm=(-92.5, 63.5, 34.5),
    )
    motion = _rigid((6.0, -4.0, 8.0), (5.0, 3.0, -4.0))
    motion.SetCenter((-92.5, 63.5, 34.5))
    result = register_images(
        fixed,
        _move(fixed, motion),
        pyramid=Pyramid((2, 1), (1.0, 0.0)),
        affine_pyramid=Pyramid((1,), (0.0,)),
        sampling=0.3,
    )
    tre = target_registration_error(result.transform, motion, mask_points(fixed > 50, step=2))
    assert tre.mean() < 0.5
    assert rotation_degrees(result.transform) == pytest.approx(rotation_degrees(motion), abs=1.0)
    assert [s.kind for s in result.stages] == ["rigid", "affine"]


def test_transforms_round_trip_through_tfm_files(tmp_path: Path) -> None:
    motion = sitk.AffineTransform(3)
    motion.SetMatrix([1.01, 0.02, 0, -0.02, 0.99, 0.01, 0, 0, 1.0])
    motion.SetTranslation((1.5, -2.0, 3.25))
    motion.SetCenter((10.0, 20.0, 30.0))
    back = load_transform(save_transform(motion, tmp_path / "sub" / "t.tfm"))
    points = np.random.default_rng(0).uniform(-50, 50, (20, 3))
    assert target_registration_error(back, motion, points).max() < 1e-9
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["t.tfm"]


def test_visit_registration_passes_its_quality_check() -> None:
    fixed = visit_images(size=(48, 44, 36), spacing=(1.0, 1.0, 1.0))
    motion = _rigid((3.0, 0.0, -4.0), (2.0, 4.0, -1.0))
    moving = {
        s: _move(image, motion)
        for s, image in visit_images(size=(48, 44, 36), spacing=(1.0, 1.0, 1.0), seed=5).items()
    }
    registration = register_visits(fixed, moving)
    assert registration.sequence is Sequence.T1C
    assert registration.ok, registration.quality
    assert registration.quality["correlation_after"] > registration.quality["correlation_before"]
    tre = target_registration_error(
        registration.result.transform, motion, mask_points(fixed[Sequence.T1] > 50)
    )
    assert tre.mean() < 0.7


def test_a_failed_registration_is_flagged() -> None:
    fixed = {Sequence.T1C: head(size=(40, 40, 30), spacing=(1.0, 1.0, 1.0))}
    rng = np.random.default_rng(3)
    noise = sitk.GetImageFromArray(rng.uniform(0, 200, (30, 40, 40)).astype(np.float32))
    noise.CopyInformation(fixed[Sequence.T1C])
    registration = register_visits(fixed, {Sequence.T1C: noise})
    assert not registration.ok
    assert any("low similarity" in p for p in registration.quality["problems"])


def test_it_registers_on_the_best_sequence_both_visits_have() -> None:
    full = visit_images()
    assert (
        choose_sequence(
            full, {Sequence.FLAIR: full[Sequence.FLAIR], Sequence.T2: full[Sequence.T2]}
        )
        is Sequence.FLAIR
    )
    assert choose_sequence(full, full) is Sequence.T1C
    with pytest.raises(MissingSequenceError, match="share no sequence"):
        choose_sequence({Sequence.T1: full[Sequence.T1]}, {Sequence.T2: full[Sequence.T2]})


def test_a_single_sequence_archive_registers() -> None:
    fixed = {Sequence.FLAIR: head(size=(48, 44, 20), spacing=(1.0, 1.0, 3.0), seed=1)}
    motion = _rigid((0.0, 0.0, 3.0), (2.0, -3.0, 0.0))
    moving = {
        Sequence.FLAIR: _move(head(size=(48, 44, 20), spacing=(1.0, 1.0, 3.0), seed=2), motion)
    }
    registration = register_visits(fixed, moving)
    assert registration.sequence is Sequence.FLAIR
    assert registration.ok
    tre = target_registration_error(
        registration.result.transform, motion, mask_points(fixed[Sequence.FLAIR] > 50)
    )
    assert tre.mean() < 1.0


def test_label_maps_are_resampled_nearest_neighbour() -> None:
    labels = sitk.Cast(head() > 150, sitk.sitkUInt8) * 3 + sitk.Cast(head() > 50, sitk.sitkUInt8)
    grid = sitk.Image([30, 30, 30], sitk.sitkUInt8)
    grid.SetSpacing((0.7, 0.7, 0.7))
    grid.SetOrigin((-10.0, -10.0, -10.0))
    out = resample(labels, grid, _rigid((0, 0, 10), (0.3, 0.2, 0.1)), labels=True)
    assert out.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(out))) <= {0, 1, 4}


def test_an_image_already_on_the_grid_is_copied_exactly_not_interpolated() -> None:
    image = head(size=(40, 36, 30), spacing=(1.0, 1.0, 1.0), seed=3)
    grid = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    grid.CopyInformation(image)
    grid.SetOrigin([v + 1e-8 for v in image.GetOrigin()])  # the same grid, to within 1e-6 mm
    copied = resample(image, grid, sitk.Euler3DTransform())
    interpolated = sitk.Resample(
        image, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32
    )
    assert copied.GetOrigin() == grid.GetOrigin()
    assert copied.GetPixelID() == sitk.sitkFloat32
    assert np.allclose(sitk.GetArrayViewFromImage(copied), sitk.GetArrayViewFromImage(interpolated))
    # any motion at all, or another grid, is interpolated
    moved = resample(image, grid, sitk.TranslationTransform(3, (0.5, 0.0, 0.0)))
    assert not np.allclose(sitk.GetArrayViewFromImage(moved), sitk.GetArrayViewFromImage(copied))


def test_the_mask_box_cuts_the_image_only_with_a_mask_on_its_grid() -> None:
    image = head(size=(40, 36, 30), spacing=(1.0, 1.0, 1.0), seed=4)
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    mask[5:20, 6:30, 3:12] = 1
    box, box_mask = _mask_box(image, mask)
    assert box.GetSize() == (15, 24, 9)
    assert box.GetOrigin() == image.TransformIndexToPhysicalPoint((5, 6, 3))
    assert int(np.sum(sitk.GetArrayViewFromImage(box_mask))) == 15 * 24 * 9
    coarse = sitk.Shrink(mask, [2, 2, 2])  # another grid: left whole
    assert _mask_box(image, coarse)[0].GetSize() == image.GetSize()
    assert _mask_box(image, None)[0].GetSize() == image.GetSize()
