"""Benchmark: visit-to-visit registration on known rigid motions (accuracy and speed).

What it measures
    ``inference.imaging.register.register_visits`` (the library function, quality check included)
    on a 1 mm visit and a copy of it moved by a known rigid motion. Target: mean target registration
    error (TRE) <= 0.5 mm on motions of up to 10 degrees and 15 mm, in <= 8 s on 2 CPU cores.

How each trial is built (trial i = 0 .. repeats-1, numpy generator seeded with i)
    * motion: ``sitk.Euler3DTransform`` centred on the fixed T1c's centre; rotation angles uniform
      in [-10, 10] degrees per axis, translation uniform in [-15, 15] mm per axis;
    * fixed visit: the real BraTS 2023 case ``brats-gli-00001-000`` (240 x 240 x 155, 1 mm) read
      with ``inference.imaging.io.read_visit``; with ``--source synthetic``, or when the data
      folder is missing, ``inference.demo.synthetic_visit(i)`` instead (labelled SYNTHETIC PHANTOM);
    * moving visit: every sequence moved by the motion (``inference.demo.moved``, fixed -> moving
      convention), then independent Rician noise (sigma = 3 % of the image's 99th percentile over
      all voxels) and a multiplicative bias field exp(a * ramp), ramp a linear function of position
      along a random direction scaled to [-1, 1] over the box and a uniform in [-0.1, 0.1];
      cast back to the original pixel type;
    * timed: ``register_visits(fixed.images, moving_images)`` with ``time.perf_counter``;
    * TRE: ``target_registration_error(found, motion, points)`` with ``points`` every 4th voxel
      of the fixed T1c's non-zero mask (the brain, for the skull-stripped BraTS case; for the
      phantom, whose background is noisy, the MNI152 brain mask it is built on).

SimpleITK runs on ``--threads`` threads (default 2, the target's core count).

Side by side with earlier code (``--baseline REF``): each trial then runs in a fresh child
process per code version, first the code of git commit ``REF`` (a temporary worktree on the
child's path), then the current code, on the same moved visit; medians for both.

Rerun
    .venv/bin/python bench/bench_register.py       # 5 trials -> bench/results/register.json
    .venv/bin/python bench/bench_register.py --repeats 1 --out /tmp/register.json
    .venv/bin/python bench/bench_register.py --source synthetic
    .venv/bin/python bench/bench_register.py --baseline f144770
Test data: ``$TRACKER_TEST_DATA``, default ``<repo root>/../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from common import REPO, baseline_worktree, data_folder, remove_worktree, write_results
from common import environment as common_environment

CASE = "brats-gli-00001-000"
SYNTHETIC_LABEL = "SYNTHETIC PHANTOM"
TARGET_TRE_MM = 0.5
TARGET_SECONDS = 8.0
MAX_ROTATION_DEG = 10.0
MAX_SHIFT_MM = 15.0
NOISE_FRACTION = 0.03
BIAS_AMPLITUDE = 0.10


def environment(threads: int) -> dict[str, Any]:
    return common_environment(sitk_threads=threads)


def random_motion(rng: np.random.Generator, centre: tuple[float, ...]) -> sitk.Euler3DTransform:
    motion = sitk.Euler3DTransform()
    motion.SetCenter(centre)
    angles = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, size=3)
    motion.SetRotation(*np.radians(angles).tolist())
    motion.SetTranslation(rng.uniform(-MAX_SHIFT_MM, MAX_SHIFT_MM, size=3).tolist())
    return motion


def degrade(image: sitk.Image, rng: np.random.Generator) -> tuple[sitk.Image, dict[str, float]]:
    """Rician noise and a smooth multiplicative bias field, cast back to the pixel type."""
    values = sitk.GetArrayFromImage(image).astype(np.float64)
    sigma = NOISE_FRACTION * float(np.percentile(values, 99))
    real = values + rng.normal(0.0, sigma, values.shape)
    imaginary = rng.normal(0.0, sigma, values.shape)
    noisy = np.sqrt(real**2 + imaginary**2)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    amplitude = float(rng.uniform(-BIAS_AMPLITUDE, BIAS_AMPLITUDE))
    grids = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in values.shape], indexing="ij")
    ramp = sum(d * g for d, g in zip(direction[::-1], grids, strict=True))  # (z, y, x) axes
    ramp = ramp / np.abs(ramp).max()
    degraded = noisy * np.exp(amplitude * ramp)
    dtype = sitk.GetArrayViewFromImage(image).dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        degraded = np.clip(np.rint(degraded), info.min, info.max)
    out = sitk.GetImageFromArray(degraded.astype(dtype))
    out.CopyInformation(image)
    return out, {"noise_sigma": round(sigma, 3), "bias_log_amplitude": round(amplitude, 4)}


def load_fixed(source: str, seed: int) -> tuple[dict[Any, sitk.Image], sitk.Image, str]:
    """The fixed visit's images, the mask the TRE points come from, and the data label."""
    from inference.labels import Sequence

    if source == "brats":
        from inference.imaging.io import read_visit

        visit = read_visit(data_folder() / CASE)
        t1c = visit.images[Sequence.T1C]
        mask = sitk.Cast(t1c != 0, sitk.sitkUInt8)
        return visit.images, mask, f"real BraTS case {CASE}"
    from inference.demo import synthetic_visit
    from inference.imaging import atlas

    images = synthetic_visit(seed)
    mask = sitk.Cast(atlas.template_brain_mask() > 0, sitk.sitkUInt8)
    return images, mask, f"{SYNTHETIC_LABEL} synthetic_visit({seed})"


