"""The sim-to-real training generator: labels agree with the images, confounders are never
tumour, seeds reproduce, only the permitted real brains are read; and sequence dropout."""

from __future__ import annotations

import numpy as np
import pytest

from inference.labels import Sequence, TumorLabel
from inference.segmentation import synthesis
from inference.segmentation.synthesis import CONFOUNDERS, TUMOUR_LABELS, Tissue, synthesise
from inference.segmentation.train import DROPOUT_SUBSETS, Case, drop_sequences, sample_batch

SEEDS = (11, 12, 13, 14)


@pytest.fixture(scope="module")
def volumes() -> list[synthesis.SyntheticVolume]:
    return [synthesise(seed, background="mni") for seed in SEEDS]


def test_a_seed_reproduces_its_volume_and_another_seed_does_not(
    volumes: list[synthesis.SyntheticVolume],
) -> None:
    again = synthesise(SEEDS[0], background="mni")
    first = volumes[0]
    assert np.array_equal(again.labels, first.labels)
    assert np.array_equal(again.tissue, first.tissue)
    for sequence in synthesis.SEQUENCES:
        assert np.array_equal(again.images[sequence], first.images[sequence])
    assert not np.array_equal(volumes[1].images[Sequence.T1C], first.images[Sequence.T1C])


def test_labels_are_the_tumour_tissues_inside_the_mask_and_nothing_else(
    volumes: list[synthesis.SyntheticVolume],
) -> None:
    for volume in volumes:
        expected = np.zeros_like(volume.labels)
        for tissue, label in TUMOUR_LABELS.items():
            expected[volume.tissue == tissue] = label
        expected[~volume.mask] = 0
        assert np.array_equal(volume.labels, expected)
        assert set(np.unique(volume.labels)) <= {0, 1, 2, 3}


def test_confounders_are_drawn_and_never_carry_a_tumour_label(
    volumes: list[synthesis.SyntheticVolume],
) -> None:
    seen: set[int] = set()
    for volume in volumes:
        confounder = np.isin(volume.tissue, [int(t) for t in CONFOUNDERS])
        seen |= {int(v) for v in np.unique(volume.tissue[confounder])}
        assert not volume.labels[confounder].any()
    # Dura, sinuses and plexus are drawn into every MNI background.
    assert {Tissue.DURA, Tissue.SINUS, Tissue.PLEXUS} <= seen


def test_images_are_z_scored_in_the_mask_and_zero_outside(
    volumes: list[synthesis.SyntheticVolume],
) -> None:
    for volume in volumes:
        for image in volume.images.values():
            assert image.shape == volume.mask.shape
            assert np.all(image[~volume.mask] == 0)
            assert abs(float(image[volume.mask].mean())) < 1e-3
            assert abs(float(image[volume.mask].std()) - 1.0) < 1e-3


def test_enhancing_tumour_is_brighter_on_t1c_than_the_white_matter_around_it() -> None:
    # A flat white-matter block with an enhancing cube: no noise source can hide the contrast.
    # A white-matter block with an enhancing cube, compared with the white matter just around it
    # (bias field, gamma, blur, thick slices and noise are all on).
    tissue = np.full((64, 64, 64), Tissue.WM, np.uint8)
    tissue[24:40, 24:40, 24:40] = Tissue.ENHANCING
    around = np.zeros(tissue.shape, bool)
    around[18:46, 18:46, 18:46] = True
    around[21:43, 21:43, 21:43] = False
    for seed in range(12):
        t1c = synthesis.render(tissue, None, np.random.default_rng(seed))[1]
        assert t1c[28:36, 28:36, 28:36].mean() > 1.05 * t1c[around].mean()


def test_what_is_bright_before_contrast_stays_bright_after_it() -> None:
    for seed in range(50):
        table = synthesis._contrast_table(np.random.default_rng(seed))
        for values in table.values():
            assert values[1] >= values[0] - 1e-6  # T1c = T1 * (1 + enhancement)


def test_the_non_enhancing_core_stands_out_from_the_oedema_around_it() -> None:
    for seed in range(50):
        table = synthesis._contrast_table(np.random.default_rng(seed))
        core, oedema = table[Tissue.NON_ENHANCING], table[Tissue.OEDEMA]
        assert core[0] < oedema[0]  # darker on T1
        assert core[2] > oedema[2]  # brighter on T2 (FLAIR may go either way)


