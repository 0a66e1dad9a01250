"""Reading visits: names, formats, geometry, DICOM, atomic writes."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from inference.errors import DuplicateSequenceError, GeometryMismatchError, MissingSequenceError
from inference.imaging.io import (
    MapKind,
    classify_filename,
    classify_series_description,
    find_visit_files,
    output_folder,
    read_image,
    read_label_map,
    read_visit,
    write_dicom_series,
    write_image,
)
from inference.labels import ALL_SEQUENCES, LabelConvention, Sequence

from .images import head, image_from_array

T1, T1C, T2, FLAIR = Sequence.T1, Sequence.T1C, Sequence.T2, Sequence.FLAIR
SEG, BRAIN = MapKind.SEGMENTATION, MapKind.BRAIN_MASK


@pytest.mark.parametrize(
    ("name", "role"),
    [
        # BraTS 2021
        ("BraTS2021_00012_t1.nii.gz", T1),
        ("BraTS2021_00012_t1ce.nii.gz", T1C),
        ("BraTS2021_00012_t2.nii.gz", T2),
        ("BraTS2021_00012_flair.nii.gz", FLAIR),
        ("BraTS2021_00012_seg.nii.gz", SEG),
        # BraTS 2023+
        ("BraTS-GLI-00001-000-t1n.nii.gz", T1),
        ("BraTS-GLI-00001-000-t1c.nii.gz", T1C),
        ("BraTS-GLI-00001-000-t2w.nii.gz", T2),
        ("BraTS-GLI-00001-000-t2f.nii.gz", FLAIR),
        ("BraTS-GLI-00001-000-seg.nii.gz", SEG),
        # LUMIERE
        ("T1.nii.gz", T1),
        ("CT1.nii.gz", T1C),
        ("T2.nii.gz", T2),
        ("FLAIR.nii.gz", FLAIR),
        # nnU-Net channels
        ("BRATS_001_0000.nii.gz", T1),
        ("BRATS_001_0001.nii.gz", T1C),
        ("BRATS_001_0002.nii.gz", T2),
        ("BRATS_001_0003.nii.gz", FLAIR),
        # in the wild
        ("TCGA-FG-6692_fla.nii.gz", FLAIR),
        ("TCGA-FG-6692_t1c.nii.gz", T1C),
        ("patient_T1GD.nii", T1C),
        ("patient_t1_post.nii.gz", T1C),
        ("patient t1+c.nii.gz", T1C),
        ("raw_study1_T1W.nii.gz", T1),
        ("raw_study1_T2W.nii.gz", T2),
        ("sub-01_T2_FLAIR.nii.gz", FLAIR),
        ("T1c_subtrMeanDivStd.nii.gz", T1C),
        ("TCGA-FG-6692_t1c_hdbet_brainmask.nii.gz", BRAIN),
        ("coregistered_brainmask.nii.gz", BRAIN),
        ("OTMultiClass.nii.gz", SEG),
        ("Post_Mask.nii.gz", SEG),
        ("tumor_seg_t1c.nii.gz", SEG),
        # not part of a visit
        ("notes.txt", None),
        ("License_CC_BY_NC_SA_3.0.txt", None),
        ("dwi.nii.gz", None),
        ("BraTS_0000_adc.nii.gz", None),
    ],
)
def test_it_recognises_each_naming(name: str, role: object) -> None:
    assert classify_filename(name) == role


@pytest.mark.parametrize(
    ("description", "sequence"),
    [
        ("T1 MPRAGE", T1),
        ("AX T1 SE", T1),
        ("T1+C", T1C),
        ("T1 POST GD", T1C),
        ("AX T1 MPRAGE POST", T1C),
        ("t1_mprage_tra_Gd", T1C),
        ("T1W_3D_TFE +C", T1C),
        ("AX FLAIR", FLAIR),
        ("T2 FLAIR FS AX", FLAIR),
        ("Ax T2 FSE", T2),
        ("t2_tse_tra", T2),
        ("Localizer", None),
        ("AX DWI B1000", None),
        ("ADC map", None),
        ("T2* GRE", None),
        ("SWI", None),
    ],
)
def test_it_recognises_dicom_series_descriptions(description: str, sequence: object) -> None:
    assert classify_series_description(description) == sequence


def _write_visit(folder: Path, names: dict[Sequence, str], seg: str | None = None) -> None:
    for index, (_sequence, name) in enumerate(names.items()):
        write_image(head(seed=index) * (1.0 + index), folder / name)
    if seg is not None:
        labels = sitk.Cast(head() > 150, sitk.sitkUInt8) * 4
        write_image(labels, folder / seg)


@pytest.mark.parametrize(
    "names",
    [
        {T1: "c_t1.nii.gz", T1C: "c_t1ce.nii.gz", T2: "c_t2.nii.gz", FLAIR: "c_flair.nii.gz"},
        {T1: "c-t1n.nii.gz", T1C: "c-t1c.nii.gz", T2: "c-t2w.nii.gz", FLAIR: "c-t2f.nii.gz"},
        {T1: "T1.nii", T1C: "CT1.nii", T2: "T2.nii", FLAIR: "FLAIR.nii"},
        {T1: "c_0000.nii.gz", T1C: "c_0001.nii.gz", T2: "c_0002.nii.gz", FLAIR: "c_0003.nii.gz"},
    ],
    ids=["brats2021", "brats2023", "lumiere", "nnunet"],
)
def test_it_reads_a_visit_in_each_convention(tmp_path: Path, names: dict[Sequence, str]) -> None:
    _write_visit(tmp_path, names, seg="c_seg.nii.gz")
    visit = read_visit(tmp_path)
    assert set(visit.images) == {T1, T1C, T2, FLAIR}
    assert visit.sources == names
    # the segmentation is a label map, never a sequence, and BraTS 2021 label 4 becomes 3
    assert visit.segmentation is not None
    assert visit.label_convention is LabelConvention.BRATS2021
    assert set(np.unique(sitk.GetArrayViewFromImage(visit.segmentation))) == {0, 3}


def test_it_preserves_geometry(tmp_path: Path) -> None:
    theta = np.radians(20)
    direction = (np.cos(theta), -np.sin(theta), 0, np.sin(theta), np.cos(theta), 0, 0, 0, -1)
    values = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    image = image_from_array(
        values, spacing=(0.9, 1.1, 5.5), origin=(-12.5, 30.0, 7.25), direction=direction
    )
    for name in ("x_t1.nii", "x_t1.nii.gz"):
        back = read_image(write_image(image, tmp_path / name))
        assert back.GetSpacing() == pytest.approx(image.GetSpacing(), abs=1e-5)
        assert back.GetOrigin() == pytest.approx(image.GetOrigin(), abs=1e-4)
        assert back.GetDirection() == pytest.approx(image.GetDirection(), abs=1e-5)
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), values)


def test_a_compressed_image_is_a_standard_gzip_file_of_what_itk_writes(tmp_path: Path) -> None:
    """ISA-L compresses it: any gzip reader gets the bytes ITK writes for the .nii file, with
    no name or time in the gzip header (the same image gives the same file)."""
    image = image_from_array(np.random.default_rng(0).random((5, 6, 7)).astype(np.float32))
    compressed = write_image(image, tmp_path / "x_t1.nii.gz")
    sitk.WriteImage(image, str(tmp_path / "plain.nii"))
    assert gzip.decompress(compressed.read_bytes()) == (tmp_path / "plain.nii").read_bytes()
    assert compressed.read_bytes()[3] == 0  # no FNAME, FEXTRA or FCOMMENT flags
    assert compressed.read_bytes()[4:8] == bytes(4)  # MTIME 0
    again = write_image(image, tmp_path / "again.nii.gz")
    assert again.read_bytes() == compressed.read_bytes()
    np.testing.assert_array_equal(
        np.asarray(nib.load(compressed).dataobj).T, sitk.GetArrayViewFromImage(image)
    )
    assert not list(tmp_path.glob(".tmp-*"))


def test_it_accepts_a_4d_file_with_one_volume(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6, 1)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "a_flair.nii.gz")
    image = read_image(tmp_path / "a_flair.nii.gz")
    assert image.GetDimension() == 3
    assert image.GetSize() == (4, 5, 6)


def test_it_reads_label_conventions(tmp_path: Path) -> None:
    labels = np.array([0, 1, 2, 3, 4] * 24, dtype=np.float32).reshape(4, 5, 6)
    path = write_image(image_from_array(labels), tmp_path / "x_seg.nii.gz")
    mapped, convention = read_label_map(path)
    assert convention is LabelConvention.BRATS2015
    expected = np.select([labels == 3, labels == 4], [1, 3], labels).astype(np.uint8)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(mapped), expected)


def test_it_names_missing_and_found_sequences_when_all_four_are_required(tmp_path: Path) -> None:
    _write_visit(tmp_path, {T1: "c_t1.nii.gz", FLAIR: "c_flair.nii.gz"})
    with pytest.raises(MissingSequenceError) as caught:
        read_visit(tmp_path, required=ALL_SEQUENCES)
    message = caught.value.message
    assert "missing T1 post-contrast, T2" in message
    assert "found T1 (c_t1.nii.gz), FLAIR (c_flair.nii.gz)" in message


def test_a_visit_with_t1c_and_flair_only_is_read(tmp_path: Path) -> None:
    _write_visit(tmp_path, {T1C: "c_t1ce.nii.gz", FLAIR: "c_flair.nii.gz"})
    visit = read_visit(tmp_path)
    assert set(visit.images) == {T1C, FLAIR}
    assert visit.sources == {T1C: "c_t1ce.nii.gz", FLAIR: "c_flair.nii.gz"}


def test_a_visit_with_flair_only_is_read_with_its_segmentation_on_the_flair_grid(
    tmp_path: Path,
) -> None:
    _write_visit(tmp_path, {FLAIR: "c-t2f.nii.gz"}, seg="c-seg.nii.gz")
    visit = read_visit(tmp_path)
    assert set(visit.images) == {FLAIR}
    assert visit.segmentation is not None


def test_a_segmentation_off_the_flair_grid_is_named_when_there_is_no_t1c(tmp_path: Path) -> None:
    _write_visit(tmp_path, {T2: "c_t2.nii.gz", FLAIR: "c_flair.nii.gz"})
    write_image(sitk.Cast(head(size=(40, 40, 20)) > 150, sitk.sitkUInt8), tmp_path / "c_seg.nii.gz")
    with pytest.raises(GeometryMismatchError, match=r"not on the grid of c_flair\.nii\.gz"):
        read_visit(tmp_path)


def test_a_visit_without_t1c_or_flair_is_refused_naming_what_is_missing(tmp_path: Path) -> None:
    _write_visit(tmp_path, {T1: "c_t1.nii.gz", T2: "c_t2.nii.gz"})
    with pytest.raises(MissingSequenceError) as caught:
        read_visit(tmp_path)
    message = caught.value.message
    assert message == (
        f"{tmp_path.name}: cannot segment without T1 post-contrast or FLAIR: "
        "found T1 (c_t1.nii.gz), T2 (c_t2.nii.gz)"
    )
    assert "\n" not in message
    assert caught.value.path == tmp_path


def test_an_empty_folder_is_refused_as_having_no_sequence(tmp_path: Path) -> None:
    with pytest.raises(MissingSequenceError, match="found no sequence"):
        read_visit(tmp_path)


def test_it_rejects_a_duplicate_sequence(tmp_path: Path) -> None:
    _write_visit(tmp_path, {T1: "a_t1.nii.gz", T1C: "a_t1ce.nii.gz"})
    write_image(head(), tmp_path / "a_t1gd.nii.gz")
    with pytest.raises(DuplicateSequenceError, match=r"T1 post-contrast appears more than once"):
        read_visit(tmp_path)


def test_a_partial_visit_reads_when_nothing_is_required(tmp_path: Path) -> None:
    _write_visit(tmp_path, {T1C: "only_t1c.nii.gz"})
    assert set(read_visit(tmp_path, required=()).images) == {T1C}


def _dicom_visit(tmp_path: Path, descriptions: dict[str, float]) -> Path:
    for number, (description, scale) in enumerate(descriptions.items(), start=1):
        image = sitk.Cast(head(seed=number) * scale, sitk.sitkInt16)
        write_dicom_series(
            image,
            tmp_path / f"series{number}",
            series_description=description,
            series_number=number,
        )
    return tmp_path


def test_it_reads_dicom_series_by_description(tmp_path: Path) -> None:
    _dicom_visit(
        tmp_path,
        {"T1 MPRAGE": 1.0, "T1 POST GD": 1.3, "Ax T2 FSE": 1.1, "AX FLAIR": 0.8, "Localizer": 1.0},
    )
    visit = read_visit(tmp_path)
    assert visit.sources[T1C] == "DICOM series 'T1 POST GD'"
    assert any("Localizer" in ignored for ignored in visit.ignored)
    expected = sitk.GetArrayFromImage(sitk.Cast(head(seed=2) * 1.3, sitk.sitkInt16))
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(visit.images[T1C]), expected)
    assert visit.images[T1C].GetSpacing() == pytest.approx(head().GetSpacing(), abs=1e-5)
    assert visit.images[T1C].GetOrigin() == pytest.approx(head().GetOrigin(), abs=1e-4)


def test_an_override_names_an_unusual_series(tmp_path: Path) -> None:
    _dicom_visit(
        tmp_path, {"MPR": 1.0, "BRAVO+": 1.3, "Ax T2 FSE": 1.1, "AX FLAIR": 0.8, "PROTOCOL X": 1.0}
    )
    with pytest.raises(MissingSequenceError, match="T1 post-contrast"):
        read_visit(tmp_path, required=ALL_SEQUENCES)
    visit = read_visit(
        tmp_path, series_overrides={"MPR": "t1", "bravo+": "t1c", "PROTOCOL X": "ignore"}
    )
    assert visit.sources[T1] == "DICOM series 'MPR'"
    assert visit.sources[T1C] == "DICOM series 'BRAVO+'"


def test_a_dicom_visit_with_t1c_and_flair_only_is_read(tmp_path: Path) -> None:
    _dicom_visit(tmp_path, {"T1 POST GD": 1.3, "AX FLAIR": 0.8})
    visit = read_visit(tmp_path)
    assert set(visit.images) == {T1C, FLAIR}
    assert visit.sources[FLAIR] == "DICOM series 'AX FLAIR'"


def test_a_dicom_visit_without_t1c_or_flair_is_refused_naming_its_series(tmp_path: Path) -> None:
    _dicom_visit(tmp_path, {"T1 MPRAGE": 1.0, "Ax T2 FSE": 1.1})
    with pytest.raises(
        MissingSequenceError,
        match=r"cannot segment without T1 post-contrast or FLAIR: found T1 \(DICOM series "
        r"'T1 MPRAGE'\), T2 \(DICOM series 'Ax T2 FSE'\)",
    ):
        read_visit(tmp_path)


def test_output_folder_keeps_the_old_result_when_the_new_one_fails(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    with output_folder(out) as staging:
        (staging / "qc.json").write_text("old")

    def crash_in_the_middle() -> None:
        with output_folder(out) as staging:
            (staging / "qc.json").write_text("new, half done")
            raise RuntimeError("crash in the middle")

    with pytest.raises(RuntimeError):
        crash_in_the_middle()
    assert (out / "qc.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]
    with output_folder(out) as staging:
        (staging / "qc.json").write_text("new")
    assert (out / "qc.json").read_text() == "new"


def test_find_visit_files_lists_unrecognised_images(tmp_path: Path) -> None:
    _write_visit(tmp_path, {T1: "a_t1.nii.gz"})
    write_image(head(), tmp_path / "a_dwi.nii.gz")
    assert find_visit_files(tmp_path).ignored == ["a_dwi.nii.gz (name matches no sequence)"]


def _header_bytes(shape: tuple[int, ...]) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header.set_zooms((1.0,) * len(shape))
    header["vox_offset"] = 352
    return header.binaryblock + b"\0" * 4


def test_a_gzip_whose_header_promises_too_many_voxels_is_refused_before_expanding(
    tmp_path: Path,
) -> None:
    """A decompression bomb: a small .nii.gz whose header describes 4000^3 voxels and whose
    stream is 64 MB of zeros. It is refused on the header, naming the limit, instead of being
    expanded first (which then reported it as truncated)."""
    import gzip

    from inference.errors import FileTooLargeError

    path = tmp_path / "bomb_t1c.nii.gz"
    with gzip.open(path, "wb", compresslevel=9) as stream:
        stream.write(_header_bytes((4000, 4000, 4000)))
        for _ in range(64):
            stream.write(bytes(1 << 20))
    assert path.stat().st_size < 200_000
    with pytest.raises(FileTooLargeError, match="nothing was decompressed"):
        read_image(path)


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    from inference.files import atomic_path
    from inference.imaging.io import write_text

    target = write_text("old", tmp_path / "report.json")

    def crash_while_writing() -> None:
        with atomic_path(target) as temporary:
            temporary.write_text("half of the new")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        crash_while_writing()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
