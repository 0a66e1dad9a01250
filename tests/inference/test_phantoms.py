"""Synthetic patients (SYNTHETIC PHANTOM): deterministic, with truth that agrees with the images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference.imaging.io import read_visit
from inference.labels import LabelConvention, Sequence
from inference.measurement.measure import measure
from inference.segmentation.phantoms import Scenario, expected_responses, make_patient, render_visit

from .cli import run_cli

REPO = Path(__file__).resolve().parents[2]


def test_patients_are_deterministic_per_seed() -> None:
    assert make_patient(11) == make_patient(11)
    assert make_patient(11) != make_patient(12)
    assert make_patient(5, scenario=Scenario.NEW_LESION).lesions[1].appears_at == 2


def test_a_rendered_visit_agrees_with_its_truth() -> None:
    patient = make_patient(7, visits=2, scenario=Scenario.PROGRESSION)
    images, seg, truth = render_visit(patient, 0)
    assert set(images) == {Sequence.T1, Sequence.T1C, Sequence.T2, Sequence.FLAIR}
    assert all(image.GetSize() == seg.GetSize() for image in images.values())
    assert set(np.unique(sitk.GetArrayViewFromImage(seg))) <= {0, 1, 2, 3}
    # label map volumes (voxel centres) approximate the continuous shapes' volumes
    for key in ("NCR", "ED", "ET"):
        assert truth["label_map_volumes_ml"][key] == pytest.approx(
            truth["volumes_ml"][key], rel=0.05, abs=0.05
        )
    # the measured diameters of the label map approximate the continuous truth
    measured = measure(seg).lesions[0].bidimensional
    true_lesion = truth["lesions"][0]
    assert measured.longest_mm == pytest.approx(true_lesion["longest_mm"], rel=0.05)
    assert measured.product_mm2 == pytest.approx(true_lesion["product_mm2"], rel=0.08)
    # enhancing tumour gains signal with contrast; oedema does not (relative signal 1.35 vs 0.6
    # for ET, 0.55 vs 0.55 for oedema, before scanner scaling)
    labels = sitk.GetArrayFromImage(seg)
    t1 = sitk.GetArrayFromImage(images[Sequence.T1]).astype(float)
    t1c = sitk.GetArrayFromImage(images[Sequence.T1C]).astype(float)
    et, ed = labels == 3, labels == 2
    gain_et = t1c[et].mean() / t1[et].mean()
    gain_ed = t1c[ed].mean() / t1[ed].mean()
    assert gain_et / gain_ed == pytest.approx(1.35 / 0.6, rel=0.15)
    assert truth["data"] == "SYNTHETIC PHANTOM"


def test_expected_responses_follow_the_products() -> None:
    def visit(product: float, et: float = 1.0, tracks: tuple[str, ...] = ("L1",)) -> dict:
        return {
            "sum_of_products_mm2": product,
            "volumes_ml": {"ET": et},
            "lesions": [{"track": t, "measurable": True} for t in tracks],
        }

    truths = [visit(400), visit(300), visit(190), visit(240), visit(0, et=0.0)]
    assert expected_responses(truths) == ["baseline", "SD", "PR", "PD", "CR"]
    assert expected_responses([visit(400), visit(400, tracks=("L1", "L2"))]) == ["baseline", "PD"]
    # A non-enhancing tumour is gone only when no lesion is left, not when ET is zero.
    plain = [
        {**visit(400, et=0.0), "lesions": [{"track": "L1", "measurable": True, "enhancing": False}]}
    ]
    shrunk = {**plain[0], "sum_of_products_mm2": 150}
    gone = {**visit(0, et=0.0), "lesions": []}
    assert expected_responses([*plain, shrunk, gone]) == ["baseline", "PR", "CR"]


def test_the_phantom_command_writes_brats_2023_folders(tmp_path: Path) -> None:
    result = run_cli(
        "phantom",
        "--out",
        str(tmp_path),
        "--seed",
        "4",
        "--visits",
        "2",
        "--scenario",
        "stable",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["scenario"] == "stable"
    assert len(report["visits"]) == 2
    folder = Path(report["visits"][1]["folder"])
    truth = json.loads((folder / "truth.json").read_text())
    assert truth["expected_response"] == "SD"
    assert truth["visit"] == 1
    visit = read_visit(folder)
    assert visit.label_convention is LabelConvention.BRATS2023
    assert sorted(p.name for p in folder.iterdir())[0].startswith("PHANTOM-00004-001-")


def test_an_unknown_scenario_is_bad_input(tmp_path: Path) -> None:
    result = run_cli(
        "phantom",
        "--out",
        str(tmp_path),
        "--seed",
        "1",
        "--scenario",
        "cured",
    )
    assert result.returncode == 2
    assert "unknown scenario 'cured'" in result.stderr
