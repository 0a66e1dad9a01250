"""Volumes, lesions and RANO bidimensional products of label maps with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from inference.errors import GeometryMismatchError
from inference.measure import (
    LabelValueError,
    MeasureSettings,
    ProbabilityMapError,
    equivalent_diameter_mm,
    measure,
)

from .images import image_from_array


def _grid(
    shape_zyx: tuple[int, int, int], spacing_xyz: tuple[float, float, float], offset: np.ndarray
):
    axes = [
        (np.arange(n) - n / 2 + o) * s
        for n, s, o in zip(shape_zyx, spacing_xyz[::-1], offset, strict=True)
    ]
    return np.meshgrid(*axes, indexing="ij")  # z, y, x in mm


def _ellipsoid(
    *,
    a: float,
    b: float,
    c: float,
    angle_deg: float,
    spacing: tuple[float, float, float],
    offset: np.ndarray,
    label: int = 3,
) -> tuple[sitk.Image, float]:
    """An ellipsoid lesion (semi-axes a >= b in plane, c through plane), rotated in plane."""
    shape = (
        int(2.4 * c / spacing[2]) + 4,
        int(2.4 * a / spacing[1]) + 4,
        int(2.4 * a / spacing[0]) + 4,
    )
    z, y, x = _grid(shape, spacing, offset)
    theta = math.radians(angle_deg)
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    values = np.where((u / a) ** 2 + (v / b) ** 2 + (z / c) ** 2 <= 1, label, 0).astype(np.uint8)
    image = image_from_array(values, spacing=spacing, origin=(-10.0, 20.0, 30.0))
    return image, float(z[:, 0, 0][0])


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.9, 0.9, 2.0), (1.0, 1.0, 5.0)])
def test_bidimensional_product_matches_ellipses_within_2_percent(
    spacing: tuple[float, float, float],
) -> None:
    rng = np.random.default_rng(int(spacing[2] * 10))
    for _ in range(4):
        a, b = sorted(rng.uniform(7, 25, 2), reverse=True)
        c = rng.uniform(6, 15)
        offset = rng.uniform(0, 1, 3)
        image, z0 = _ellipsoid(
            a=a, b=b, c=c, angle_deg=rng.uniform(0, 180), spacing=spacing, offset=offset
        )
        lesion = measure(image).lesions[0]
        bd = lesion.bidimensional
        z = z0 + bd.slice_index * spacing[2]  # the measured slice's height from the centre
        scale = math.sqrt(max(0.0, 1 - (z / c) ** 2))
        truth_long, truth_perp = 2 * a * scale, 2 * b * scale
        assert bd.longest_mm == pytest.approx(truth_long, rel=0.02)
        # on a near-circular section the longest diameter's direction is loosely defined and a
        # perpendicular chord slightly off the minor axis is longer than it
        assert truth_perp * 0.98 <= bd.perpendicular_mm <= min(bd.longest_mm, truth_perp * 1.04)
        assert bd.product_mm2 == pytest.approx(truth_long * truth_perp, rel=0.04)
        # the measured slice is at, or next to, the one nearest the equator
        assert abs(z) <= 1.5 * spacing[2]


def test_volumes_per_label_and_region() -> None:
    values = np.zeros((10, 20, 20), np.uint8)
    values[2:8, 5:15, 5:15] = 2  # oedema 600 voxels ...
    values[3:7, 7:13, 7:13] = 3  # ... around enhancing 144
    values[4:6, 9:11, 9:11] = 1  # ... around necrosis 8
    m = measure(image_from_array(values, spacing=(1.0, 1.0, 2.0)))
    voxel = 2 / 1000
    assert m.volumes_ml["NCR"] == pytest.approx(8 * voxel)
    assert m.volumes_ml["ET"] == pytest.approx((144 - 8) * voxel)
    assert m.volumes_ml["ED"] == pytest.approx((600 - 144) * voxel)
    assert m.volumes_ml["TC"] == pytest.approx(144 * voxel)
    assert m.volumes_ml["WT"] == pytest.approx(600 * voxel)
    assert m.equivalent_diameter_mm["WT"] == pytest.approx(equivalent_diameter_mm(600 * voxel))
    assert len(m.lesions) == 1
    assert m.lesions[0].et_volume_ml == pytest.approx(136 * voxel)
    assert m.lesions[0].ncr_volume_ml == pytest.approx(8 * voxel)


def test_lesions_are_connected_components_of_the_core() -> None:
    values = np.zeros((12, 40, 40), np.uint8)
    values[2:10, 2:16, 2:16] = 3  # big, measurable (14 mm)
    values[2:10, 20:26, 20:26] = 1  # small, not measurable (6 mm), no enhancement
    values[5, 30, 30] = 3  # one voxel: below the small-component threshold
    values[2:10, 17:19, 2:30] = 2  # oedema bridging them does not join lesions
    m = measure(
        image_from_array(values, spacing=(1.0, 1.0, 1.0)),
        settings=MeasureSettings(min_lesion_ml=0.01),
    )
    assert [x.id for x in m.lesions] == [1, 2]
    big, small = m.lesions
    assert big.volume_ml > small.volume_ml
    assert big.bidimensional.measurable and big.target
    assert not small.bidimensional.measurable and not small.target
    assert small.et_volume_ml == 0
    assert m.small_components_left_out == 1
    assert m.sum_of_products_mm2 == pytest.approx(big.bidimensional.product_mm2)
    # index centre (x 8.5, y 8.5, z 5.5) from the origin (-40, 25, 10) at 1 mm
    assert big.centroid_mm == pytest.approx([-31.5, 33.5, 15.5], abs=1e-6)


def test_connectivity_changes_what_counts_as_one_lesion() -> None:
    values = np.zeros((6, 20, 20), np.uint8)
    values[1:5, 2:8, 2:8] = 3
    values[1:5, 8:14, 8:14] = 3  # touches the first only along an edge
    image = image_from_array(values, spacing=(1.0, 1.0, 1.0))
    assert len(measure(image, settings=MeasureSettings(connectivity=6)).lesions) == 2
    assert len(measure(image, settings=MeasureSettings(connectivity=26)).lesions) == 1


def test_at_most_three_target_lesions() -> None:
    values = np.zeros((6, 30, 100), np.uint8)
    for i, width in enumerate([12, 14, 16, 18]):
        values[1:5, 5 : 5 + width, 2 + i * 24 : 2 + i * 24 + width] = 3
    m = measure(image_from_array(values, spacing=(1.0, 1.0, 1.0)))
    assert sum(x.target for x in m.lesions) == 3
    assert not next(
        x for x in m.lesions if x.volume_ml == min(y.volume_ml for y in m.lesions)
    ).target


def test_an_all_background_map_is_a_measurement_of_no_tumour() -> None:
    m = measure(image_from_array(np.zeros((5, 6, 7), np.uint8)))
    assert m.volumes_ml["WT"] == 0 and m.lesions == [] and m.sum_of_products_mm2 == 0


def test_soft_volumes_from_probabilities() -> None:
    values = np.zeros((4, 5, 6), np.uint8)
    values[1:3, 1:4, 1:5] = 3
    labels = image_from_array(values, spacing=(1.0, 1.0, 2.0))
    probabilities = np.zeros((*values.shape, 4), np.float32)
    probabilities[..., 0] = 1.0
    probabilities[values == 3] = [0.1, 0.0, 0.2, 0.7]
    prob = sitk.GetImageFromArray(probabilities, isVector=True)
    prob.CopyInformation(labels)
    m = measure(labels, probabilities=prob)
    assert m.soft_volumes_ml is not None
    assert m.soft_volumes_ml["ET"] == pytest.approx(24 * 0.7 * 2 / 1000)
    assert m.soft_volumes_ml["WT"] == pytest.approx(24 * 0.9 * 2 / 1000)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array([0, 1, 7]), r"labels \[7\] are outside 0-4"),
        (np.array([0, 3, 4]), "holds both 3 and 4"),
        (np.array([0.0, 1.5, 2.0]), "non-integer"),
    ],
)
def test_it_rejects_labels_that_are_not_tumour_labels(values: np.ndarray, message: str) -> None:
    array = np.resize(values, (3, 4, 5))
    with pytest.raises(LabelValueError, match=message):
        measure(image_from_array(array))


def test_it_rejects_bad_probability_maps() -> None:
    labels = image_from_array(np.zeros((3, 4, 5), np.uint8))
    three = sitk.GetImageFromArray(np.full((3, 4, 5, 3), 1 / 3, np.float32), isVector=True)
    three.CopyInformation(labels)
    with pytest.raises(ProbabilityMapError, match="3 channels"):
        measure(labels, probabilities=three)
    unnormalised = sitk.GetImageFromArray(np.full((3, 4, 5, 4), 0.5, np.float32), isVector=True)
    unnormalised.CopyInformation(labels)
    with pytest.raises(ProbabilityMapError, match="do not sum to 1"):
        measure(labels, probabilities=unnormalised)
    elsewhere = sitk.GetImageFromArray(np.full((3, 4, 5, 4), 0.25, np.float32), isVector=True)
    with pytest.raises(GeometryMismatchError, match="not on the same grid"):
        measure(labels, probabilities=elsewhere)
