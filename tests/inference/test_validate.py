"""Bad input: every kind gets a specific message naming the file, and the CLI exits 2."""

from __future__ import annotations

import builtins
import gzip
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from inference.errors import (
    ConstantImageError,
    FieldOfViewMismatchError,
    FileTooLargeError,
    GeometryMismatchError,
    InputError,
    NonFiniteVoxelsError,
    NotThreeDimensionalError,
    SpacingOutOfRangeError,
    TruncatedFileError,
    UnreadableFileError,
    VisitInputError,
)
from inference.imaging.io import _check_nifti_payload, read_image, read_visit, write_image
from inference.imaging.validate import ImageLimits, fov_overlap
from inference.labels import Sequence

from .cli import run_cli
from .images import head, image_from_array

REPO = Path(__file__).resolve().parents[2]


def _nifti(path: Path, data: np.ndarray, zooms: tuple[float, ...] = (1.0, 1.0, 1.0)) -> Path:
    affine = np.diag([*zooms[:3], 1.0])
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _good(path: Path) -> Path:
    return write_image(head(), path)


def test_it_rejects_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "x_t1.nii.gz"
    path.write_bytes(b"this is not an image" * 50)
    with pytest.raises(UnreadableFileError, match=r"x_t1.nii.gz: corrupt gzip data"):
        read_image(path)
    plain = tmp_path / "y_t1.nii"
    plain.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UnreadableFileError, match=r"y_t1.nii: not a readable NIfTI image"):
        read_image(plain)


def test_it_rejects_a_truncated_gzip(tmp_path: Path) -> None:
    path = _good(tmp_path / "x_flair.nii.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        TruncatedFileError, match=r"x_flair.nii.gz: the compressed file is truncated"
    ):
        read_image(path)


def test_it_rejects_a_truncated_uncompressed_file(tmp_path: Path) -> None:
    path = _good(tmp_path / "x_flair.nii")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(TruncatedFileError, match=r"x_flair.nii: the file is truncated"):
        read_image(path)


def test_it_rejects_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "x_t2.nii.gz"
    path.write_bytes(b"")
    with pytest.raises(UnreadableFileError, match="the file is empty"):
        read_image(path)


def test_it_rejects_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="file not found"):
        read_image(tmp_path / "nothing_t1.nii.gz")


def test_it_rejects_a_4d_series(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "x_t1.nii.gz", np.ones((4, 5, 6, 3), np.float32))
    with pytest.raises(NotThreeDimensionalError, match=r"a 4-D series of 3 volumes"):
        read_image(path)


def test_it_rejects_a_2d_image(tmp_path: Path) -> None:
    path = _nifti(
        tmp_path / "x_t1.nii.gz", np.random.default_rng(0).random((30, 40)).astype(np.float32)
    )
    with pytest.raises(NotThreeDimensionalError, match="expected a 3-D image"):
        read_image(path)


