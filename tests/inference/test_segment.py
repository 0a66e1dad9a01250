"""Loading a weights folder and segmenting a prepared visit (a small random-weight model: these
tests check the plumbing, geometry and errors; accuracy is measured in bench/)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import SimpleITK as sitk

from inference.errors import InputError, MissingSequenceError
from inference.labels import ALL_SEQUENCES, Region, Sequence
from inference.segmentation.model import ModelConfig, build_model
from inference.segmentation.segment import (
    CARD_FILE,
    DEFAULT_WEIGHTS,
    WEIGHTS_FILE,
    Segmenter,
    SpacingError,
    WeightsError,
    export_weights,
    volume_intervals,
)

from .images import image_from_array

SMALL = ModelConfig(decoder_filters=(32, 16, 16, 8))


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras.utils.set_random_seed(2)
    folder = tmp_path_factory.mktemp("weights")
    export_weights(build_model(SMALL), folder, training={"data": ["unit test"]}, config=SMALL)
    return folder


@pytest.fixture(scope="module")
def segmenter(weights: Path) -> Segmenter:
    return Segmenter(weights)


def prepared_visit(
    size: tuple[int, int, int] = (50, 45, 20), spacing: float = 1.0
) -> tuple[dict[Sequence, sitk.Image], sitk.Image]:
    """z-scored 'sequences' (x, y, z size) on a 1 mm grid with a non-zero origin, and a mask."""
    rng = np.random.default_rng(0)
    shape = size[::-1]
    mask = np.zeros(shape, np.uint8)
    mask[4:-4, 5:-5, 6:-6] = 1
    images = {
        s: image_from_array(
            (rng.normal(size=shape) * mask).astype(np.float32),
            spacing=(spacing,) * 3,
            origin=(-20.0, 13.0, 4.0),
        )
        for s in ALL_SEQUENCES
    }
    mask_image = sitk.GetImageFromArray(mask)
    mask_image.CopyInformation(images[Sequence.T1C])
    return images, mask_image


def copy_weights(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in (CARD_FILE, WEIGHTS_FILE):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def test_it_segments_on_the_prepared_grid_with_probabilities_that_sum_to_one(
    segmenter: Segmenter,
) -> None:
    images, mask = prepared_visit()
    result = segmenter.segment(images, mask)
    assert result.labels.GetSize() == images[Sequence.T1C].GetSize()
    assert result.labels.GetOrigin() == images[Sequence.T1C].GetOrigin()
    probabilities = sitk.GetArrayFromImage(result.probabilities)
    assert probabilities.shape == (20, 45, 50, 4)
    assert np.allclose(probabilities.sum(axis=-1), 1.0, atol=1e-4)
    labels = sitk.GetArrayFromImage(result.labels)
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    assert (labels == probabilities.argmax(-1)).all()  # classes 0-3 are labels 0-3
    # Outside the brain's box the model is not asked: background with certainty.
    assert (probabilities[0, :, :, 0] == 1.0).all()
    assert result.details["slice_size"] == [64, 64]  # 39 x 42 cropped, padded to 32s


def test_it_writes_back_onto_the_visits_own_thick_slice_geometry(segmenter: Segmenter) -> None:
    images, mask = prepared_visit()
    geometry = sitk.Image([25, 23, 4], sitk.sitkInt16)
    geometry.SetSpacing((2.0, 2.0, 5.0))
    geometry.SetOrigin((-19.5, 13.5, 6.0))
    result = segmenter.segment(images, mask, geometry=geometry)
    for image in (result.labels, result.probabilities):
        assert image.GetSize() == (25, 23, 4)
        assert image.GetSpacing() == (2.0, 2.0, 5.0)
        assert image.GetOrigin() == (-19.5, 13.5, 6.0)
    assert result.labels.GetPixelID() == sitk.sitkUInt8


def test_flipping_averages_the_mirrored_prediction(segmenter: Segmenter) -> None:
    slices = np.random.default_rng(5).normal(size=(2, 32, 64, 4)).astype(np.float32)
    plain = segmenter.predict_slices(slices, flips=False)
    mirrored = segmenter.predict_slices(slices[:, :, ::-1].copy(), flips=False)[:, :, ::-1]
    both = segmenter.predict_slices(slices, flips=True)
    assert np.allclose(both, (plain + mirrored) / 2, atol=1e-5)


def test_volume_intervals_bracket_the_label_volume() -> None:
    shape = (4, 10, 10)
    probabilities = np.zeros((*shape, 4), np.float32)
    probabilities[..., 0] = 1.0
    probabilities[0, :5, :, :] = [0.0, 0.0, 0.0, 1.0]  # 50 sure ET voxels
    probabilities[1, :2, :, :] = [0.4, 0.0, 0.0, 0.6]  # 20 ET at 0.6: in the band
    probabilities[2, :1, :, :] = [0.8, 0.0, 0.0, 0.2]  # 10 below the band
    image = sitk.GetImageFromArray(probabilities, isVector=True)
    image.SetSpacing((2.0, 1.0, 1.0))  # 2 uL voxels
    labels = sitk.GetImageFromArray(probabilities.argmax(-1).astype(np.uint8))
    labels.CopyInformation(image)
    et = volume_intervals(labels, image)["ET"]
    assert et["volume_ml"] == pytest.approx(70 * 0.002)
    assert et["low_ml"] == pytest.approx(50 * 0.002)
    assert et["high_ml"] == pytest.approx(70 * 0.002)
    assert et["expected_ml"] == pytest.approx((50 + 20 * 0.6 + 10 * 0.2) * 0.002, rel=1e-4)


def test_a_prepared_visit_with_the_wrong_spacing_is_refused(segmenter: Segmenter) -> None:
    images, mask = prepared_visit(spacing=1.5)
    with pytest.raises(SpacingError, match=r"1\.5 x 1\.5 x 1\.5 mm; the model needs 1 mm"):
        segmenter.segment(images, mask)


def test_a_visit_without_t1c_or_flair_is_refused_naming_what_is_missing(
    segmenter: Segmenter,
) -> None:
    images, mask = prepared_visit()
    del images[Sequence.T1C], images[Sequence.FLAIR]
    with pytest.raises(
        MissingSequenceError,
        match=r"^cannot segment without T1 post-contrast or FLAIR: found T1, T2$",
    ):
        segmenter.segment(images, mask)


class RecordingSegmenter(Segmenter):
    """No model: records the slices it is given and calls ET where the T1c channel is above 1,
    oedema where the FLAIR channel is."""

    def __init__(self) -> None:
        self.card = {"name": "recorder", "version": "test", "weights_sha256": "0" * 64}
        self.load_seconds = 0.0
        self.inputs: list[np.ndarray] = []

    def predict_slices(self, slices: np.ndarray, *, flips: bool = True) -> np.ndarray:
        self.inputs.append(slices.copy())
        classes = np.where(slices[..., 1] > 1.0, 3, np.where(slices[..., 3] > 1.0, 2, 0))
        return np.eye(4, dtype=np.float32)[classes]


def test_missing_channels_are_zero_filled_and_the_sequences_used_are_recorded() -> None:
    from inference.segmentation.model import CHANNELS

    recorder = RecordingSegmenter()
    images, mask = prepared_visit()
    del images[Sequence.T1], images[Sequence.T2]
    result = recorder.segment(images, mask, flips=False)
    (slices,) = recorder.inputs
    for sequence in (Sequence.T1, Sequence.T2):
        assert (slices[..., CHANNELS.index(sequence)] == 0.0).all()
    for sequence in (Sequence.T1C, Sequence.FLAIR):
        assert (slices[..., CHANNELS.index(sequence)] != 0.0).any()
    assert result.details["sequences_used"] == ["t1c", "flair"]
    assert result.details["sequences_missing"] == ["t1", "t2"]
    assert result.details["supported_regions"] == ["ET", "TC", "WT"]
    assert result.details["not_measured"] == {}
    assert all(v["volume_ml"] is not None for v in result.volumes_ml.values())


def test_a_flair_only_visit_measures_the_whole_tumour_and_nothing_else(tmp_path: Path) -> None:
    from inference.segmentation.segment import write_segmentation

    recorder = RecordingSegmenter()
    images, mask = prepared_visit()
    flair = images[Sequence.FLAIR]
    result = recorder.segment({Sequence.FLAIR: flair}, mask, flips=False)
    assert (recorder.inputs[0][..., :3] == 0.0).all()  # T1, T1c, T2 all zeros
    assert result.labels.GetSize() == flair.GetSize()
    assert result.labels.GetOrigin() == flair.GetOrigin()
    assert result.details["supported_regions"] == ["WT"]
    volumes = result.volumes_ml
    assert volumes["WT"]["volume_ml"] > 0
    for region in ("ET", "TC"):
        assert volumes[region] == {
            "volume_ml": None,
            "expected_ml": None,
            "low_ml": None,
            "high_ml": None,
            "reason": "not measured: needs T1 post-contrast, which this visit lacks",
        }
    report = write_segmentation(result, recorder, tmp_path / "out", source="flair only")
    written = json.loads((tmp_path / "out" / "segmentation.json").read_text())
    assert written == json.loads(json.dumps(report))
    assert written["sequences_used"] == ["flair"]
    assert written["sequences_missing"] == ["t1", "t1c", "t2"]
    assert written["supported_regions"] == ["WT"]
    assert written["volumes_ml"]["ET"]["volume_ml"] is None
    assert written["not_measured"]["NCR"].startswith("not measured: needs T1 post-contrast")
    assert written["sequences"] == (
        "FLAIR (T1, T1c, T2 missing): whole tumour measured; core and enhancing not measured"
    )


@pytest.mark.parametrize(
    ("present", "regions", "unmeasured"),
    [
        (["t1", "t1c", "t2", "flair"], ["ET", "TC", "WT"], set()),
        (["t1c", "flair"], ["ET", "TC", "WT"], set()),
        (["t1c"], ["ET", "TC"], {"WT", "ED"}),
        (["t1", "t1c"], ["ET", "TC"], {"WT", "ED"}),
        (["t1c", "t2"], ["ET", "TC", "WT"], set()),
        (["flair"], ["WT"], {"ET", "TC", "NCR", "ED"}),
        (["t1", "t2", "flair"], ["WT"], {"ET", "TC", "NCR", "ED"}),
    ],
)
def test_the_regions_a_subset_supports(
    present: list[str], regions: list[str], unmeasured: set[str]
) -> None:
    from inference.segmentation.segment import sequence_support

    support = sequence_support(present)
    assert [r.value for r in support.regions] == regions
    assert set(support.not_measured()) == unmeasured


def test_the_model_segments_a_t1c_and_flair_visit(segmenter: Segmenter) -> None:
    images, mask = prepared_visit()
    del images[Sequence.T1], images[Sequence.T2]
    result = segmenter.segment(images, mask)
    assert result.labels.GetSize() == images[Sequence.T1C].GetSize()
    probabilities = sitk.GetArrayFromImage(result.probabilities)
    assert np.allclose(probabilities.sum(axis=-1), 1.0, atol=1e-4)


def test_an_empty_brain_mask_is_refused(segmenter: Segmenter) -> None:
    images, mask = prepared_visit()
    with pytest.raises(InputError, match="brain mask is empty"):
        segmenter.segment(images, mask * 0)


def test_a_missing_weights_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        Segmenter(tmp_path / "nowhere")


def test_a_folder_without_a_model_card_is_refused(weights: Path, tmp_path: Path) -> None:
    folder = copy_weights(weights, tmp_path / "w")
    (folder / CARD_FILE).unlink()
    with pytest.raises(WeightsError, match="no model card"):
        Segmenter(folder)


def test_missing_weights_are_named(weights: Path, tmp_path: Path) -> None:
    folder = copy_weights(weights, tmp_path / "w")
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(WeightsError, match=r"weights file segmenter\.weights\.npz is missing"):
        Segmenter(folder)


def test_truncated_weights_fail_their_checksum(weights: Path, tmp_path: Path) -> None:
    folder = copy_weights(weights, tmp_path / "w")
    data = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="does not match the model card"):
        Segmenter(folder)


def test_truncated_weights_with_a_matching_card_are_called_corrupt(
    weights: Path, tmp_path: Path
) -> None:
    from inference.segmentation.segment import sha256_of

    folder = copy_weights(weights, tmp_path / "w")
    data = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    card = json.loads((folder / CARD_FILE).read_text())
    card["weights_sha256"] = sha256_of(folder / WEIGHTS_FILE)
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        Segmenter(folder)


def test_a_card_for_another_architecture_is_refused(weights: Path, tmp_path: Path) -> None:
    folder = copy_weights(weights, tmp_path / "w")
    card = json.loads((folder / CARD_FILE).read_text())
    card["architecture"] = "resnet50-unet"
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="architecture 'resnet50-unet'"):
        Segmenter(folder)


def test_weights_of_another_shape_are_refused(weights: Path, tmp_path: Path) -> None:
    folder = copy_weights(weights, tmp_path / "w")
    card = json.loads((folder / CARD_FILE).read_text())
    card["decoder_filters"] = [48, 16, 16, 8]  # the card claims a wider decoder
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="weights for another architecture"):
        Segmenter(folder)


def test_the_shipped_model_card_matches_its_weights() -> None:
    from inference.segmentation.segment import read_card, sha256_of

    card = read_card(DEFAULT_WEIGHTS)
    assert sha256_of(DEFAULT_WEIGHTS / card["weights_file"]) == card["weights_sha256"]
    assert (DEFAULT_WEIGHTS / card["weights_file"]).stat().st_size <= 30 * 1024 * 1024
    assert "SYNTHETIC" in json.dumps(card["training"]).upper()
    assert card["metrics"], "the model card states its measured metrics"


def test_the_command_line_names_a_missing_weights_folder(tmp_path: Path) -> None:
    from inference.imaging.io import write_image

    from .cli import run_cli
    from .images import head

    write_image(head(), tmp_path / "v_t1c.nii.gz")  # a visit it could segment
    done = run_cli(
        "segment", str(tmp_path), "--out", str(tmp_path / "out"), "--weights", str(tmp_path / "x")
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines()[-1]
        == f"error: weights folder {tmp_path / 'x'} does not exist"
    )
    assert not (tmp_path / "out").exists()


def test_the_shipped_model_segments_a_held_out_phantom_visit(tmp_path: Path) -> None:
    """The real thing, end to end through the command line: a raw phantom visit (a seed never
    used in training) is prepared, segmented and written in its own T1c geometry."""
    from inference.imaging.io import read_label_map
    from inference.measurement.evaluate import evaluate
    from inference.segmentation.phantoms import make_patient, write_patient

    from .cli import run_cli

    folder = write_patient(make_patient(990_001, visits=1), tmp_path / "raw")[0]
    done = run_cli("segment", str(folder), "--out", str(tmp_path / "out"), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "segmentation.json").read_text())
    card = json.loads((DEFAULT_WEIGHTS / CARD_FILE).read_text())
    assert report["weights_sha256"] == card["weights_sha256"]
    assert report["input"] == "raw (prepared first)"
    predicted, _ = read_label_map(tmp_path / "out" / "seg.nii.gz")
    truth, _ = read_label_map(next(folder.glob("*-seg.nii.gz")))
    scores = evaluate(predicted, truth)  # also checks both are on the same grid
    assert scores[Region.WT].dice >= 0.9
    assert scores[Region.ET].dice >= 0.8
    for region in ("WT", "TC", "ET"):
        volumes = report["volumes_ml"][region]
        assert volumes["low_ml"] <= volumes["volume_ml"] <= volumes["high_ml"]


def test_the_command_line_segments_a_prepared_folder_into_three_files(
    weights: Path, tmp_path: Path
) -> None:
    from inference.imaging.io import read_label_map, read_probability_map, write_image
    from inference.imaging.preprocess import PREPARED_NAMES

    from .cli import run_cli

    images, mask = prepared_visit()
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    for sequence, image in images.items():
        write_image(image, prepared / PREPARED_NAMES[sequence])
    write_image(mask, prepared / "brain_mask.nii.gz")
    (prepared / "qc.json").write_text("{}")
    done = run_cli(
        "segment", str(prepared), "--out", str(tmp_path / "out"), "--weights", str(weights)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "segmentation.json").read_text())
    assert report["input"] == "prepared"
    assert report["flips"] is True
    assert set(report["volumes_ml"]) == {"ET", "TC", "WT"}
    labels, _ = read_label_map(tmp_path / "out" / "seg.nii.gz")
    probabilities = read_probability_map(tmp_path / "out" / "prob.nii.gz")
    assert labels.GetSize() == images[Sequence.T1C].GetSize()
    assert probabilities.GetNumberOfComponentsPerPixel() == 4
    assert np.allclose(labels.GetOrigin(), images[Sequence.T1C].GetOrigin())


def test_the_command_line_segments_a_prepared_flair_only_folder(
    weights: Path, tmp_path: Path
) -> None:
    from inference.imaging.io import write_image
    from inference.imaging.preprocess import PREPARED_NAMES

    from .cli import run_cli

    images, mask = prepared_visit()
    prepared = tmp_path / "prepared"
    write_image(images[Sequence.FLAIR], prepared / PREPARED_NAMES[Sequence.FLAIR])
    write_image(mask, prepared / "brain_mask.nii.gz")
    (prepared / "qc.json").write_text('{"sequences": {"present": ["flair"]}}')
    done = run_cli(
        "segment", str(prepared), "--out", str(tmp_path / "out"), "--weights", str(weights)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ET not measured, TC not measured, WT " in done.stderr
    report = json.loads((tmp_path / "out" / "segmentation.json").read_text())
    assert report["sequences_used"] == ["flair"]
    assert report["supported_regions"] == ["WT"]
    assert report["volumes_ml"]["TC"]["volume_ml"] is None


def test_the_command_line_refuses_a_visit_without_t1c_or_flair_with_one_line(
    tmp_path: Path,
) -> None:
    from inference.imaging.io import write_image

    from .cli import run_cli
    from .images import head

    visit = tmp_path / "visit"
    write_image(head(), visit / "v_t1.nii.gz")
    write_image(head(), visit / "v_t2.nii.gz")
    done = run_cli("segment", str(visit), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: visit: cannot segment without T1 post-contrast or FLAIR: "
        "found T1 (v_t1.nii.gz), T2 (v_t2.nii.gz)"
    ]
    assert not (tmp_path / "out").exists()
