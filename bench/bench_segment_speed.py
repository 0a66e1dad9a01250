"""Segmenter speed and memory: one visit, model already loaded, median of 5.

- ``slices``: the issue's reference load, 155 slices of 224 x 224 x 4 (random values), one
  forward pass each (no flips); and the same with test-time flips (two passes).
- ``visit``: a real prepared visit (the BraTS 2023 case in ../shared/data, prepared once and
  cached), ``Segmenter.segment`` end to end (crop to the brain, batch, predict, reassemble), with
  and without flips.
- ``first_call``: a fresh process: import, build, load the weights, first visit.
- Peak memory (max RSS) of that fresh segmenting process.

``--weights DIR`` and ``--runtime R`` (each repeatable; default: the shipped weights on Keras
and on ONNX Runtime) time every combination side by side in one run: each repetition runs every
one in turn, so a noisy machine slows them alike. On the real visit, each one's segmentation is
compared with the first Keras one's (Dice per region: the runtimes must agree within 0.999).
ONNX exports are cached in var/model-cache (built on first use).

    .venv/bin/python bench/bench_segment_speed.py [--repeats 5] [--weights DIR] [--runtime R]
    KERAS_BACKEND=jax python bench/bench_segment_speed.py --slices-only  (GPU machine, no data)

Writes bench/results/segment_speed.json (or segment_speed_<backend>.json with --slices-only).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, data_folder, environment, write_results

sys.path.insert(0, str(REPO))

CASE = "brats-gli-00001-000"
PREPARED = REPO / "var" / "bench-segment" / "real" / CASE


def timed(functions: dict[str, Any], repeats: int) -> dict[str, dict[str, Any]]:
    """Median seconds of each function, the functions interleaved within every repetition."""
    seconds: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            seconds[name].append(time.perf_counter() - started)
    return {
        name: {
            "median_s": round(statistics.median(values), 3),
            "runs_s": [round(s, 3) for s in values],
        }
        for name, values in seconds.items()
    }


def prepared_visit() -> Path:
    if not (PREPARED / "qc.json").exists():
        from inference.imaging.io import read_visit
        from inference.imaging.preprocess import prepare_visit, write_prepared

        write_prepared(prepare_visit(read_visit(data_folder() / CASE)), PREPARED)
    return PREPARED


FRESH = """
import json, sys, time
started = time.perf_counter()
from inference.segmentation.segment import Segmenter
from inference.imaging.preprocess import read_prepared
segmenter = Segmenter(sys.argv[2], runtime=sys.argv[3], cache=sys.argv[4])
loaded = time.perf_counter()
images, mask, _ = read_prepared(sys.argv[1])
result = segmenter.segment(images, mask, flips=True)
done = time.perf_counter()
print(json.dumps({
    "import_build_load_s": round(loaded - started, 3),
    "first_visit_s": round(done - loaded, 3),
    "total_s": round(done - started, 3),
    "tensorflow_loaded": "tensorflow" in sys.modules,
    # VmHWM, this process' own peak: ru_maxrss would report the parent's peak at the fork.
    "peak_rss_mib": round(int(next(
        line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")
    )) / 1024, 1),
}))
"""


def _runtime_versions() -> dict[str, str]:
    import keras
    import onnxruntime

    return {"keras": keras.__version__, "onnxruntime": onnxruntime.__version__}


def agreement(segmenters: dict[str, Any], images: Any, mask: Any) -> dict[str, Any]:
    """Dice per region of each segmentation (flips) against the first Keras one's."""
    from inference.measurement.evaluate import evaluate

    results = {name: s.segment(images, mask, flips=True) for name, s in segmenters.items()}
    reference = next(n for n, s in segmenters.items() if s.runtime == "keras")
    return {
        "reference": reference,
        "dice": {
            name: {
                region.value: round(score.dice, 5)
                for region, score in evaluate(
                    result.labels, results[reference].labels, distances=False
                ).items()
            }
            for name, result in results.items()
            if name != reference
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slices-only", action="store_true")
    parser.add_argument("--weights", type=Path, action="append", help="weights folder(s)")
    parser.add_argument("--runtime", action="append", choices=("keras", "onnx"), help="runtimes")
    args = parser.parse_args()

    import keras

    from inference.segmentation.segment import DEFAULT_WEIGHTS, Segmenter

    folders = [Path(w) for w in args.weights or [DEFAULT_WEIGHTS]]
    runtimes = args.runtime or ["keras", "onnx"]
    cache = REPO / "var" / "model-cache"
    segmenters = {}
    combinations = []
    for folder in folders:
        for runtime in runtimes:
            segmenter = Segmenter(folder, runtime=runtime, cache=cache)
            segmenters[f"{segmenter.identity['version']} {runtime} ({folder})"] = segmenter
            combinations.append((folder, runtime))
    slices = np.random.default_rng(0).normal(size=(155, 224, 224, 4)).astype(np.float32)
    for segmenter in segmenters.values():
        segmenter.predict_slices(slices[:16], flips=False)  # trace once
    result: dict[str, Any] = {
        "environment": environment(
            keras_backend=keras.backend.backend(),
            models={name: s.identity for name, s in segmenters.items()},
            runtimes=_runtime_versions(),
        ),
        "target": "one visit (about 155 slices at 224 x 224 x 4) <= 4 s on 2 CPU cores",
        "weights": list(segmenters),
        "slices_155x224x224": {
            "no_flips": timed(
                {
                    n: (lambda s=s: s.predict_slices(slices, flips=False))
                    for n, s in segmenters.items()
                },
                args.repeats,
            ),
            "flips": timed(
                {
                    n: (lambda s=s: s.predict_slices(slices, flips=True))
                    for n, s in segmenters.items()
                },
                args.repeats,
            ),
        },
    }
    print(json.dumps(result["slices_155x224x224"]), flush=True)
    name = "segment_speed.json"
    if not args.slices_only:
        from inference.imaging.preprocess import read_prepared

        folder = prepared_visit()
        images, mask, _ = read_prepared(folder)
        details = next(iter(segmenters.values())).segment(images, mask, flips=False).details
        result["visit"] = {
            "case": CASE,
            "slices": details["slices"],
            "slice_size": details["slice_size"],
            "no_flips": timed(
                {
                    n: (lambda s=s: s.segment(images, mask, flips=False))
                    for n, s in segmenters.items()
                },
                args.repeats,
            ),
            "flips": timed(
                {
                    n: (lambda s=s: s.segment(images, mask, flips=True))
                    for n, s in segmenters.items()
                },
                args.repeats,
            ),
        }
        result["visit"]["agreement"] = agreement(segmenters, images, mask)
        print(json.dumps(result["visit"]), flush=True)
        result["first_call"] = {}
        for tag, (weights, runtime) in zip(segmenters, combinations, strict=True):
            fresh = subprocess.run(
                [sys.executable, "-c", FRESH, str(folder), str(weights), runtime, str(cache)],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            result["first_call"][tag] = json.loads(fresh.stdout.strip().splitlines()[-1])
        result["memory_target"] = "peak memory of a segmenting process <= 3 GB"
        print(json.dumps(result["first_call"]), flush=True)
    else:
        name = f"segment_speed_{keras.backend.backend()}.json"
        result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    write_results(REPO / "bench" / "results" / name, result)


if __name__ == "__main__":
    main()
