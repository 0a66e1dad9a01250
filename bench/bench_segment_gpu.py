"""Segmenter speed on a GPU machine (KERAS_BACKEND=jax): the shipped model on one visit's worth of
slices, 155 x 224 x 224 x 4 (random values: speed does not depend on them), median of N runs
after a warm-up call that compiles.

The GPU machine has JAX but neither TensorFlow nor SimpleITK. The timed path (``Segmenter``
loading the shipped weights, ``predict_slices``) uses numpy and Keras only, so when SimpleITK is
missing an empty module stands in for it; nothing here calls it.

    KERAS_BACKEND=jax python bench/bench_segment_gpu.py --out results.json

Target (issue 4): one visit <= 0.3 s on a GPU. Results: bench/results/segment_speed_gpu.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

try:
    import SimpleITK  # noqa: F401
except ImportError:  # the GPU machine: the timed path never calls it
    sys.modules["SimpleITK"] = types.ModuleType("SimpleITK")


def timed(call, repeats: int) -> dict[str, float | list[float]]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return {
        "median_s": round(statistics.median(seconds), 4),
        "runs_s": [round(s, 4) for s in seconds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/segment_speed_gpu.json")
    args = parser.parse_args()

    import jax
    import keras

    from inference.segmentation.segment import BATCH, Segmenter

    started = time.perf_counter()
    segmenter = Segmenter()
    load_s = time.perf_counter() - started
    slices = np.random.default_rng(0).normal(size=(155, 224, 224, 4)).astype(np.float32)
    started = time.perf_counter()
    segmenter.predict_slices(slices, flips=True)  # compiles
    first_s = time.perf_counter() - started
    big = len(slices)
    segmenter.model.predict(slices, batch_size=big, verbose=0)  # compiles the larger batch
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except FileNotFoundError:
        gpu = "none"
    result = {
        "what": "shipped segmenter, one visit of slices (155 x 224 x 224 x 4), model loaded",
        "target": "one visit <= 0.3 s on a GPU",
        "environment": {
            "keras_backend": keras.backend.backend(),
            "keras": keras.__version__,
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
            "gpu": gpu,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        },
        "model": segmenter.identity,
        "load_s": round(load_s, 3),
        "first_call_with_compile_s": round(first_s, 3),
        f"batch_{BATCH}": {
            "no_flips": timed(lambda: segmenter.predict_slices(slices, flips=False), args.repeats),
            "flips": timed(lambda: segmenter.predict_slices(slices, flips=True), args.repeats),
        },
        f"batch_{big}_no_flips": timed(
            lambda: segmenter.model.predict(slices, batch_size=big, verbose=0), args.repeats
        ),
    }
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