def test_it_rejects_a_colour_image(tmp_path: Path) -> None:
    rgb = sitk.Image([6, 5, 4], sitk.sitkVectorUInt8, 3)
    path = tmp_path / "x_t1.nii.gz"
    sitk.WriteImage(rgb, str(path))
    with pytest.raises(NotThreeDimensionalError, match="found 3"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("order", ["<f4", ">f8"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_it_rejects_non_finite_voxels(tmp_path: Path, bad: float, order: str, suffix: str) -> None:
    """ITK would read NaN as 0: the file's own values are checked, compressed or not, in
    either byte order (big-endian doubles included)."""
    data = np.random.default_rng(0).random((10, 10, 10)).astype(order)
    data[2, 3, 4] = bad
    path = _nifti(tmp_path / f"x_t1c{suffix}", data)
    expected = "1 NaN and 0 infinite" if np.isnan(bad) else "0 NaN and 1 infinite"
    with pytest.raises(NonFiniteVoxelsError, match=rf"x_t1c{suffix}: {expected}"):
        read_image(path)


def _scaled(path: Path, data: np.ndarray, slope: float, inter: float) -> Path:
    """A float NIfTI file whose header scales its values (nibabel drops the scaling of float
    data when it saves, so the header's bytes are set afterwards)."""
    plain = _nifti(path.with_suffix(""), data)
    raw = bytearray(plain.read_bytes())
    raw[112:120] = np.array([slope, inter], "<f4").tobytes()  # scl_slope, scl_inter
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


def test_a_float_file_is_checked_and_read_with_its_scaling(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((10, 10, 10)).astype(np.float32)
    read = read_image(_scaled(tmp_path / "x_t1c.nii.gz", data, 2.0, 1.0))
    assert np.allclose(sitk.GetArrayFromImage(read).transpose(2, 1, 0), data * 2 + 1)
    data[1, 2, 3] = np.nan
    with pytest.raises(NonFiniteVoxelsError, match=r"y_t1c.nii.gz: 1 NaN and 0 infinite"):
        read_image(_scaled(tmp_path / "y_t1c.nii.gz", data, 2.0, 1.0))


def _offset_zero(path: Path, data: np.ndarray) -> Path:
    """A single .nii.gz whose header says its data start at byte 0 (vox_offset unset), as a
    real case of open-ms-cross-sectional has it: readers take the data after the header."""
    plain = _nifti(path.with_suffix(""), data)
    raw = bytearray(plain.read_bytes())
    raw[108:112] = np.array([0.0], "<f4").tobytes()  # vox_offset
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


@pytest.mark.parametrize(
    "make",
    [
        _offset_zero,
        lambda path, data: _scaled(path, data, 2.0, 1.0),
        lambda path, data: _nifti(path, data.astype(">f8")),
    ],
    ids=["data offset 0", "scaled", "big-endian doubles"],
)
def test_the_values_checked_for_nan_are_the_values_nibabel_reads(tmp_path: Path, make: Any) -> None:
    data = np.random.default_rng(0).random((10, 10, 10)).astype(np.float32)
    path = make(tmp_path / "x_t1.nii.gz", data)
    checked = _check_nifti_payload(path, ImageLimits(), floats=True)
    assert checked is not None
    np.testing.assert_array_equal(
        checked.reshape(data.shape, order="F"), np.asarray(nib.load(path).dataobj)
    )


def test_it_rejects_a_constant_image(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "x_t2.nii.gz", np.full((10, 10, 10), 7, np.int16))
    with pytest.raises(ConstantImageError, match="every voxel has the value 7"):
        read_image(path)


@pytest.mark.parametrize("zooms", [(1.0, 1.0, 0.1), (1.0, 1.0, 9.0)])
def test_it_rejects_spacing_out_of_range(tmp_path: Path, zooms: tuple[float, ...]) -> None:
    data = np.random.default_rng(0).random((10, 10, 10)).astype(np.float32)
    path = _nifti(tmp_path / "x_t2.nii.gz", data, zooms)
    with pytest.raises(SpacingOutOfRangeError, match=r"outside 0.2-7 mm"):
        read_image(path)


def test_it_rejects_an_image_larger_than_the_limit(tmp_path: Path) -> None:
    path = _good(tmp_path / "x_t1.nii.gz")
    with pytest.raises(FileTooLargeError, match=r"larger than the limit of 1,000 voxels"):
        read_image(path, limits=ImageLimits(max_voxels=1000))
    with pytest.raises(FileTooLargeError, match=r"MB is larger than the limit"):
        read_image(path, limits=ImageLimits(max_file_bytes=100))


def test_the_voxel_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_MAX_VOXELS", "1234")
    assert ImageLimits().max_voxels == 1234


def test_it_reports_a_file_it_may_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, for whom chmod 000 changes nothing: refuse the open() instead.
    path = _good(tmp_path / "x_t1.nii.gz")
    real_open = builtins.open

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(str(file)) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    with pytest.raises(UnreadableFileError, match=r"x_t1.nii.gz: permission denied"):
        read_image(path)


def test_it_rejects_sequences_from_different_heads(tmp_path: Path) -> None:
    write_image(head(), tmp_path / "v_t1.nii.gz")
    write_image(head(), tmp_path / "v_t1c.nii.gz")
    write_image(head(), tmp_path / "v_t2.nii.gz")
    write_image(head(origin=(200.0, 0.0, 0.0)), tmp_path / "v_flair.nii.gz")
    with pytest.raises(FieldOfViewMismatchError, match="do not cover the same head"):
        read_visit(tmp_path)


def test_fov_overlap_is_measured_in_physical_space() -> None:
    a = image_from_array(np.zeros((10, 10, 10), np.float32), spacing=(1, 1, 1), origin=(0, 0, 0))
    # the same box written with a flipped axis and twice the voxel size overlaps completely
    flipped = image_from_array(
        np.zeros((5, 10, 10), np.float32),
        spacing=(1, 1, 2),
        origin=(0, 0, 9.5),
        direction=(1, 0, 0, 0, 1, 0, 0, 0, -1),
    )
    assert fov_overlap(a, flipped) == pytest.approx(1.0, abs=0.11)


def test_a_visit_with_several_bad_files_names_each(tmp_path: Path) -> None:
    write_image(head(), tmp_path / "v_t1.nii.gz")
    write_image(head(), tmp_path / "v_t1c.nii.gz")
    (tmp_path / "v_t2.nii.gz").write_bytes(b"")
    good = write_image(head(), tmp_path / "v_flair.nii.gz").read_bytes()
    (tmp_path / "v_flair.nii.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(VisitInputError) as caught:
        read_visit(tmp_path)
    assert [type(p) for p in caught.value.problems] == [UnreadableFileError, TruncatedFileError]
    assert "v_t2.nii.gz: the file is empty" in caught.value.message
    assert "v_flair.nii.gz" in caught.value.message


def test_the_cli_prints_one_line_and_exits_2_on_bad_input(tmp_path: Path) -> None:
    visit = tmp_path / "visit"
    visit.mkdir()
    for name in ("v_t1.nii.gz", "v_t1c.nii.gz", "v_t2.nii.gz"):
        write_image(head(), visit / name)
    data = write_image(head(), visit / "v_flair.nii.gz").read_bytes()
    (visit / "v_flair.nii.gz").write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    result = run_cli("prepare", str(visit), "--out", str(out))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: v_flair.nii.gz: the compressed file is truncated")
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_the_cli_names_a_missing_sequence(tmp_path: Path) -> None:
    write_image(head(), tmp_path / "v_t1.nii.gz")
    write_image(head(), tmp_path / "v_t2.nii.gz")
    result = run_cli("prepare", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path.name}: cannot segment without T1 post-contrast or FLAIR: "
        "found T1 (v_t1.nii.gz), T2 (v_t2.nii.gz)"
    ]


def test_a_failed_run_leaves_an_earlier_result_intact(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "qc.json").write_text('{"earlier": true}')
    (tmp_path / "v_t1.nii.gz").write_bytes(gzip.compress(b"not nifti"))
    result = run_cli("prepare", str(tmp_path), "--out", str(out))
    assert result.returncode == 2
    assert (out / "qc.json").read_text() == '{"earlier": true}'


def test_input_errors_carry_their_message() -> None:
    error = InputError("x.nii.gz: something")
    assert str(error) == error.message == "x.nii.gz: something"
    assert isinstance(VisitInputError([error]), InputError)
    assert Sequence.T1C.long_name == "T1 post-contrast"


def test_measure_names_labels_outside_the_tumour_labels(tmp_path: Path) -> None:
    values = np.zeros((5, 6, 7), np.uint8)
    values[2, 2, 2] = 9
    path = write_image(image_from_array(values), tmp_path / "bad_seg.nii.gz")
    result = run_cli("measure", "--labels", str(path))
    assert result.returncode == 2
    assert "labels [9] are outside 0-4" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_refuses_maps_on_different_grids(tmp_path: Path) -> None:
    a = write_image(image_from_array(np.zeros((5, 6, 7), np.uint8)), tmp_path / "a_seg.nii.gz")
    b = write_image(image_from_array(np.zeros((5, 6, 8), np.uint8)), tmp_path / "b_seg.nii.gz")
    result = run_cli("evaluate", "--pred", str(a), "--truth", str(b))
    assert result.returncode == 2
    assert "not on the same grid" in result.stderr


def test_a_segmentation_off_its_image_grid_is_named(tmp_path: Path) -> None:
    for name in ("v_t1.nii.gz", "v_t1c.nii.gz", "v_t2.nii.gz", "v_flair.nii.gz"):
        write_image(head(), tmp_path / name)
    labels = sitk.Cast(head(spacing=(1.0, 1.0, 1.0)) > 150, sitk.sitkUInt8)
    write_image(labels, tmp_path / "v_seg.nii.gz")
    with pytest.raises(
        GeometryMismatchError, match=r"v_seg.nii.gz is not on the grid of v_t1c.nii.gz"
    ):
        read_visit(tmp_path)
