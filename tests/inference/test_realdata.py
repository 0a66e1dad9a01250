"""The real public MRI cases in ../shared/data (read-only; outputs go to tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference.imaging.io import read_visit, write_dicom_series
from inference.imaging.register import mask_points, register_visits
from inference.labels import LabelConvention, Sequence

from .cli import run_cli

pytestmark = pytest.mark.realdata

REPO = Path(__file__).resolve().parents[2]


def _link_visit(folder: Path, files: dict[str, Path]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (folder / name).symlink_to(source)
    return folder


def test_the_raw_tcga_exam_goes_through_the_whole_preparation(
    shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prepared"
    result = run_cli("prepare", str(shared_data / "tcga-fg-6692-raw"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    qc = json.loads((out / "qc.json").read_text())
    assert json.loads(result.stdout)["steps"] == qc["steps"]
    steps = {step["name"]: step for step in qc["steps"]}
    assert steps["reorient"]["metrics"]["t1c"]["was"] == "LAS"
    mask = steps["brain_mask"]["metrics"]
    assert mask["skull_stripped_input"] is False
    assert mask["reference_dice"] >= 0.90  # against the HD-BET mask shipped with the case
    assert 1000 < mask["volume_ml"] < 2000
    # the thick-slice T1, T2 and FLAIR were really aligned: mutual information improved
    for sequence in ("t1", "t2", "flair"):
        assert steps["coregister_sequences"]["metrics"][sequence]["metric"] < -0.5
    t1c = sitk.ReadImage(str(out / "t1c.nii.gz"))
    assert t1c.GetSpacing() == (1.0, 1.0, 1.0)
    # LPS, with the small residual rotation of the oblique acquisition kept in the direction
    assert (
        sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(t1c.GetDirection()) == "LPS"
    )
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "brain_mask.nii.gz"))) > 0
    values = sitk.GetArrayViewFromImage(t1c)[brain]
    assert values.mean() == pytest.approx(0.0, abs=1e-3)
    assert values.std() == pytest.approx(1.0, abs=1e-3)
    assert "Dice" in result.stderr


def test_a_brats_case_is_detected_as_skull_stripped(shared_data: Path, tmp_path: Path) -> None:
    from inference.imaging.preprocess import prepare_visit

    prepared = prepare_visit(read_visit(shared_data / "brats-gli-00001-000"))
    mask = next(r for r in prepared.records if r.name == "brain_mask").metrics
    assert mask["skull_stripped_input"] is True
    assert prepared.brain_mask.GetSize() == (240, 240, 155)
    nonzero = (
        sitk.GetArrayFromImage(read_visit(shared_data / "brats-gli-00001-000").images[Sequence.T1C])
        > 0
    )
    found = sitk.GetArrayViewFromImage(prepared.brain_mask) > 0
    assert 2 * (nonzero & found).sum() / (nonzero.sum() + found.sum()) > 0.98


def test_dicom_series_written_from_the_raw_exam_read_back_with_their_geometry(
    shared_data: Path, tmp_path: Path
) -> None:
    original = read_visit(shared_data / "tcga-fg-6692-raw")
    descriptions = {
        Sequence.T1: "AX T1 SE",
        Sequence.T1C: "AX T1 POST GD",
        Sequence.T2: "AX T2 FSE",
        Sequence.FLAIR: "AX FLAIR",
    }
    for number, (sequence, description) in enumerate(descriptions.items(), start=2):
        write_dicom_series(
            original.images[sequence],
            tmp_path / "dicom" / f"{number:03d}",
            series_description=description,
            patient_id="TCGA-FG-6692",
            study_uid="1.2.826.0.1.3680043.8.498.1",
            series_number=number,
        )
    dicom = read_visit(tmp_path / "dicom")
    for sequence, description in descriptions.items():
        assert dicom.sources[sequence] == f"DICOM series '{description}'"
        # DICOM slices stack along the normal of their rows and columns, so a left-handed NIfTI
        # grid comes back with its slice order reversed; in one orientation they are identical.
        a = sitk.DICOMOrient(original.images[sequence], "LPS")
        b = sitk.DICOMOrient(dicom.images[sequence], "LPS")
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
        assert b.GetOrigin() == pytest.approx(a.GetOrigin(), abs=1e-3)
        assert b.GetSpacing() == pytest.approx(a.GetSpacing(), abs=1e-4)
        assert b.GetDirection() == pytest.approx(a.GetDirection(), abs=1e-5)


def test_brats2015_expert_labels_are_read_in_their_convention(shared_data: Path) -> None:
    visit = read_visit(
        shared_data / "brats2015-expert" / "pat0001", required=(Sequence.T1C, Sequence.FLAIR)
    )
    assert visit.label_convention is LabelConvention.BRATS2015
    assert visit.segmentation is not None
    assert visit.brain_mask is not None
    labels = set(np.unique(sitk.GetArrayViewFromImage(visit.segmentation)).tolist())
    assert labels <= {0, 1, 2, 3}
    assert 3 in labels


def _open_ms_visit(shared_data: Path, tmp_path: Path, study: int) -> Path:
    source = shared_data / "open-ms-longitudinal" / "patient01"
    return _link_visit(
        tmp_path / f"study{study}",
        {f"{q}.nii.gz": source / f"raw_study{study}_{q}.nii.gz" for q in ("FLAIR", "T1W", "T2W")},
    )


@pytest.mark.parametrize(("sequence", "tolerance_mm"), [(Sequence.FLAIR, 1.0), (Sequence.T1, 2.0)])
def test_visit_registration_agrees_with_the_open_ms_reference_transforms(
    shared_data: Path, tmp_path: Path, sequence: Sequence, tolerance_mm: float
) -> None:
    """The providers' transforms map common-space points into each study's FLAIR space, so
    study1 -> study2 is T2 o T1^-1; compare over the brain mask of the common space."""
    source = shared_data / "open-ms-longitudinal" / "patient01"
    fixed = read_visit(_open_ms_visit(shared_data, tmp_path, 1), required=())
    moving = read_visit(_open_ms_visit(shared_data, tmp_path, 2), required=())
    registration = register_visits(fixed.images, moving.images, sequence=sequence)
    assert registration.ok, registration.quality
    to_study1 = sitk.ReadTransform(str(source / "coregistered_study1_FLAIR_to_common_space.txt"))
    to_study2 = sitk.ReadTransform(str(source / "coregistered_study2_FLAIR_to_common_space.txt"))
    common = mask_points(sitk.ReadImage(str(source / "coregistered_brainmask.nii.gz")), step=4)
    in_study1 = np.array([to_study1.TransformPoint(p.tolist()) for p in common])
    reference = np.array([to_study2.TransformPoint(p.tolist()) for p in common])
    ours = np.array([registration.result.transform.TransformPoint(p.tolist()) for p in in_study1])
    error = np.linalg.norm(ours - reference, axis=1)
    assert error.mean() <= tolerance_mm
    # the two studies really differ by several millimetres, so agreement is not trivial
    assert np.linalg.norm(in_study1 - reference, axis=1).mean() > 5.0


@pytest.mark.parametrize("patient", ["01", "02", "03", "04", "05"])
def test_tcia_progression_pairs_register(shared_data: Path, tmp_path: Path, patient: str) -> None:
    source = shared_data / "tcia-brain-tumor-progression" / patient
    pre = read_visit(
        _link_visit(tmp_path / "pre", {"pre_T1.nii.gz": source / "Pre_Scan_T1.nii.gz"}), required=()
    )
    post = read_visit(
        _link_visit(tmp_path / "post", {"post_T1.nii.gz": source / "Post_Scan_T1.nii.gz"}),
        required=(),
    )
    registration = register_visits(pre.images, post.images)
    assert registration.ok, registration.quality
    assert (
        registration.quality["correlation_after"]
        >= registration.quality["correlation_before"] - 0.01
    )


def test_the_register_command_writes_a_transform_and_a_report(
    shared_data: Path, tmp_path: Path
) -> None:
    fixed = _open_ms_visit(shared_data, tmp_path, 1)
    moving = _open_ms_visit(shared_data, tmp_path, 2)
    out = tmp_path / "reg"
    result = run_cli("register", str(fixed), str(moving), "--out", str(out), "--sequence", "flair")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "registration.json").read_text())
    assert report["sequence"] == "flair"
    assert report["quality"]["ok"] is True
    assert 3.0 < report["transform"]["rotation_deg"] < 10.0
    transform = sitk.ReadTransform(str(out / "transform.tfm"))
    matrix = np.array(report["transform"]["matrix"])
    origin_image = np.array(transform.TransformPoint((0.0, 0.0, 0.0)))
    np.testing.assert_allclose(origin_image, report["transform"]["translation_mm"], atol=1e-3)
    point = np.array([10.0, -20.0, 30.0])
    np.testing.assert_allclose(
        transform.TransformPoint(point.tolist()), matrix @ point + origin_image, atol=1e-3
    )


def test_the_measure_command_reads_brats2015_expert_labels(
    shared_data: Path, tmp_path: Path
) -> None:
    labels = shared_data / "brats2015-expert" / "pat0001" / "OTMultiClass.nii.gz"
    out = tmp_path / "measurements.json"
    result = run_cli("measure", "--labels", str(labels), "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report == json.loads(result.stdout)
    assert report["label_convention"] == "brats2015"
    volumes = report["volumes_ml"]
    assert volumes["WT"] == pytest.approx(volumes["NCR"] + volumes["ED"] + volumes["ET"], abs=1e-3)
    assert volumes["TC"] > 0
    assert report["lesion_count"] >= 1
    assert report["lesions"][0]["longest_mm"] >= report["lesions"][0]["perpendicular_mm"] > 0


def test_the_evaluate_command_scores_a_map_against_itself(shared_data: Path) -> None:
    labels = str(shared_data / "brats2015-expert" / "pat0002" / "OTMultiClass.nii.gz")
    result = run_cli("evaluate", "--pred", labels, "--truth", labels)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert {scores[r]["dice"] for r in ("ET", "TC", "WT")} == {1.0}
    assert {scores[r]["hd95_mm"] for r in ("ET", "TC", "WT")} == {0.0}
