"""Training pieces: patient split, class-aware sampling, augmentation, and a tiny real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.errors import InputError
from inference.labels import TumorLabel
from inference.segmentation.train import (
    Case,
    TrainSettings,
    augment,
    brain_box,
    case_from_arrays,
    patient_of,
    phantom_plan,
    sample_batch,
    split_patients,
)


def tiny_case(key: str, patient: str, *, size: int = 48, slices: int = 6) -> Case:
    """Slices of a bright square 'brain' with a small tumour: ET ring around NCR, ED around."""
    images = np.zeros((slices, size, size, 4), np.float16)
    labels = np.zeros((slices, size, size), np.uint8)
    images[:, 8:-8, 8:-8] = 0.5
    for z in range(1, slices - 1):
        labels[z, 14:30, 14:30] = TumorLabel.ED
        labels[z, 18:26, 18:26] = TumorLabel.ET
        labels[z, 20:24, 20:24] = TumorLabel.NCR
    images[..., 1] += 2.0 * (labels == TumorLabel.ET)
    images[..., 3] += 1.5 * (labels == TumorLabel.ED)
    images[..., 0] -= 0.4 * (labels == TumorLabel.NCR)
    return Case(key, patient, images, labels)


def test_the_phantom_plan_covers_every_visit_and_adds_small_lesions_to_a_third() -> None:
    plan = phantom_plan(9, 100)
    assert len(plan) == 36
    assert {seed for seed, _, _ in plan} == set(range(100, 109))
    with_satellites = {seed for seed, _, satellites in plan if satellites}
    assert len(with_satellites) == 3
    assert all(1 <= s <= 3 for _, _, s in plan if s)


def test_no_patient_is_in_both_training_and_validation() -> None:
    cases = [tiny_case(f"p{p}-v{v}", f"p{p}") for p in range(10) for v in range(3)]
    train, validation = split_patients(cases, 0.2, seed=1)
    assert {c.patient for c in train}.isdisjoint({c.patient for c in validation})
    assert len({c.patient for c in validation}) == 2
    assert len(train) + len(validation) == 30


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("BraTS-GLI-00001-000", "BraTS-GLI-00001"),
        ("PHANTOM-00012-003", "PHANTOM-00012"),
        ("Patient-001/week-044", "Patient-001"),
        ("case7", "case7"),
    ],
)
def test_visits_are_grouped_by_patient(name: str, patient: str) -> None:
    assert patient_of(name) == patient


def test_lumiere_weeks_belong_to_the_patient_folder(tmp_path: Path) -> None:
    from inference.segmentation.train import visit_name

    week = tmp_path / "Patient-007" / "week-044"
    assert patient_of(visit_name(week)) == "Patient-007"
    assert visit_name(tmp_path / "BraTS-GLI-00001-000") == "BraTS-GLI-00001-000"


def test_sampling_centres_most_patches_on_tumour() -> None:
    cases = [tiny_case("a", "a")]
    rng = np.random.default_rng(0)
    images, targets = sample_batch(cases, rng, batch=64, patch=32, augmented=False)
    assert images.shape == (64, 32, 32, 4)
    assert targets.shape == (64, 32, 32, 4)
    assert np.allclose(targets.sum(-1), 1.0)
    with_tumour = (targets[:, 12:20, 12:20, 1:].sum(axis=(1, 2, 3)) > 0).mean()
    assert with_tumour > 0.6


def test_augmentation_keeps_labels_aligned_with_the_image() -> None:
    case = tiny_case("a", "a")
    rng = np.random.default_rng(4)
    for _ in range(20):
        image, labels = augment(case.images[2].astype(np.float32), case.labels[2], rng)
        assert image.shape == (48, 48, 4)
        assert labels.shape == (48, 48)
        assert set(np.unique(labels)) <= {0, 1, 2, 3}
        # Enhancing pixels stay the brightest T1c pixels after any geometric change.
        et = labels == TumorLabel.ET
        if et.sum() > 10:
            assert np.median(image[..., 1][et]) > np.median(image[..., 1][labels == 0])


def test_cases_keep_tumour_slices_and_some_plain_brain() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((30, 40, 40), bool)
    mask[2:28, 5:35, 5:35] = True  # 900 voxels a slice: counted as brain (> 500)
    labels = np.zeros(mask.shape, np.uint8)
    labels[10:14, 18:22, 18:22] = TumorLabel.ET
    channels = np.ones((4, *mask.shape), np.float32) * mask
    case = case_from_arrays(
        channels, labels, mask, key="k", patient="p", rng=rng, background_slices=5
    )
    assert len(case.labels) == 9
    assert len(case.tumour_slices) == 4
    assert case.images.dtype == np.float16
    assert case.images.shape[-1] == 4
    assert brain_box(mask) == (slice(0, 30), slice(1, 39), slice(1, 39))
    with pytest.raises(InputError, match="brain mask is empty"):
        brain_box(np.zeros((3, 3, 3), bool))


def test_a_tiny_run_trains_checkpoints_resumes_and_exports(tmp_path: Path) -> None:
    from inference.segmentation.segment import CARD_FILE, Segmenter
    from inference.segmentation.train import train

    cases = [tiny_case(f"p{p}-v0", f"p{p}", size=64) for p in range(3)]
    settings = TrainSettings(
        out=tmp_path / "run", epochs=1, steps_per_epoch=2, validation_steps=1, batch=4, patch=64
    )
    summary = train(cases[:2], cases[2:], settings, say=lambda _line: None)
    assert summary["epochs"] == 1
    assert summary["training_patients"] == 2
    assert summary["validation_patients"] == 1
    log = [json.loads(x) for x in (tmp_path / "run" / "training.jsonl").read_text().splitlines()]
    assert log[0]["epoch"] == 1
    assert "val_dice_et" in log[0]
    settings.epochs, settings.resume = 2, True
    train(cases[:2], cases[2:], settings, say=lambda _line: None)
    log = [json.loads(x) for x in (tmp_path / "run" / "training.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [1, 2]  # resumed after epoch 1, not restarted
    card = json.loads((tmp_path / "run" / CARD_FILE).read_text())
    assert card["training"]["epochs"] == 2
    segmenter = Segmenter(tmp_path / "run")  # the exported folder loads and checks out
    assert segmenter.identity["weights_sha256"] == card["weights_sha256"]


def test_training_needs_both_a_training_and_a_validation_patient(tmp_path: Path) -> None:
    from inference.segmentation.train import train

    with pytest.raises(InputError, match="two patients"):
        train([tiny_case("a", "a")], [], TrainSettings(out=tmp_path))
