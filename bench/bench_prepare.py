"""Benchmark: preparing one visit end to end (seven steps, four sequences): time and peak memory.

What it measures
    For each case and repeat, ``python -m inference prepare VISIT --out TMPDIR`` in a fresh
    subprocess: the wall seconds of the whole command (interpreter start-up, read, prepare,
    write), the ``seconds`` field of the written ``qc.json`` (the seven steps only), the child's
    peak resident memory (``/usr/bin/time -f %M`` when present, else a Python wrapper that reports
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at exit), and the brain-mask Dice against the
    case's reference mask where ``qc.json`` has one. Target: <= 15 s on 2 CPU cores, peak memory
    <= 3 GB (taken as 3e9 bytes).

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
    .venv/bin/python bench/bench_prepare.py               # 3 repeats -> bench/results/prepare.json
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

from common import REPO, data_folder, write_results
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
TARGET_SECONDS = 15.0
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


def run_once(visit: Path, out: Path, rss_file: Path, env: dict[str, str]) -> dict[str, Any]:
    """One ``prepare`` in a fresh child: wall seconds, qc.json figures, peak RSS."""
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
    child = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
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
    skipped: dict[str, str] = {}
    try:
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
            f"  {'case':<30} {'rep':>3} {'wall s':>7} {'compute s':>9} {'peak MiB':>9} "
            f"{'Dice':>6} {'mask mL':>8}"
        )
        for case, visit in folders.items():
            label = f"{case} [{SYNTHETIC_LABEL}]" if case == SYNTHETIC else case
            trials = []
            for repeat in range(args.repeats):
                out = root / "prepared" / f"{case}-{repeat}"
                trial = run_once(visit, out, root / f"rss-{case}-{repeat}.txt", child_env)
                trial["repeat"] = repeat
                trials.append(trial)
                shutil.rmtree(out, ignore_errors=True)
                if trial["exit_code"] != 0:
                    print(
                        f"  {label:<30} {repeat:>3} FAILED (exit {trial['exit_code']}): "
                        + " | ".join(trial["error"])
                    )
                    continue
                print(
                    f"  {label:<30} {repeat:>3} {trial['wall_seconds']:>7.2f} "
                    f"{trial['compute_seconds']:>9.2f} {fmt(trial['peak_rss_mib'], 9, 0)} "
                    f"{fmt(trial['reference_dice'], 6, 3)} {fmt(trial['brain_volume_ml'], 8, 0)}",
                    flush=True,
                )
            ok = [t for t in trials if t["exit_code"] == 0]
            medians = {
                "wall_seconds": median_of(ok, "wall_seconds"),
                "compute_seconds": median_of(ok, "compute_seconds"),
                "peak_rss_mib": median_of(ok, "peak_rss_mib"),
                "reference_dice": median_of(ok, "reference_dice"),
            }
            steps = sorted({name for t in ok for name in t["step_seconds"]})
            medians["step_seconds"] = {
                name: round(
                    statistics.median(
                        t["step_seconds"][name] for t in ok if name in t["step_seconds"]
                    ),
                    3,
                )
                for name in steps
            }
            peak_values = [t["peak_rss_mib"] for t in ok if t["peak_rss_mib"] is not None]
            # None where no run succeeded (nothing to judge).
            verdict = {
                "runs_ok": f"{len(ok)}/{len(trials)}",
                "compute_within_target": within(medians["compute_seconds"], TARGET_SECONDS),
                "wall_within_target": within(medians["wall_seconds"], TARGET_SECONDS),
                "worst_peak_rss_mib": max(peak_values) if peak_values else None,
                "memory_within_target": within(
                    max(peak_values) * 2**20 if peak_values else None, TARGET_PEAK_BYTES
                ),
            }
            results[case] = {
                "visit": str(visit)
                if case != SYNTHETIC
                else "temporary folder (synthetic_visit(7))",
                "description": DESCRIPTIONS[case],
                "synthetic_phantom": case == SYNTHETIC,
                "trials": trials,
                "medians": medians,
                "targets": verdict,
            }
    finally:
        shutil.rmtree(root, ignore_errors=True)

    yes = lambda ok: "n/a" if ok is None else "PASS" if ok else "FAIL"  # noqa: E731
    print(f"medians per case (targets: <= {TARGET_SECONDS:g} s on 2 cores, peak <= 3 GB):")
    print(
        f"  {'case':<30} {'wall s':>7} {'compute s':>9} {'peak MiB':>9} {'Dice':>6}   "
        "compute / wall / memory"
    )
    for case, result in results.items():
        m, v = result["medians"], result["targets"]
        label = f"{case} [{SYNTHETIC_LABEL}]" if result["synthetic_phantom"] else case
        print(
            f"  {label:<30} {fmt(m['wall_seconds'], 7, 2)} {fmt(m['compute_seconds'], 9, 2)} "
            f"{fmt(m['peak_rss_mib'], 9, 0)} {fmt(m['reference_dice'], 6, 3)}   "
            f"{yes(v['compute_within_target'])} / {yes(v['wall_within_target'])} / "
            f"{yes(v['memory_within_target'])}  ({v['runs_ok']} runs ok)"
        )
    for case, result in results.items():
        steps = result["medians"]["step_seconds"]
        if steps:
            print(f"  {case} step medians: " + ", ".join(f"{n} {s:.2f}" for n, s in steps.items()))

    report = {
        "benchmark": "prepare one visit end to end: python -m inference prepare VISIT --out DIR",
        "targets": {
            "seconds": TARGET_SECONDS,
            "cores": 2,
            "peak_bytes": TARGET_PEAK_BYTES,
            "note": "compute = qc.json seconds (seven steps); wall = whole child command",
        },
        "data_folder": str(data_folder()),
        "synthetic_phantom_cases": [c for c in results if c == SYNTHETIC],
        "data_labels": {case: DESCRIPTIONS[case] for case in results},
        **env,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "skipped": skipped,
        "cases": results,
    }
    write_results(args.out, report)
    print(f"wrote {args.out}")
    failed = any(t["exit_code"] != 0 for r in results.values() for t in r["trials"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
