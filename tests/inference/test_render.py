"""Slice pictures: orientation, resampling of labels, the prior visit through its registration,
windows, colours, PNG output. Tiny synthetic images only."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from inference.errors import InputError
from inference.measurement import render

SHAPE_ZYX = (12, 14, 16)


def _image(array: np.ndarray, spacing: float = 1.0, origin: float = 0.0) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([spacing] * 3)
    image.SetOrigin([origin] * 3)
    return image  # identity direction = LPS


def _probabilities(labels: np.ndarray) -> sitk.Image:
    components = [(labels == value).astype(np.float32) for value in (0, 1, 2, 3)]
    return sitk.Compose([_image(c) for c in components])


@pytest.fixture
def visit() -> dict[str, sitk.Image]:
    rng = np.random.default_rng(3)
    grey = rng.uniform(100, 200, SHAPE_ZYX).astype(np.float32)
    labels = np.zeros(SHAPE_ZYX, np.uint8)
    labels[5:8, 6:9, 3:6] = 3  # enhancing, towards the patient's right (small x)
    labels[6, 7, 4] = 1
    mask = np.ones(SHAPE_ZYX, np.uint8)
    return {
        "grey": _image(grey),
        "labels": _image(labels),
        "mask": _image(mask),
        "prob": _probabilities(labels),
    }


def test_planes_follow_the_radiological_convention() -> None:
    volume = np.zeros(SHAPE_ZYX, np.uint8)
    volume[10, 2, 1] = 255  # superior, anterior, patient's right
    axial = render.cut(volume, "axial", 10)
    assert axial.shape == (14, 16)
    assert axial[2, 1] == 255
    coronal = render.cut(volume, "coronal", 2)
    assert coronal.shape == (12, 16)
    assert coronal[12 - 1 - 10, 1] == 255
    sagittal = render.cut(volume, "sagittal", 1)
    assert sagittal.shape == (12, 14)
    assert sagittal[1, 2] == 255
    with pytest.raises(InputError, match="axial slice 12 is outside 0-11"):
        render.cut(volume, "axial", 12)


def test_display_volumes_keep_label_values_and_centre_on_the_tumour(
    visit: dict[str, sitk.Image],
) -> None:
    volumes = render.display_volumes(
        {"t1c": visit["grey"]}, visit["mask"], visit["labels"], visit["prob"]
    )
    assert set(np.unique(volumes.layers["labels"])) == {0, 1, 3}
    assert volumes.layers["t1c"].dtype == np.uint8
    assert volumes.layers["t1c"].max() == 255
    # The probability of tumour is high inside the tumour, zero outside.
    assert volumes.layers["tumour"][6, 7, 4] == 255
    assert volumes.layers["tumour"][0, 0, 0] == 0
    assert volumes.meta["key_slices"] == {"axial": 6, "coronal": 7, "sagittal": 4}


@pytest.mark.parametrize(
    ("supported", "expected"),
    [
        (None, {1: 1, 2: 2, 3: 3}),
        (["ET", "TC", "WT"], {1: 1, 2: 2, 3: 3}),
        (["WT"], {1: render.WHOLE_TUMOUR, 2: render.WHOLE_TUMOUR, 3: render.WHOLE_TUMOUR}),
        (["ET", "TC"], {1: 1, 2: 0, 3: 3}),
    ],
)
def test_labels_are_shown_only_as_the_visits_sequences_support(
    supported: list[str] | None, expected: dict[int, int]
) -> None:
    assert render.display_labels(supported) == expected
    stored = np.array([0, 1, 2, 3], np.uint8)
    shown = render.apply_display_labels(stored, expected)
    assert shown.tolist() == [0, expected[1], expected[2], expected[3]]


def test_a_flair_only_visit_shows_one_tumour_colour_and_centres_on_it(
    visit: dict[str, sitk.Image],
) -> None:
    labels = sitk.GetArrayFromImage(visit["labels"])
    labels[2:4, 2:4, 10:13] = 2  # oedema elsewhere
    volumes = render.display_volumes(
        {"flair": visit["grey"]}, visit["mask"], _image(labels), supported_regions=["WT"]
    )
    assert set(np.unique(volumes.layers["labels"])) == {0, render.WHOLE_TUMOUR}
    assert volumes.meta["labels_shown"] == [render.WHOLE_TUMOUR]
    picture = render.labels_rgba(volumes.layers["labels"][6])
    assert tuple(picture[7, 4, :3]) == render.LABEL_COLOURS[render.WHOLE_TUMOUR]
    # No enhancing label is shown, so the key slices go through all of the tumour.
    assert volumes.meta["key_slices"]["axial"] != 6
    full = render.display_volumes({"t1c": visit["grey"]}, visit["mask"], _image(labels))
    assert full.meta["labels_shown"] == [1, 2, 3]


def test_a_finer_label_map_is_resampled_nearest_neighbour(visit: dict[str, sitk.Image]) -> None:
    fine = sitk.Resample(
        visit["labels"],
        [s * 2 for s in visit["labels"].GetSize()],
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        [-0.25] * 3,
        [0.5] * 3,
        visit["labels"].GetDirection(),
    )
    volumes = render.display_volumes({"t1c": visit["grey"]}, visit["mask"], fine)
    assert set(np.unique(volumes.layers["labels"])) <= {0, 1, 3}  # no blended values


def test_the_prior_visit_lands_on_this_grid_through_the_registration(
    visit: dict[str, sitk.Image],
) -> None:
    volumes = render.display_volumes({"t1c": visit["grey"]}, visit["mask"], visit["labels"])
    # The prior was imaged 2 mm further left (+x): its tumour sits at x 5-7 in its own grid.
    prior_labels = np.zeros(SHAPE_ZYX, np.uint8)
    prior_labels[5:8, 6:9, 5:8] = 3
    prior_to_this = sitk.TranslationTransform(3, (-2.0, 0.0, 0.0))  # prior point -> this point
    layers = render.prior_layers(
        volumes.meta, visit["grey"], visit["mask"], _image(prior_labels), prior_to_this
    )
    assert layers["prior-labels"].shape == volumes.layers["labels"].shape
    np.testing.assert_array_equal(layers["prior-labels"] == 3, volumes.layers["labels"] > 0)


def test_another_visit_on_one_axial_slice_lands_where_the_registration_says(
    visit: dict[str, sitk.Image],
) -> None:
    """The same place at another visit: one slice of this grid, resampled through the
    registration, equals that slice of the whole prior volume brought here."""
    volumes = render.display_volumes({"t1c": visit["grey"]}, visit["mask"], visit["labels"])
    prior_labels = np.zeros(SHAPE_ZYX, np.uint8)
    prior_labels[5:8, 6:9, 5:8] = 3  # 2 mm further left (+x) at the other visit
    prior_to_this = sitk.TranslationTransform(3, (-2.0, 0.0, 0.0))
    whole = render.prior_layers(
        volumes.meta, visit["grey"], visit["mask"], _image(prior_labels), prior_to_this
    )
    other = {
        "image": visit["grey"],
        "mask": visit["mask"],
        "labels": _image(prior_labels),
        "to_this": prior_to_this,
    }
    picture = render.registered_axial_slice(volumes.meta, 6, **other)
    assert picture.shape == (*volumes.layers["labels"].shape[1:], 4)
    tinted = np.any(picture[..., :3] != picture[..., :1], axis=-1)  # coloured: segmentation
    np.testing.assert_array_equal(tinted, render.cut(whole["prior-labels"], "axial", 6) > 0)
    np.testing.assert_array_equal(tinted, render.cut(volumes.layers["labels"], "axial", 6) > 0)
    with pytest.raises(InputError, match="axial slice 99 is outside"):
        render.registered_axial_slice(volumes.meta, 99, **other)


def test_colours_heat_and_png(visit: dict[str, sitk.Image], tmp_path: Path) -> None:
    volumes = render.display_volumes(
        {"t1c": visit["grey"]}, visit["mask"], visit["labels"], visit["prob"]
    )
    folder = render.write_display(volumes, tmp_path / "display")
    assert render.read_meta(folder)["key_slices"]["axial"] == 6
    labels = render.labels_rgba(render.cut(render.read_layer(folder, "labels"), "axial", 6))
    assert tuple(labels[7, 4]) == (0x00, 0x72, 0xB2, 255)  # NCR, blue
    assert tuple(labels[6, 3]) == (0xD5, 0x5E, 0x00, 255)  # ET, vermillion
    assert labels[0, 0, 3] == 0  # background transparent
    heat = render.heat_rgba(np.array([[0, 255]], np.uint8))
    assert heat[0, 0, 3] == 0
    assert heat[0, 1, 3] == 255
    picture = Image.open(io.BytesIO(render.layer_png(folder, "labels", "coronal", 7)))
    assert picture.size == (16, 12)
    assert picture.mode == "RGBA"
    key = Image.open(io.BytesIO(render.key_slice_png(folder, scale=2)))
    assert key.size == (32, 28)
    with pytest.raises(InputError, match="no such display layer"):
        render.read_layer(folder, "prior-t1c")
    with pytest.raises(InputError, match="no display images"):
        render.read_meta(tmp_path)


def test_a_window_ignores_outliers_and_empty_masks() -> None:
    values = np.concatenate([np.linspace(0, 100, 1000), [1e6]]).astype(np.float32)
    windowed, (_, high) = render.window(values)
    assert high < 1e6
    assert windowed[-1] == 255
    assert windowed[0] == 0
    blank, _ = render.window(np.zeros(10, np.float32), np.zeros(10, bool))
    assert blank.max() == 0


def test_the_views_open_on_the_largest_target_lesion_with_its_diameters_drawn(
    tmp_path: Path,
) -> None:
    """Two lesions far apart: the centre of all enhancing voxels falls between them, where
    there is no tumour. The views open on the larger lesion's measured slice instead, and the
    report's key image has its two RANO diameters drawn."""
    from inference.measurement.measure import measure

    shape = (40, 48, 48)
    labels = np.zeros(shape, np.uint8)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    labels[((z - 6) ** 2 + (y - 14) ** 2 / 2.0 + (x - 14) ** 2) <= 36] = 3  # larger, elongated
    labels[((z - 33) ** 2 + (y - 34) ** 2 + (x - 34) ** 2) <= 25] = 3
    image = _image(labels)
    measured = measure(image).as_dict()["lesions"]
    grey = _image(np.full(shape, 150, np.float32))
    mask = _image(np.ones(shape, np.uint8))
    centred = render.display_volumes({"t1c": grey}, mask, image)
    assert not centred.layers["labels"][centred.meta["key_slices"]["axial"]].any()
    volumes = render.display_volumes({"t1c": grey}, mask, image, lesions=measured)
    key = volumes.meta["key_slices"]
    assert volumes.layers["labels"][key["axial"], key["coronal"], key["sagittal"]] == 3
    assert key["axial"] == 6
    (largest, smaller) = volumes.meta["lesions"]
    assert largest["product_mm2"] > smaller["product_mm2"]
    assert len(largest["longest_zyx"]) == len(largest["perpendicular_zyx"]) == 2
    folder = render.write_display(volumes, tmp_path / "display")
    picture = np.asarray(Image.open(io.BytesIO(render.key_slice_png(folder, scale=2))))
    yellow = (picture[..., 0] == 255) & (picture[..., 1] == 221) & (picture[..., 2] == 0)
    cyan = (picture[..., 0] == 0) & (picture[..., 1] == 229) & (picture[..., 2] == 255)
    assert yellow.sum() > 2 * 16  # the longest diameter, about 14 mm at 2 px/mm
    assert cyan.sum() > 2 * 8


def test_an_image_on_the_display_grid_is_taken_as_interpolation_would_give_it() -> None:
    values = np.random.default_rng(3).random((6, 7, 8)).astype(np.float32)
    image = _image(values, spacing=1.5, origin=-3.0)
    grid = _image(np.zeros((6, 7, 8), np.uint8), spacing=1.5, origin=-3.0)
    taken = render.resample_onto(image, grid)
    interpolated = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0)
    assert np.array_equal(
        sitk.GetArrayViewFromImage(taken), sitk.GetArrayViewFromImage(interpolated)
    )
    assert taken.GetOrigin() == grid.GetOrigin()
    # a caller that changes what it got leaves the image it came from as it was
    taken[0, 0, 0] = 5.0
    assert image[0, 0, 0] == values[0, 0, 0]