def test_a_non_enhancing_tumour_has_no_enhancing_label_and_a_glioblastoma_has_all_three() -> None:
    anatomy = np.array(synthesis.mni_anatomy())
    brain = anatomy != Tissue.OUTSIDE
    centre = np.array(anatomy.shape) // 2 + np.array([10, 0, 25])
    for kind, wanted in (("non_enhancing", {Tissue.NON_ENHANCING}), ("glioblastoma", None)):
        tissue = anatomy.copy()
        synthesis.draw_tumour(tissue, brain, centre, kind, np.random.default_rng(3))
        found = {Tissue(int(v)) for v in np.unique(tissue)} & set(TUMOUR_LABELS)
        if wanted is not None:
            assert Tissue.ENHANCING not in found
            assert wanted <= found
        else:
            assert {Tissue.ENHANCING, Tissue.OEDEMA} <= found
            assert found & {Tissue.NECROSIS, Tissue.CYST}


def test_the_unseen_tumour_free_brain_is_never_a_background() -> None:
    with pytest.raises(ValueError, match="patient26 may not be trained on"):
        synthesis.real_background("patient26")
    with pytest.raises(ValueError, match="not available"):
        synthesise(1, background="patient26")


@pytest.mark.realdata
def test_a_tumour_drawn_into_a_real_brain_keeps_the_real_anatomy(shared_data: object) -> None:
    images, tissue = synthesis.real_background("patient07")
    for seed in (300_003, 300_004):
        volume = synthesise(seed, background="patient07")
        assert volume.background == "patient07"
        assert volume.mask.shape == tissue.shape
        # The generator mirrors half of its volumes left-right: compare in both orientations.
        worst_per_orientation = []
        for real_images, real_tissue in ((images, tissue), (images[..., ::-1], tissue[..., ::-1])):
            untouched = volume.mask & np.isin(volume.tissue, [Tissue.WM, Tissue.GM, Tissue.CSF])
            untouched &= volume.tissue == real_tissue  # not displaced by mass effect
            worst_per_orientation.append(
                min(
                    float(np.corrcoef(volume.images[s][untouched], real_images[i][untouched])[0, 1])
                    for i, s in enumerate(synthesis.SEQUENCES)
                )
            )
        best = max(worst_per_orientation)
        # Bias, gamma, blur, thick slices and noise are added (FLAIR, with little contrast inside
        # the brain, suffers most), but the real brain still explains every image.
        assert best > 0.5


def test_dropped_sequences_are_zero_and_t1c_or_flair_always_stays() -> None:
    image = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) + 1
    kept = drop_sequences(image, (Sequence.T1C, Sequence.FLAIR))
    assert np.all(kept[..., 0] == 0)
    assert np.all(kept[..., 2] == 0)
    assert np.array_equal(kept[..., 1], image[..., 1])
    assert np.array_equal(kept[..., 3], image[..., 3])
    with pytest.raises(ValueError, match="T1c or FLAIR"):
        drop_sequences(image, (Sequence.T1, Sequence.T2))
    assert all(Sequence.T1C in s or Sequence.FLAIR in s for s in DROPOUT_SUBSETS)


def test_sequence_dropout_zeroes_whole_channels_in_training_batches() -> None:
    images = np.ones((4, 48, 48, 4), np.float16)
    labels = np.zeros((4, 48, 48), np.uint8)
    labels[:, 20:28, 20:28] = TumorLabel.ET
    case = Case("c", "p", images, labels)
    rng = np.random.default_rng(0)
    batch, _ = sample_batch([case], rng, batch=24, patch=32, augmented=False, dropout=1.0)
    present = np.abs(batch).reshape(24, -1, 4).max(axis=1) > 0
    assert np.all(present[:, 1] | present[:, 3])  # T1c or FLAIR in every patch
    assert np.all(~present.all(axis=1))  # every patch lost at least one sequence
    plain, _ = sample_batch([case], rng, batch=8, patch=32, augmented=False, dropout=0.0)
    assert np.all(np.abs(plain).reshape(8, -1, 4).max(axis=1) > 0)
