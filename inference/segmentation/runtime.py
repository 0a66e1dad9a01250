"""Where the segmenter's forward pass runs.

Keras is the source of truth for the model: it is trained, exported and checked there, and a
GPU worker runs it on JAX. On a CPU worker the same network runs faster in ONNX Runtime
(``bench/bench_segment_speed.py`` measures both side by side): the ONNX file is exported from
the Keras model with its shipped weights (``Model.export(format="onnx")``, tf2onnx underneath)
by ``python -m inference export-onnx``, or by the first segmenter that needs it, and kept in a
cache folder under the weights' checksum, never committed. A record beside it names the weights
it was built from and how far its output is from Keras' on a fixed probe batch; a file whose
checksum or record does not match is rebuilt, not used.

Runtimes: ``keras``; ``onnx``; ``auto`` (ONNX Runtime where it is installed and Keras is not
on JAX, which is for GPUs; else Keras).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import InputError
from inference.files import atomic_path, sha256_of

RUNTIMES = ("auto", "keras", "onnx")
# The largest difference between ONNX Runtime's and Keras' probabilities on the probe batch that
# a built file may have (measured: 4e-6 with float32 on both sides).
PROBE_TOLERANCE = 1e-4
Forward = Callable[[np.ndarray], np.ndarray]


class RuntimeUnavailable(InputError):
    """The runtime asked for cannot run here (its package is missing)."""


def resolve(runtime: str) -> str:
    """The runtime ``auto`` means on this machine; another name is checked and returned."""
    if runtime not in RUNTIMES:
        raise InputError(f"segmenter runtime '{runtime}': expected one of {', '.join(RUNTIMES)}")
    if runtime != "auto":
        return runtime
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "jax":
        return "keras"
    try:
        import onnxruntime  # noqa: F401, PLC0415
        import tf2onnx  # noqa: F401, PLC0415
    except ImportError:
        return "keras"
    return "onnx"


def probe_batch() -> np.ndarray:
    """A fixed input batch (2 slices of 64 x 64 x 4) for comparing runtimes."""
    return np.random.default_rng(20261207).normal(size=(2, 64, 64, 4)).astype(np.float32)


def onnx_paths(cache: Path, weights_sha256: str) -> tuple[Path, Path]:
    """The ONNX file of these weights in ``cache``, and its record."""
    stem = f"segmenter-{weights_sha256[:16]}"
    return cache / f"{stem}.onnx", cache / f"{stem}.json"


def export_onnx(model: Any, cache: Path, *, weights_sha256: str) -> Path:
    """Export the Keras ``model`` (its weights loaded) to ONNX in ``cache``, check it against
    Keras on the probe batch and write its record; returns the ONNX file."""
    try:
        import tf2onnx  # noqa: PLC0415
    except ImportError as error:
        raise RuntimeUnavailable(
            "exporting the segmenter to ONNX needs tf2onnx (pip install tf2onnx)"
        ) from error
    started = time.perf_counter()
    path, record = onnx_paths(cache, weights_sha256)
    probe = probe_batch()
    expected = np.asarray(model.predict(probe, verbose=0))  # also builds the model's graph
    with atomic_path(path) as staging:
        model.export(str(staging), format="onnx", verbose=False)
        difference = float(np.abs(_onnx_session(staging)(probe) - expected).max())
        if not difference <= PROBE_TOLERANCE:
            raise InputError(
                f"the ONNX export differs from the Keras model by {difference:.2g} on the probe "
                f"batch (at most {PROBE_TOLERANCE:g} allowed): not used"
            )
    import keras  # noqa: PLC0415
    import onnxruntime  # noqa: PLC0415

    facts = {
        "weights_sha256": weights_sha256,
        "onnx_sha256": sha256_of(path),
        "probe_max_abs_difference": difference,
        "probe": "2 x 64 x 64 x 4, numpy default_rng(20261207) normal",
        "keras_version": keras.__version__,
        "tf2onnx_version": tf2onnx.__version__,
        "onnxruntime_version": onnxruntime.__version__,
        "seconds": round(time.perf_counter() - started, 3),
    }
    with atomic_path(record) as staging:
        staging.write_text(json.dumps(facts, indent=2) + "\n")
    return path


def cached_onnx(cache: Path, weights_sha256: str) -> Path | None:
    """The ONNX file of these weights if the cache holds a good one (its record names these
    weights and its checksum matches), else None."""
    path, record = onnx_paths(cache, weights_sha256)
    try:
        facts = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if not path.is_file() or facts.get("weights_sha256") != weights_sha256:
        return None
    if facts.get("onnx_sha256") != sha256_of(path):
        return None
    return path


def _onnx_session(path: Path) -> Forward:
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError as error:
        raise RuntimeUnavailable(
            "the onnx segmenter runtime needs onnxruntime (pip install onnxruntime)"
        ) from error
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = os.environ.get("TRACKER_SEGMENTER_THREADS")
    if threads:
        options.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def forward(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: np.ascontiguousarray(batch, np.float32)})[0])

    return forward


def onnx_forward(path: Path) -> Forward:
    """A forward pass over one batch in ONNX Runtime."""
    return _onnx_session(path)
