"""Benchmark: preparing one visit end to end (seven steps, four sequences): time, memory, accuracy.

What it measures
    For each case and repeat, ``python -m inference prepare VISIT --out TMPDIR`` in a fresh
    subprocess: the wall seconds of the whole command (interpreter start-up, read, prepare,
    write), the ``seconds`` field of the written ``qc.json`` (the seven steps only: the compute),
    the child's peak resident memory (``/usr/bin/time -f %M`` when present, else a Python wrapper
    that reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at exit), and the brain-mask Dice
    against the case's reference mask where ``qc.json`` has one. Targets: compute <= 5 s on 2 CPU
    cores (issue 19; it was 15 s), peak memory <= 3 GB (taken as 3e9 bytes).

Side by side with earlier code (``--baseline REF``)
    The same runs against the code of a git commit, checked out in a temporary worktree; each
    repeat runs the baseline and then the current code, so both see the same machine load. The
    recorded run compares with f144770, the code before the preparation was made faster.

Co-registration accuracy (``--coregistration-trials``, default 3; 0 skips it)
    ``preprocess.coregister_sequences`` on the real BraTS case with its T1, T2 and FLAIR moved by
    known rigid motions (trial i: numpy generator seeded with i, angles uniform in [-5, 5] degrees
    per axis about the T1c's centre, shifts uniform in [-6, 6] mm per axis: a patient moving
    between the sequences of one session; ``inference.demo.moved``), in a child of each code
    version. Reported per sequence: the mean target registration error over every 4th voxel of
    the brain against the known motion (BraTS ships its sequences co-registered, so the truth is
    the motion itself) and the seconds of the step.

Cases (``--cases``, comma-separated; default all three)
    * ``brats-gli-00001-000``: real BraTS 2023 case, 1 mm, skull-stripped, 240 x 240 x 155;
    * ``tcga-fg-6692-raw``: real raw TCGA exam, skull on, 0.9 x 0.9 x 5.5 mm slices, with an
      HD-BET reference brain mask (Dice reported);
    * ``synthetic``: SYNTHETIC PHANTOM, ``inference.demo.synthetic_visit(7)`` written with
      ``inference.demo.write_visit`` to a temporary folder before timing.
    Real cases come from ``$TRACKER_TEST_DATA`` (default ``<repo root>/../shared/data``) and are
    skipped, with a note, when missing.

The child runs with ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` (and the OpenMP/BLAS thread counts)
set to ``--threads`` (default 2, the target's core count).

Rerun
    .venv/bin/python bench/bench_prepare.py --baseline f144770   # -> bench/results/prepare.json
    .venv/bin/python bench/bench_prepare.py --repeats 1 --out /tmp/prepare.json
    .venv/bin/python bench/bench_prepare.py --cases tcga-fg-6692-raw,synthetic
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

from common import REPO, baseline_worktree, data_folder, remove_worktree, write_results
from common import environment as common_environment

SYNTHETIC_LABEL = "SYNTHETIC PHANTOM"
SYNTHETIC = "synthetic"
REAL_CASES = ("brats-gli-00001-000", "tcga-fg-6692-raw")
ALL_CASES = (*REAL_CASES, SYNTHETIC)
DESCRIPTIONS = {
    "brats-gli-00001-000": "real BraTS 2023 case, 1 mm, skull-stripped",
    "tcga-fg-6692-raw": "real raw TCGA exam, skull on, 5.5 mm slices, HD-BET reference mask",
    SYNTHETIC: f"{SYNTHETIC_LABEL}: inference.demo.synthetic_visit(7), skull on, 1 mm",
}
TARGET_SECONDS = 5.0
CURRENT = "current"
COREGISTRATION_CASE = "brats-gli-00001-000"
TARGET_PEAK_BYTES = 3e9
TIME_BINARY = Path("/usr/bin/time")

# Runs ``python -m inference ARGS`` in this process and writes its peak RSS (ru_maxrss) to a file.
RSS_WRAPPER = """
import resource, runpy, sys
rss_file, sys.argv = sys.argv[1], ["inference", *sys.argv[2:]]
code = 0
try:
    runpy.run_module("inference", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    code = stop.code
finally:
    scale = 1 if sys.platform == "darwin" else 1024
    with open(rss_file, "w") as out:
        out.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale // 1024))
sys.exit(code)
"""


# Runs in a child of each code version: co-registration of the BraTS case's sequences moved by
# known motions; prints one JSON line.
COREGISTRATION_CHILD = """
import json, sys, time
import numpy as np, SimpleITK as sitk
from inference.demo import moved
from inference.imaging import preprocess
from inference.imaging.io import read_visit
from inference.imaging.register import mask_points, target_registration_error
from inference.labels import Sequence

visit, seed = read_visit(sys.argv[1]), int(sys.argv[2])
images, _ = preprocess.reorient(visit.images)
reference = images[Sequence.T1C]
centre = reference.TransformContinuousIndexToPhysicalPoint(
    [(n - 1) / 2 for n in reference.GetSize()]
)
rng = np.random.default_rng(seed)
motions = {}
for sequence in (Sequence.T1, Sequence.T2, Sequence.FLAIR):
    motion = sitk.Euler3DTransform()
    motion.SetCenter(centre)
    motion.SetRotation(*np.radians(rng.uniform(-5, 5, size=3)).tolist())
    motion.SetTranslation(rng.uniform(-6, 6, size=3).tolist())
    motions[sequence] = motion
    images[sequence] = moved(images[sequence], motion)
points = mask_points(reference != float(sitk.GetArrayViewFromImage(reference).min()), step=4)
started = time.perf_counter()
transforms, _ = preprocess.coregister_sequences(images, reference=Sequence.T1C)
seconds = time.perf_counter() - started
print(json.dumps({
    "seconds": round(seconds, 3),
    "tre_mm": {
        s.value: round(float(target_registration_error(transforms[s], m, points).mean()), 3)
        for s, m in motions.items()
    },
}))
"""


def environment(threads: int) -> dict[str, Any]:
    return common_environment(child_threads=threads)


def child_environment(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in (
        "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
    ):
        env[name] = str(threads)
    return env


def synthetic_folder(root: Path) -> Path:
    from inference.demo import synthetic_visit, write_visit

    return write_visit(synthetic_visit(7), root / "visits" / "demo-000", "DEMO-000")


def run_once(
    visit: Path, out: Path, rss_file: Path, env: dict[str, str], code: Path
) -> dict[str, Any]:
    """One ``prepare`` in a fresh child running the code under ``code``: wall seconds, qc.json
    figures, peak RSS."""
    prepare = ["prepare", str(visit), "--out", str(out)]
    if TIME_BINARY.exists():
        command = [
            str(TIME_BINARY),
            "-f",
            "%M",
            "-o",
            str(rss_file),
            sys.executable,
            "-m",
            "inference",
            *prepare,
        ]
        rss_method = "/usr/bin/time -f %M"
    else:
        command = [sys.executable, "-c", RSS_WRAPPER, str(rss_file), *prepare]
        rss_method = "python wrapper, ru_maxrss at exit"
    started = time.perf_counter()
    child = subprocess.run(
        command,
        cwd=code,
        env={**env, "PYTHONPATH": str(code)},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    record: dict[str, Any] = {
        "wall_seconds": round(wall, 3),
        "exit_code": child.returncode,
        "rss_method": rss_method,
    }
    try:
        # GNU time writes a status line ("Command terminated by signal 11") before the figure
        # when the child fails: the figure is the last line.
        lines = rss_file.read_text().strip().splitlines()
        record["peak_rss_mib"] = round(int(lines[-1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        lines, record["peak_rss_mib"] = [], None
    if child.returncode != 0:
        status = lines[:-1] or [f"exit status {child.returncode}"]
        record["error"] = [*status, *child.stderr.strip().splitlines()[-3:]]
        return record
    qc = json.loads((out / "qc.json").read_text())
    steps = {step["name"]: step for step in qc["steps"]}
    mask = steps.get("brain_mask", {}).get("metrics", {})
    record.update(
        compute_seconds=qc["seconds"],
        step_seconds={name: step["seconds"] for name, step in steps.items()},
        reference_dice=mask.get("reference_dice"),
        brain_volume_ml=mask.get("volume_ml"),
        skull_stripped_input=mask.get("skull_stripped_input"),
        grid_size=qc.get("grid", {}).get("size"),
    )
    return record


def median_of(trials: list[dict[str, Any]], key: str) -> float | None:
    values = [t[key] for t in trials if t.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def within(value: float | None, target: float) -> bool | None:
    return None if value is None else value <= target


def fmt(value: float | None, width: int, decimals: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{decimals}f}"


def coregistration_trial(code: Path, visit: Path, seed: int, env: dict[str, str]) -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, "-c", COREGISTRATION_CHILD, str(visit), str(seed)],
        cwd=code,
        env={**env, "PYTHONPATH": str(code)},
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        return {"seed": seed, "error": child.stderr.strip().splitlines()[-3:]}
    return {"seed": seed, **json.loads(child.stdout.strip().splitlines()[-1])}


def summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [t for t in trials if t["exit_code"] == 0]
    medians: dict[str, Any] = {
        "wall_seconds": median_of(ok, "wall_seconds"),
        "compute_seconds": median_of(ok, "compute_seconds"),
        "peak_rss_mib": median_of(ok, "peak_rss_mib"),
        "reference_dice": median_of(ok, "reference_dice"),
    }
    steps = sorted({name for t in ok for name in t["step_seconds"]})
    medians["step_seconds"] = {
        name: round(
            statistics.median(t["step_seconds"][name] for t in ok if name in t["step_seconds"]), 3
        )
        for name in steps
    }
    peak_values = [t["peak_rss_mib"] for t in ok if t["peak_rss_mib"] is not None]
    # None where no run succeeded (nothing to judge).
    verdict = {
        "runs_ok": f"{len(ok)}/{len(trials)}",
        "compute_within_target": within(medians["compute_seconds"], TARGET_SECONDS),
        "worst_peak_rss_mib": max(peak_values) if peak_values else None,
        "memory_within_target": within(
            max(peak_values) * 2**20 if peak_values else None, TARGET_PEAK_BYTES
        ),
    }
    return {"trials": trials, "medians": medians, "targets": verdict}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "prepare.json")
    parser.add_argument(
        "--cases",
        default=",".join(ALL_CASES),
        help=f"comma-separated subset of {', '.join(ALL_CASES)}",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for the child (default 2)")
    parser.add_argument(
        "--baseline", metavar="REF", help="also run the code of this git commit, side by side"
    )
    parser.add_argument(
        "--coregistration-trials",
        type=int,
        default=3,
        help="known-motion co-registration trials on the BraTS case (default 3; 0 skips)",
    )
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in ALL_CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(ALL_CASES)}")

    env = environment(args.threads)
    child_env = child_environment(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    print(
        f"bench_prepare: python -m inference prepare, {args.repeats} repeat(s) per case, "
        f"{args.threads} thread(s) per child; peak RSS by "
        f"{'/usr/bin/time -f %M' if TIME_BINARY.exists() else 'a ru_maxrss wrapper'}"
    )
    results: dict[str, Any] = {}
    coregistration: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    versions: dict[str, Path] = {}
    try:
        if args.baseline:
            versions[f"baseline {args.baseline}"] = baseline_worktree(args.baseline, root)
        versions[CURRENT] = REPO
        folders: dict[str, Path] = {}
        for case in cases:
            if case == SYNTHETIC:
                started = time.perf_counter()
                folders[case] = synthetic_folder(root)
                print(
                    f"  [{SYNTHETIC_LABEL}] wrote synthetic_visit(7) to {folders[case]} "
                    f"({time.perf_counter() - started:.1f} s, not timed)"
                )
            elif (data_folder() / case).is_dir():
                folders[case] = data_folder() / case
            else:
                skipped[case] = f"{data_folder() / case} not found"
                print(f"  note: skipping {case}: {skipped[case]} (set TRACKER_TEST_DATA)")

        print(
            f"  {'case':<30} {'code':<17} {'rep':>3} {'wall s':>7} {'compute s':>9} "
            f"{'peak MiB':>9} {'Dice':>6} {'mask mL':>8}"
        )
        for case, visit in folders.items():
            label = f"{case} [{SYNTHETIC_LABEL}]" if case == SYNTHETIC else case
            trials: dict[str, list[dict[str, Any]]] = {version: [] for version in versions}
            for repeat in range(args.repeats):
                for version, code in versions.items():
                    out = root / "prepared" / f"{case}-{repeat}"
                    rss = root / f"rss-{case}-{repeat}.txt"
                    trial = run_once(visit, out, rss, child_env, code)
                    trial["repeat"] = repeat
                    trials[version].append(trial)
                    shutil.rmtree(out, ignore_errors=True)
                    if trial["exit_code"] != 0:
                        print(
                            f"  {label:<30} {version:<17} {repeat:>3} FAILED "
                            f"(exit {trial['exit_code']}): " + " | ".join(trial["error"])
                        )
                        continue
                    print(
                        f"  {label:<30} {version:<17} {repeat:>3} {trial['wall_seconds']:>7.2f} "
                        f"{trial['compute_seconds']:>9.2f} {fmt(trial['peak_rss_mib'], 9, 0)} "
                        f"{fmt(trial['reference_dice'], 6, 3)} "
                        f"{fmt(trial['brain_volume_ml'], 8, 0)}",
                        flush=True,
                    )
            results[case] = {
                "visit": str(visit)
                if case != SYNTHETIC
                else "temporary folder (synthetic_visit(7))",
                "description": DESCRIPTIONS[case],
                "synthetic_phantom": case == SYNTHETIC,
                "versions": {version: summarise(trials[version]) for version in versions},
            }

        brats = data_folder() / COREGISTRATION_CASE
        if args.coregistration_trials and brats.is_dir():
            print(f"co-registration of {COREGISTRATION_CASE} moved by known motions (REAL):")
            coregistration.update({version: {"trials": []} for version in versions})
            for seed in range(args.coregistration_trials):
                for version, code in versions.items():
                    trial = coregistration_trial(code, brats, seed, child_env)
                    coregistration[version]["trials"].append(trial)
                    print(f"  {version:<17} seed {seed}: {json.dumps(trial)}", flush=True)
            for record in coregistration.values():
                ok = [t for t in record["trials"] if "tre_mm" in t]
                record["median_seconds"] = median_of(ok, "seconds")
                record["median_tre_mm"] = (
                    {
                        sequence: round(statistics.median(t["tre_mm"][sequence] for t in ok), 3)
                        for sequence in ok[0]["tre_mm"]
                    }
                    if ok
                    else None
                )
                record["worst_tre_mm"] = max(max(t["tre_mm"].values()) for t in ok) if ok else None
        elif args.coregistration_trials:
            skipped["coregistration"] = f"{brats} not found"
    finally:
        if args.baseline:
            remove_worktree(root / "baseline")
        shutil.rmtree(root, ignore_errors=True)

    yes = lambda ok: "n/a" if ok is None else "PASS" if ok else "FAIL"  # noqa: E731
    print(f"medians per case (targets: compute <= {TARGET_SECONDS:g} s on 2 cores, peak <= 3 GB):")
    print(
        f"  {'case':<30} {'code':<17} {'wall s':>7} {'compute s':>9} {'peak MiB':>9} "
        f"{'Dice':>6}   compute / memory"
    )
    for case, result in results.items():
        label = f"{case} [{SYNTHETIC_LABEL}]" if result["synthetic_phantom"] else case
        for version, summary in result["versions"].items():
            m, v = summary["medians"], summary["targets"]
            print(
                f"  {label:<30} {version:<17} {fmt(m['wall_seconds'], 7, 2)} "
                f"{fmt(m['compute_seconds'], 9, 2)} {fmt(m['peak_rss_mib'], 9, 0)} "
                f"{fmt(m['reference_dice'], 6, 3)}   {yes(v['compute_within_target'])} / "
                f"{yes(v['memory_within_target'])}  ({v['runs_ok']} runs ok)"
            )
    for case, result in results.items():
        for version, summary in result["versions"].items():
            steps = summary["medians"]["step_seconds"]
            if steps:
                print(
                    f"  {case} ({version}) step medians: "
                    + ", ".join(f"{n} {s:.2f}" for n, s in steps.items())
                )
    for version, record in coregistration.items():
        print(
            f"  co-registration ({version}): median TRE {record['median_tre_mm']} mm, "
            f"worst {record['worst_tre_mm']} mm, median {record['median_seconds']} s"
        )

    report = {
        "benchmark": "prepare one visit end to end: python -m inference prepare VISIT --out DIR",
        "targets": {
            "compute_seconds": TARGET_SECONDS,
            "cores": 2,
            "peak_bytes": TARGET_PEAK_BYTES,
            "note": "compute = qc.json seconds (seven steps); wall = whole child command",
        },
        "versions": {
            version: "this checkout" if code == REPO else "a temporary git worktree"
            for version, code in versions.items()
        },
        "data_folder": str(data_folder()),
        "synthetic_phantom_cases": [c for c in results if c == SYNTHETIC],
        "data_labels": {case: DESCRIPTIONS[case] for case in results},
        **env,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "skipped": skipped,
        "cases": results,
        "coregistration": {
            "case": f"{COREGISTRATION_CASE} (REAL), T1/T2/FLAIR moved by known rigid motions "
            "(<= 5 degrees per axis, <= 6 mm per axis)",
            "versions": coregistration,
        },
    }
    write_results(args.out, report)
    print(f"wrote {args.out}")
    failed = any(
        t["exit_code"] != 0
        for r in results.values()
        for summary in r["versions"].values()
        for t in summary["trials"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
