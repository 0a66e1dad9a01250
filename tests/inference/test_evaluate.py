"""BraTS metrics, checked by hand and against SimpleITK's own filters."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from inference.errors import GeometryMismatchError
from inference.labels import Region
from inference.measurement.evaluate import EMPTY_HD95_MM, evaluate, hd95, surface_distances

from .images import image_from_array


def _labels(array: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> sitk.Image:
    return image_from_array(array.astype(np.uint8), spacing=spacing, origin=(3.0, -4.0, 5.0))


def test_dice_and_volume_error_on_a_hand_checkable_case() -> None:
    truth = np.zeros((4, 10, 10), np.uint8)
    truth[1:3, 2:6, 2:6] = 3  # 32 voxels of ET
    prediction = np.zeros_like(truth)
    prediction[1:3, 2:6, 4:8] = 3  # shifted by 2: 16 shared
    scores = evaluate(_labels(prediction, (1, 1, 2)), _labels(truth, (1, 1, 2)))
    et = scores[Region.ET]
    assert et.dice == pytest.approx(0.5)
    assert et.truth_ml == pytest.approx(32 * 2 / 1000)
    assert et.volume_error_ml == pytest.approx(0.0)
    assert et.relative_volume_error == pytest.approx(0.0)
    assert scores[Region.WT].dice == pytest.approx(0.5)


def test_brats_rules_for_empty_masks() -> None:
    empty = np.zeros((5, 6, 7), np.uint8)
    some = empty.copy()
    some[2, 3, 3] = 1
    both_empty = evaluate(_labels(empty), _labels(empty))[Region.ET]
    assert (both_empty.dice, both_empty.hd95_mm) == (1.0, 0.0)
    assert both_empty.relative_volume_error is None
    missed = evaluate(_labels(empty), _labels(some))[Region.TC]
    assert (missed.dice, missed.hd95_mm) == (0.0, pytest.approx(EMPTY_HD95_MM))
    invented = evaluate(_labels(some), _labels(empty))[Region.TC]
    assert (invented.dice, invented.hd95_mm) == (0.0, pytest.approx(EMPTY_HD95_MM))
    assert round(EMPTY_HD95_MM, 2) == 373.13


def _ball(
    shape: tuple[int, int, int], centre: tuple[float, float, float], radius: float
) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def test_hd95_of_concentric_spheres_is_the_radius_difference() -> None:
    a = _ball((40, 40, 40), (20, 20, 20), 10)
    b = _ball((40, 40, 40), (20, 20, 20), 13)
    assert hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(3.0, abs=0.6)


def test_it_agrees_with_simpleitk_on_random_shapes() -> None:
    rng = np.random.default_rng(4)
    spacing = (0.9, 1.1, 2.5)  # x, y, z
    for _ in range(3):
        centre = rng.uniform(14, 18, 3)
        a = _ball((30, 32, 34), tuple(centre), rng.uniform(5, 9))
        b = _ball((30, 32, 34), tuple(centre + rng.uniform(-2, 2, 3)), rng.uniform(5, 9))
        image_a, image_b = (
            _labels(a.astype(np.uint8) * 3, spacing),
            _labels(b.astype(np.uint8) * 3, spacing),
        )
        score = evaluate(image_a, image_b)[Region.ET]
        overlap = sitk.LabelOverlapMeasuresImageFilter()
        overlap.Execute(image_b > 0, image_a > 0)
        assert score.dice == pytest.approx(overlap.GetDiceCoefficient(), abs=1e-9)
        # SimpleITK's (independent) maximum Hausdorff distance bounds ours and matches our 100th
        # percentile of surface distances
        hausdorff = sitk.HausdorffDistanceImageFilter()
        hausdorff.Execute(image_a > 0, image_b > 0)
        zyx = tuple(reversed(spacing))
        ours_max = max(surface_distances(a, b, zyx).max(), surface_distances(b, a, zyx).max())  # type: ignore[arg-type]
        assert ours_max <= hausdorff.GetHausdorffDistance() + 1e-6
        assert score.hd95_mm <= ours_max + 1e-9
        # and SimpleITK's distance map gives the same directed distances on the surface voxels
        contour_b = sitk.LabelContour(image_b > 0, fullyConnected=False)
        distance = sitk.Abs(
            sitk.SignedMaurerDistanceMap(
                contour_b, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
            )
        )
        contour_a = sitk.GetArrayFromImage(sitk.LabelContour(image_a > 0, fullyConnected=False)) > 0
        reference = sitk.GetArrayFromImage(distance)[contour_a]
        ours = surface_distances(a, b, zyx)  # type: ignore[arg-type]
        assert np.percentile(ours, 95) == pytest.approx(np.percentile(reference, 95), abs=0.05)


def test_it_refuses_label_maps_on_different_grids() -> None:
    a = _labels(np.zeros((4, 5, 6), np.uint8))
    b = _labels(np.zeros((4, 5, 6), np.uint8), spacing=(1.0, 1.0, 2.0))
    with pytest.raises(GeometryMismatchError, match="not on the same grid"):
        evaluate(a, b)


def test_the_bounding_box_holds_the_mask_with_its_margin_inside_the_array() -> None:
    from inference.measurement.evaluate import bounding_box

    mask = np.zeros((10, 12, 14), bool)
    mask[2:4, 5, 0:3] = True
    assert bounding_box(mask) == (slice(2, 4), slice(5, 6), slice(0, 3))
    assert bounding_box(mask, 3) == (slice(0, 7), slice(2, 9), slice(0, 6))
    assert bounding_box(np.zeros((2, 2, 2), bool)) == (slice(None),) * 3