def run_trial(seed: int, source: str) -> dict[str, Any]:
    from inference.demo import moved
    from inference.imaging.register import (
        mask_points,
        register_visits,
        rotation_degrees,
        target_registration_error,
    )
    from inference.labels import Sequence

    rng = np.random.default_rng(seed)
    fixed, mask, data = load_fixed(source, seed)
    t1c = fixed[Sequence.T1C]
    centre = t1c.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in t1c.GetSize()])
    motion = random_motion(rng, centre)
    moving = {}
    degradation = {}
    for sequence, image in fixed.items():
        moving[sequence], degradation[sequence.value] = degrade(moved(image, motion), rng)
    points = mask_points(mask, step=4)

    started = time.perf_counter()
    registration = register_visits(fixed, moving)
    seconds = time.perf_counter() - started

    tre = target_registration_error(registration.result.transform, motion, points)
    angles = np.degrees([motion.GetAngleX(), motion.GetAngleY(), motion.GetAngleZ()])
    return {
        "seed": seed,
        "data": data,
        "motion": {
            "angles_deg": np.round(angles, 3).tolist(),
            "rotation_deg": round(rotation_degrees(motion), 3),
            "translation_mm": np.round(motion.GetTranslation(), 3).tolist(),
            "shift_mm": round(float(np.linalg.norm(motion.GetTranslation())), 3),
            "centre_mm": np.round(centre, 3).tolist(),
        },
        "degradation": degradation,
        "tre_points": len(points),
        "seconds": round(seconds, 3),
        "register_images_seconds": round(registration.result.seconds, 3),
        # register_images time spent outside the optimiser stages (the full-resolution metric
        # evaluations that decide whether the affine stage is kept).
        "outside_stages_seconds": round(
            registration.result.seconds - sum(s.seconds for s in registration.result.stages), 3
        ),
        "tre_mean_mm": round(float(tre.mean()), 4),
        "tre_max_mm": round(float(tre.max()), 4),
        "quality_ok": registration.ok,
        "registration": registration.as_dict(),
    }


def trial_in_child(seed: int, source: str, code: Path, threads: int) -> dict[str, Any]:
    """``run_trial`` in a fresh process that imports ``inference`` from ``code``."""
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--one-trial",
            str(seed),
            "--source",
            source,
            "--threads",
            str(threads),
        ],
        cwd=code,
        env={**os.environ, "PYTHONPATH": str(code)},
        capture_output=True,
        text=True,
        check=True,
    )
    trial: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return trial


def summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    median_seconds = statistics.median(t["seconds"] for t in trials)
    median_tre = statistics.median(t["tre_mean_mm"] for t in trials)
    return {
        "median_seconds": round(median_seconds, 3),
        "median_tre_mean_mm": round(median_tre, 4),
        "worst_tre_mean_mm": round(max(t["tre_mean_mm"] for t in trials), 4),
        "worst_tre_max_mm": round(max(t["tre_max_mm"] for t in trials), 4),
        "trials_within_tre_target": sum(t["tre_mean_mm"] <= TARGET_TRE_MM for t in trials),
        "trials_quality_ok": sum(bool(t["quality_ok"]) for t in trials),
        "tre_target_pass": median_tre <= TARGET_TRE_MM,
        "time_target_pass": median_seconds <= TARGET_SECONDS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="trials, seeds 0 .. N-1 (default 5)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "register.json")
    parser.add_argument("--source", choices=["brats", "synthetic"], default="brats")
    parser.add_argument("--threads", type=int, default=2, help="SimpleITK threads (default 2)")
    parser.add_argument(
        "--baseline", metavar="REF", help="also run the code of this git commit, side by side"
    )
    parser.add_argument("--one-trial", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args()

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    if args.one_trial is not None:  # a child of a side-by-side run: one trial as JSON
        print(json.dumps(run_trial(args.one_trial, args.source), default=float))
        return 0
    env = environment(args.threads)
    source = args.source
    fallback = None
    if source == "brats" and not (data_folder() / CASE).is_dir():
        fallback = f"{data_folder() / CASE} not found: fell back to the synthetic phantom"
        source = "synthetic"
    synthetic = source == "synthetic"
    label = f" [{SYNTHETIC_LABEL}]" if synthetic else ""

    print(
        f"bench_register{label}: register_visits on "
        f"{'synthetic_visit(seed)' if synthetic else CASE}"
        f", {args.repeats} trial(s), {args.threads} SimpleITK thread(s)"
    )
    if fallback:
        print(f"  note: {fallback}")
    print(
        f"  {'trial':>5} {'rot deg':>8} {'shift mm':>9} {'seconds':>8} {'TRE mean':>9} "
        f"{'TRE max':>8} {'quality':>8}"
    )
    trials, baseline_trials = [], []
    root = Path(tempfile.mkdtemp(prefix="bench-register-"))
    try:
        baseline = baseline_worktree(args.baseline, root) if args.baseline else None
        for seed in range(args.repeats):
            runs = []
            if baseline is not None:
                baseline_trials.append(trial_in_child(seed, source, baseline, args.threads))
                runs.append((f"base {seed}", baseline_trials[-1]))
                trials.append(trial_in_child(seed, source, REPO, args.threads))
            else:
                trials.append(run_trial(seed, source))
            runs.append((str(seed), trials[-1]))
            for name, trial in runs:
                motion = trial["motion"]
                print(
                    f"  {name:>5} {motion['rotation_deg']:>8.2f} {motion['shift_mm']:>9.2f} "
                    f"{trial['seconds']:>8.2f} {trial['tre_mean_mm']:>9.3f} "
                    f"{trial['tre_max_mm']:>8.3f} {'ok' if trial['quality_ok'] else 'FLAGGED':>8}",
                    flush=True,
                )
    finally:
        if args.baseline:
            remove_worktree(root / "baseline")
        shutil.rmtree(root, ignore_errors=True)

    summary = summarise(trials)
    median_seconds, median_tre = summary["median_seconds"], summary["median_tre_mean_mm"]
    worst_max, worst_mean = summary["worst_tre_max_mm"], summary["worst_tre_mean_mm"]
    within_tre, quality_ok = summary["trials_within_tre_target"], summary["trials_quality_ok"]
    tre_pass, time_pass = summary["tre_target_pass"], summary["time_target_pass"]
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    print(f"summary{label} ({len(trials)} trial(s), medians):")
    print(
        f"  seconds            {median_seconds:7.2f}   target <= {TARGET_SECONDS:g} s on 2 cores: "
        f"{verdict(time_pass)}"
    )
    print(
        f"  TRE mean (median)  {median_tre:7.3f} mm target <= {TARGET_TRE_MM:g} mm: "
        f"{verdict(tre_pass)}"
        f" ({within_tre}/{len(trials)} trials within; worst mean {worst_mean:.3f} mm)"
    )
    print(f"  TRE max (worst)    {worst_max:7.3f} mm")
    print(f"  quality check ok   {quality_ok}/{len(trials)}")
    baseline_summary = summarise(baseline_trials) if baseline_trials else None
    if baseline_summary:
        print(
            f"  baseline {args.baseline}: {baseline_summary['median_seconds']:.2f} s, TRE mean "
            f"(median) {baseline_summary['median_tre_mean_mm']:.3f} mm, worst mean "
            f"{baseline_summary['worst_tre_mean_mm']:.3f} mm, quality check ok "
            f"{baseline_summary['trials_quality_ok']}/{len(baseline_trials)}"
        )

    report = {
        "benchmark": "visit-to-visit registration (register_visits) on known rigid motions",
        "data": (
            f"{SYNTHETIC_LABEL}: inference.demo.synthetic_visit(seed)"
            if synthetic
            else f"real BraTS 2023 case {CASE} from {data_folder()}"
        ),
        "synthetic_phantom": synthetic,
        "fallback": fallback,
        "targets": {"tre_mean_mm": TARGET_TRE_MM, "seconds": TARGET_SECONDS, "cores": 2},
        "protocol": {
            "rotation_deg_per_axis": [-MAX_ROTATION_DEG, MAX_ROTATION_DEG],
            "translation_mm_per_axis": [-MAX_SHIFT_MM, MAX_SHIFT_MM],
            "rician_sigma": f"{NOISE_FRACTION:g} x 99th percentile of each image (all voxels)",
            "bias_field": f"exp(a * linear ramp in [-1, 1]), a uniform in +-{BIAS_AMPLITUDE:g}",
            "tre_points": (
                "every 4th voxel of the fixed T1c non-zero mask"
                if not synthetic
                else "every 4th voxel of the MNI152 brain mask"
            ),
            "timed": "register_visits(fixed.images, moving_images), time.perf_counter",
        },
        **env,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "trials": trials,
        "summary": summary,
        "baseline": (
            {"ref": args.baseline, "trials": baseline_trials, "summary": baseline_summary}
            if baseline_summary
            else None
        ),
    }
    write_results(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
