"""Volumes, lesions and RANO bidimensional products of label maps with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from inference.errors import GeometryMismatchError
from inference.measurement.measure import (
    LabelValueError,
    MeasureSettings,
    ProbabilityMapError,
    equivalent_diameter_mm,
    measure,
)
from inference.segmentation.phantoms import ellipsoid_lesion, rotation

from .images import image_from_array


@pytest.mark.parametrize(
    ("spacing", "sizes_mm", "bound"),
    [
        ((1.0, 1.0, 1.0), (5, 9), 0.01),  # lesions 10-18 mm across: the measurability line
        ((1.0, 1.0, 1.0), (9, 25), 0.01),
        ((0.5, 0.5, 1.0), (5, 25), 0.01),
        ((1.0, 1.0, 3.0), (7, 25), 0.01),
        ((1.0, 1.0, 5.0), (9, 25), 0.01),
        # seen on one or two 5 mm slices: no slice either side to find the peak between
        ((1.0, 1.0, 5.0), (5, 9), 0.035),
    ],
)
def test_products_of_ellipsoids_are_unbiased(spacing, sizes_mm, bound) -> None:
    """Mean signed error of the product against the largest axial cross-section, over
    ellipsoids of several sizes, elongations and orientations (in plane and tilted up to 35
    degrees), voxel grids at random sub-voxel offsets."""
    rng = np.random.default_rng([int(spacing[2] * 10), *sizes_mm])
    errors = []
    for _ in range(16):
        semi_axes = rng.uniform(*sizes_mm, 3)
        turn = rotation(rng.uniform(0, math.pi), *rng.uniform(-0.6, 0.6, 2))
        image, truth = ellipsoid_lesion(semi_axes, turn, spacing, rng.uniform(0, 1, 3))
        product = measure(image).lesions[0].bidimensional.product_mm2
        errors.append(product / truth - 1)
    assert abs(float(np.mean(errors))) <= bound, f"bias {np.mean(errors):+.2%}"
    worst = max(abs(e) for e in errors)
    assert worst <= (0.08 if bound <= 0.01 else 0.15), f"worst {worst:.2%}"


def test_thick_slices_measure_the_section_between_slices() -> None:
    """A sphere of radius 12 mm whose equator falls half-way between 5 mm slices: the slices
    either side cut it 2.5 mm off centre (diameter 23.47 mm, product -4.3 %); the measurement
    finds the 24 mm section between them."""
    image, truth = ellipsoid_lesion(
        np.array([12.0, 12.0, 12.0]), np.eye(3), (0.5, 0.5, 5.0), (0.5, 0.5, 0.5)
    )
    bd = measure(image).lesions[0].bidimensional
    assert truth == pytest.approx(576.0)
    assert bd.product_mm2 == pytest.approx(truth, rel=0.01)
    assert bd.longest_mm == pytest.approx(24.0, rel=0.01)


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
    assert big.bidimensional.measurable
    assert big.target
    assert not small.bidimensional.measurable
    assert not small.target
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
    assert m.volumes_ml["WT"] == 0
    assert m.lesions == []
    assert m.sum_of_products_mm2 == 0


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


def test_t2_flair_lesions_are_components_of_the_whole_abnormality() -> None:
    """RANO-LGG and RANO 2.0 measure non-enhancing disease on T2/FLAIR: the whole tumour's
    components, oedema included, beside the core lesions (which stay as they were)."""
    values = np.zeros((12, 60, 60), np.uint8)
    values[2:10, 5:35, 5:29] = 2  # a non-enhancing abnormality, 30 x 24 mm, no core at all
    values[2:10, 40:56, 40:56] = 2  # a second abnormality ...
    values[4:8, 44:52, 44:52] = 3  # ... around a small enhancing core, 8 x 8 mm
    m = measure(image_from_array(values, spacing=(1.0, 1.0, 1.0)))
    assert [len(m.lesions), len(m.t2_flair_lesions)] == [1, 2]
    big, small = m.t2_flair_lesions
    assert big.et_volume_ml == 0
    assert small.et_volume_ml > 0
    assert 30 < big.bidimensional.longest_mm <= math.hypot(30, 24)  # corners rounded
    assert big.bidimensional.perpendicular_mm < big.bidimensional.longest_mm
    assert big.target
    assert small.target
    assert not m.lesions[0].bidimensional.measurable  # the 8 mm core
    assert m.t2_flair_sum_of_products_mm2 == pytest.approx(
        big.bidimensional.product_mm2 + small.bidimensional.product_mm2
    )
    t2_map = sitk.GetArrayFromImage(m.t2_flair_lesion_map)
    assert set(np.unique(t2_map)) == {0, 1, 2}
    assert m.as_dict()["t2_flair_lesions"][0]["longest_mm"] == pytest.approx(
        big.bidimensional.longest_mm, abs=1e-3
    )


def test_a_perpendicular_longer_than_the_longest_diameter_is_clamped_in_the_product_too() -> None:
    """The perpendicular was stored clamped while the product was stored unclamped."""
    from inference.measurement.measure import Bidimensional

    bd = Bidimensional(longest_mm=20.0, perpendicular_mm=20.4, slice_index=3, slice_position_mm=0)
    assert bd.perpendicular_mm == 20.0
    assert bd.product_mm2 == 400.0


def test_both_rano_diameters_have_their_ends_on_the_measured_slice() -> None:
    """The longest diameter and the perpendicular chord, as points to draw: on the measured
    slice, at right angles, as long as the measured diameters (an in-plane ellipse 30 x 16 mm
    on 1 mm voxels; its largest section is on a slice, so no through-plane correction)."""
    image, _ = ellipsoid_lesion(
        np.array([15.0, 8.0, 6.0]), rotation(0.4, 0.0, 0.0), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
    )
    bd = measure(image).lesions[0].bidimensional
    (a, b), (c, d) = (
        (np.array(p) for p in bd.endpoints_mm),
        (np.array(p) for p in bd.perpendicular_endpoints_mm),
    )
    assert {a[2], b[2], c[2], d[2]} == {bd.slice_position_mm}
    assert np.linalg.norm(b - a) == pytest.approx(bd.longest_mm, abs=0.3)
    assert np.linalg.norm(d - c) == pytest.approx(bd.perpendicular_mm, abs=0.3)
    cosine = abs(np.dot(b - a, d - c)) / (np.linalg.norm(b - a) * np.linalg.norm(d - c))
    assert cosine < 0.01
    assert bd.perpendicular_mm == pytest.approx(16.0, abs=0.6)
