"""The loop from corrections to a new model, end to end on phantoms (SYNTHETIC PHANTOM): segment,
correct (a programmatic edit), export the training set, fine-tune for a few steps, register,
evaluate on the held-out correction, activate; new analyses use the new model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from tests.tracker.conftest import client_for, run_all_stages, upload_files
from tracker.models import AnalysisRun, ModelVersion, Stage
from tracker.services.runs import stage_execute

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _phantom_folders(phantom_visits: list[Path], tmp_path: Path) -> list[Path]:
    """The first visit of three phantom patients (SYNTHETIC PHANTOM); two have a scalp and skull
    (one of them at least is exported: a whole patient at most is held out)."""
    import dataclasses

    from inference.segmentation.phantoms import Scenario, make_patient, write_patient

    folders = [phantom_visits[0]]
    for seed in (930002, 930003):
        patient = dataclasses.replace(
            make_patient(seed, visits=1, scenario=Scenario.STABLE), skull=True
        )
        folders += write_patient(patient, tmp_path / f"phantom-{seed}")
    return folders


def _analysed_and_corrected(
    teams: dict[str, Any], folders: list[Path], tmp_path: Path, callbacks: Any
) -> list[AnalysisRun]:
    """Each folder a patient of the team with one visit, analysed, then corrected to the
    phantom's truth (a clinician's edit)."""
    from tracker.models import Patient

    client = client_for(teams["alice"])
    runs = []
    for number, folder in enumerate(folders):
        patient = (
            teams["patient"]
            if number == 0
            else Patient.objects.create(team=teams["team_a"], label=f"GBM-00{number + 1}")
        )
        with callbacks(execute=False):
            response = client.post(
                f"/api/patients/{patient.code}/visits/",
                {"acquired_on": "2024-01-08", **upload_files(folder)},
                format="multipart",
            )
        assert response.status_code == 201, response.content
        run = AnalysisRun.objects.get(visit__code=response.json()["code"])
        run_all_stages(run)
        truth = sitk.ReadImage(str(next(folder.glob("*-seg.nii.gz"))))
        model = sitk.ReadImage(str(run_files_labels(run)))
        corrected = sitk.Resample(truth, model, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        path = tmp_path / f"corrected-{run.code}.nii.gz"
        sitk.WriteImage(sitk.Cast(corrected, sitk.sitkUInt8), str(path))
        with callbacks(execute=False):
            response = client.post(
                f"/api/visits/{run.visit.code}/segmentations/",
                {
                    "labels": SimpleUploadedFile(path.name, path.read_bytes()),
                    "reason": "outlined by hand",
                    "parent": str(run.code),
                },
                format="multipart",
            )
        assert response.status_code == 201, response.content
        for stage in (Stage.MEASURE, Stage.ASSESS):
            assert stage_execute(run_code=response.json()["run"], stage=stage) == "done"
        runs.append(run)
    return runs


def _assert_defaced(out: Path, manifest: dict[str, Any]) -> None:
    """Each exported sequence: nothing outside the analysis' brain mask (grown by the margin the
    manifest states, plus a voxel) and the labels; the brain as uploaded; a phantom with a scalp
    uploaded raw comes out skull-stripped, and the trainer's preparation finds its brain."""
    from inference.imaging.deface import keep_mask
    from inference.imaging.io import read_visit
    from inference.imaging.preprocess import (
        dice,
        is_skull_stripped,
        prepare_visit,
        read_prepared,
    )
    from tracker.models import SegmentationVersion
    from tracker.services.learning import BRATS_SUFFIX, case_name
    from tracker.storage import media, run_files

    versions = {case_name(v.visit): v for v in SegmentationVersion.objects.all()}
    margins = {c["folder"]: c["defacing_margin_mm"] for c in manifest["cases"] if not c["held_out"]}
    raw_seen = 0
    for name in manifest["train"]:
        version = versions[name]
        _, mask, _ = read_prepared(run_files(version.run).prepared)
        labels = sitk.ReadImage(str(run_files(version.run).labels))
        for scan in version.visit.scans.all():
            original = nib.load(str(media(scan.file.name)))
            exported = nib.load(
                str(out / "train" / name / f"{name}-{BRATS_SUFFIX[scan.sequence]}.nii.gz")
            )
            before, after = np.asanyarray(original.dataobj), np.asanyarray(exported.dataobj)
            grid = sitk.ReadImage(str(media(scan.file.name)))
            wide = keep_mask(
                grid,
                mask,
                keep=labels,
                margin_mm=margins[name][scan.sequence] + max(grid.GetSpacing()),
            )
            assert not after[~wide].any(), (name, scan.sequence)
            brain = keep_mask(grid, mask)
            if scan.sequence == "t1c":  # the reference: exactly the brain and the labels
                assert np.array_equal(after[brain], before[brain])
            assert np.allclose(after[after != 0], before[after != 0])
        if not is_skull_stripped(
            sitk.ReadImage(str(media(version.visit.scans.get(sequence="t1c").file.name)))
        )[0]:
            raw_seen += 1
            assert (before[~wide] != 0).sum() > 10_000  # there was a head to blank
            prepared = prepare_visit(read_visit(out / "train" / name))
            step = next(s for s in prepared.qc["steps"] if s["name"] == "brain_mask")
            assert step["metrics"]["skull_stripped_input"] is True
            assert dice(prepared.brain_mask, mask) > 0.95
    assert raw_seen >= 1


