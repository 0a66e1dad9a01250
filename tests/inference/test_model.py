"""The segmenter network: shapes, probabilities, loss, and the JAX backend."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from inference.segmentation.model import CHANNELS, CLASSES, ModelConfig, build_model, dice_ce_loss

SMALL = ModelConfig(decoder_filters=(32, 16, 16, 8))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_model() -> keras.Model:
    keras.utils.set_random_seed(1)
    return build_model(SMALL)


def test_it_gives_four_class_probabilities_for_each_pixel(small_model: keras.Model) -> None:
    slices = np.random.default_rng(0).normal(size=(3, 64, 96, len(CHANNELS))).astype(np.float32)
    probabilities = np.asarray(small_model.predict(slices, verbose=0))
    assert probabilities.shape == (3, 64, 96, len(CLASSES))
    assert probabilities.dtype == np.float32
    assert np.allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)
    assert probabilities.min() >= 0.0


def test_it_takes_any_slice_size_that_is_a_multiple_of_32(small_model: keras.Model) -> None:
    for height, width in ((32, 32), (160, 192)):
        out = small_model.predict(np.zeros((1, height, width, 4), np.float32), verbose=0)
        assert out.shape == (1, height, width, 4)


def test_its_encoder_is_efficientnetv2_with_attention_gates(small_model: keras.Model) -> None:
    names = [layer.name for layer in small_model.layers]
    assert "block6h_add" in names
    assert "stem_conv" in names
    gates = [n for n in names if n.endswith("_att_gate")]
    assert len(gates) == 4  # one per encoder skip connection


def test_the_loss_is_near_zero_for_a_perfect_prediction_and_large_for_a_wrong_one() -> None:
    labels = np.zeros((2, 8, 8), int)
    labels[:, 2:5, 2:5] = 3
    labels[:, 5:7, 5:7] = 1
    labels[0, 0, :] = 2
    truth = np.eye(4, dtype=np.float32)[labels]
    perfect = float(dice_ce_loss(truth, truth))
    wrong = float(dice_ce_loss(truth, np.roll(truth, 1, axis=-1)))
    assert perfect < 0.01
    assert wrong > 1.5


def test_a_wrong_number_of_decoder_levels_is_refused() -> None:
    with pytest.raises(ValueError, match="decoder_filters"):
        build_model(ModelConfig(decoder_filters=(8, 8)))


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_it_runs_on_the_jax_backend_with_the_same_predictions(
    small_model: keras.Model, tmp_path: Path
) -> None:
    """Weights exported under this backend, loaded under JAX in a fresh process: the GPU
    machine has JAX only."""
    from inference.segmentation.segment import Segmenter, export_weights

    export_weights(small_model, tmp_path, training={"data": ["test"]}, config=SMALL)
    slices = np.random.default_rng(3).normal(size=(2, 64, 64, 4)).astype(np.float32)
    np.save(tmp_path / "slices.npy", slices)
    here = Segmenter(tmp_path).predict_slices(slices, flips=False)
    script = (
        "import sys, numpy as np, keras\n"
        "from inference.segmentation.segment import Segmenter\n"
        "s = Segmenter(sys.argv[1])\n"
        "x = np.load(sys.argv[1] + '/slices.npy')\n"
        "np.save(sys.argv[1] + '/jax.npy', s.predict_slices(x, flips=False))\n"
        "print(keras.backend.backend())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "jax"
    there = np.load(tmp_path / "jax.npy")
    assert np.abs(there - here).max() < 1e-4