def run_files_labels(run: AnalysisRun) -> Path:
    from tracker.storage import run_files

    return run_files(run).labels


def test_corrections_train_a_model_that_is_evaluated_then_activated(
    teams: dict[str, Any],
    phantom_visits: list[Path],
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    folders = _phantom_folders(phantom_visits, tmp_path)
    _analysed_and_corrected(teams, folders, tmp_path, django_capture_on_commit_callbacks)

    # 1. The training set: one folder per corrected visit not held out, nothing identifying.
    out = tmp_path / "training-set"
    text = StringIO()
    call_command("export_training_set", "--team", "Neuro-A", "--out", str(out), stdout=text)
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["train"]) == 2  # two patients to train on (one validates)
    assert len(manifest["held_out"]) == 1  # a whole patient held out for evaluation
    folder = sorted((out / "train").iterdir())[0]
    assert len(list((out / "train").iterdir())) == 2
    assert sorted(p.name.removeprefix(folder.name) for p in folder.iterdir()) == [
        "-seg.nii.gz",
        "-t1c.nii.gz",
        "-t1n.nii.gz",
        "-t2f.nii.gz",
        "-t2w.nii.gz",
    ]
    for path in folder.iterdir():
        header = nib.load(str(path)).header
        assert bytes(header["descrip"]).strip(b"\x00") == b""
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(next(folder.glob("*-seg.nii.gz")))))
    assert set(np.unique(seg).tolist()) <= {0, 1, 2, 3}
    everything = json.dumps(manifest) + " ".join(p.name for p in out.rglob("*"))
    from tracker.models import Visit

    for visit in Visit.objects.all():
        assert str(visit.code) not in everything
        assert str(visit.acquired_on) not in everything
        assert str(visit.patient.code) not in everything
    with pytest.raises(CommandError, match="exists already"):
        call_command("export_training_set", "--team", "Neuro-A", "--out", str(out))
    _assert_defaced(out, manifest)

    # 2. Fine-tune from the shipped weights for a few steps (the documented command).
    weights = tmp_path / "fine-tuned"
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow")}
    trained = subprocess.run(
        [
            sys.executable, "-m", "inference", "train", str(out / "train"),
            "--init-weights", str(REPO / "inference" / "weights"), "--out", str(weights),
            "--epochs", "1", "--steps", "2", "--batch", "2", "--workers", "1",
            "--cache", str(tmp_path / "cache"),
        ],
        check=False, capture_output=True, encoding="utf-8", cwd=REPO, env=env, timeout=900,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    card = json.loads((weights / "model.json").read_text())
    assert card["training"]["cases"] == manifest["train"]

    # 3. Registered (inactive); the card's version may be taken: --as-version names it.
    call_command(
        "register_model", str(weights), "--as-version", "fine-tuned-test", stdout=StringIO()
    )
    model = ModelVersion.objects.get(version="fine-tuned-test")
    assert not model.is_active
    with pytest.raises(CommandError, match="registered already"):
        call_command("register_model", str(weights), "--as-version", "fine-tuned-test")

    # 4. Not activated before it is evaluated; evaluated on the held-out correction only.
    for command in ("evaluate_model", "activate_model"):
        with pytest.raises(CommandError, match="no registered model unknown 1"):
            call_command(
                command, "unknown", "1", *(["--by", "admin"] * (command == "activate_model"))
            )
    with pytest.raises(CommandError, match="has not been evaluated"):
        call_command("activate_model", model.name, model.version, "--by", "admin")
    report = StringIO()
    call_command("evaluate_model", model.name, model.version, stdout=report)
    model.refresh_from_db()
    assert model.evaluation["cases"] == 1
    assert model.evaluation["per_case"][0]["case"] == manifest["held_out"][0]
    for region in ("ET", "TC", "WT"):
        assert 0.0 <= model.evaluation["regions"][region]["dice"]["mean"] <= 1.0
    assert "1 held-out corrected visit(s)" in report.getvalue()

    # 5. Activated: a new analysis uses it, and says so.
    call_command("activate_model", model.name, model.version, "--by", "admin", stdout=StringIO())
    visit = teams["patient"].visits.order_by("acquired_on").first()
    fresh = AnalysisRun.objects.create(visit=visit)  # a re-analysis of a corrected visit
    run_all_stages(fresh)
    fresh.refresh_from_db()
    assert (fresh.model_version, fresh.weights_sha256) == (
        "fine-tuned-test",
        card["weights_sha256"],
    )
