"""Benchmark: measurement precision on SYNTHETIC PHANTOM patients with exact truth.

What it measures (issue "Ground truth and measurement", precision targets), per phantom patient
(``inference.segmentation.phantoms.make_patient(seed)``, seeds 1000.., scenarios cycling):

* volume accuracy through the chain: the ground-truth label map of a scan acquired at 1 mm
  (scan A) and of one acquired with 1 x 1 x 5 mm slices (scan C) goes through the preparation's
  label path (reorient to LPS, nearest-neighbour onto the 1 mm grid of the T1 post-contrast box:
  ``inference.imaging.preprocess.reorient`` + ``resample_to_reference``), is measured
  (``inference.measurement.measure.measure``) and compared with the continuous shapes' volumes in
  ``truth.json``. Target: median absolute error <= 2 % (WT, TC, ET; lesions >= 1 mL);
* scan-rescan: the same tumour imaged again with a new pose, noise and bias (scan B), through the
  same chain; the equivalent-sphere diameter difference A - B. Target: within +-0.1 mm for 95 %
  of tumours >= 20 mm (WT), and whole-tumour volume coefficient of variation <= 1 %. Reported
  for hard (label-map) volumes and for soft (partial-volume) volumes: each label's indicator
  resampled linearly onto the 1 mm grid, read as a probability map (``measure(probabilities=)``).
  These are ground-truth labels through the geometry chain, not a segmenter's output;
* bidimensional product of each measurable lesion against the truth's (continuous shape in the
  scanner's axial plane). Target: within 5 %;
* lesion tracking: every follow-up visit registered to the baseline with
  ``inference.imaging.register.register_visits`` (T1 post-contrast), its lesion map resampled into
  the baseline nearest-neighbour, ``inference.measurement.lesions.track_lesions`` over the visits;
  a track is correct when each true lesion keeps one track id at every visit where it exists and a
  new lesion gets a new id. Target: 100 % correct.

Rerun
    .venv/bin/python bench/bench_precision.py   # 20 patients -> bench/results/precision.json
    .venv/bin/python bench/bench_precision.py --patients 3 --out /tmp/precision.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from common import REPO, environment, write_results

sys.path.insert(0, str(REPO))

from inference.imaging.preprocess import reorient, resample_to_reference
from inference.imaging.register import register_visits, resample
from inference.labels import Sequence
from inference.measurement.lesions import track_lesions
from inference.measurement.measure import equivalent_diameter_mm, measure
from inference.segmentation.phantoms import Scenario, make_patient, render_visit

SYNTHETIC = "SYNTHETIC PHANTOM"


def through_chain(
    images: dict[Sequence, sitk.Image], seg: sitk.Image
) -> tuple[sitk.Image, sitk.Image]:
    """The label map as preparation carries it (LPS, nearest-neighbour onto the 1 mm T1c grid),
    and its partial-volume (soft) version: each label's indicator resampled linearly onto the
    same grid, as a 4-class probability map."""
    oriented, _ = reorient(images)
    identity = {s: sitk.Euler3DTransform() for s in oriented}
    native = sitk.DICOMOrient(seg, "LPS")
    _, labels, _ = resample_to_reference(
        {Sequence.T1C: oriented[Sequence.T1C]}, identity, labels={"seg": native}
    )
    grid = labels["seg"]
    channels = [
        sitk.Resample(
            sitk.Cast(native == label, sitk.sitkFloat32),
            grid,
            sitk.Transform(),
            sitk.sitkLinear,
            1.0 if label == 0 else 0.0,
            sitk.sitkFloat32,
        )
        for label in range(4)
    ]
    return grid, sitk.Compose(channels)


def relative_error(found: float, truth: float) -> float | None:
    return None if truth <= 0 else (found - truth) / truth


def patient_figures(seed: int, scenario: Scenario, visits: int) -> dict[str, Any]:
    patient = make_patient(seed, visits=visits, scenario=scenario)
    record: dict[str, Any] = {"seed": seed, "scenario": scenario.value}
    scans = {
        "A_1mm": render_visit(patient, 0, rescan=0, thick_slices=False),
        "B_1mm_rescan": render_visit(patient, 0, rescan=1, thick_slices=False),
        "C_5mm": render_visit(patient, 0, rescan=2, thick_slices=True),
    }
    measured = {}
    for name, (images, seg, truth) in scans.items():
        chain, soft = through_chain(images, seg)
        measured[name] = measure(chain, probabilities=soft)
        volumes = measured[name].volumes_ml
        soft_volumes = measured[name].soft_volumes_ml or {}
        record[name] = {
            "truth_ml": truth["volumes_ml"],
            "measured_ml": {k: round(v, 4) for k, v in volumes.items()},
            "soft_ml": {k: round(v, 4) for k, v in soft_volumes.items()},
            "soft_relative_error": {
                k: relative_error(soft_volumes[k], truth["volumes_ml"][k])
                for k in ("WT", "TC", "ET")
            },
            "relative_error": {
                k: relative_error(volumes[k], truth["volumes_ml"][k]) for k in ("WT", "TC", "ET")
            },
            "products": _match_products(measured[name], truth),
        }
    truth_a = scans["A_1mm"][2]
    a, b = measured["A_1mm"], measured["B_1mm_rescan"]
    record["rescan"] = {
        "true_wt_diameter_mm": round(
            (6 * truth_a["volumes_ml"]["WT"] * 1000 / np.pi) ** (1 / 3), 3
        ),
        "diameter_difference_mm": {
            k: a.equivalent_diameter_mm[k] - b.equivalent_diameter_mm[k] for k in ("WT", "TC", "ET")
        },
        "soft_diameter_difference_mm": {
            k: equivalent_diameter_mm(a.soft_volumes_ml[k])
            - equivalent_diameter_mm(b.soft_volumes_ml[k])
            for k in ("WT", "TC", "ET")
        }
        if a.soft_volumes_ml and b.soft_volumes_ml
        else None,
        "wt_ml": [a.volumes_ml["WT"], b.volumes_ml["WT"]],
        "soft_wt_ml": [
            (a.soft_volumes_ml or {}).get("WT"),
            (b.soft_volumes_ml or {}).get("WT"),
        ],
    }
    record["tracking"] = _tracking(patient, visits)
    return record


def _match_products(measured: Any, truth: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for true_lesion in truth["lesions"]:
        if not true_lesion["measurable"]:
            continue
        centre = np.array(true_lesion["centroid_mm"])
        nearest = min(
            measured.lesions,
            key=lambda x: np.linalg.norm(np.array(x.centroid_mm) - centre),
            default=None,
        )
        if nearest is None:
            out.append({"track": true_lesion["track"], "found": False})
            continue
        product = nearest.bidimensional.product_mm2
        out.append(
            {
                "track": true_lesion["track"],
                "found": True,
                "truth_mm2": true_lesion["product_mm2"],
                "measured_mm2": round(product, 2),
                "relative_error": relative_error(product, true_lesion["product_mm2"]),
            }
        )
    return out


def _tracking(patient: Any, visits: int) -> dict[str, Any]:
    rendered = [render_visit(patient, v) for v in range(visits)]
    baseline_images = rendered[0][0]
    maps, truths = [], []
    base_measure = measure(rendered[0][1])
    reference = base_measure.lesion_map
    assert reference is not None
    for visit, (images, seg, truth) in enumerate(rendered):
        lesion_map = measure(seg).lesion_map
        assert lesion_map is not None
        if visit == 0:
            maps.append(lesion_map)
        else:
            registration = register_visits(baseline_images, images, sequence=Sequence.T1C)
            maps.append(resample(lesion_map, reference, registration.result.transform, labels=True))
        truths.append(truth)
    history = track_lesions(maps)
    # Map each true lesion to our track through its centroid (in each visit's own space).
    assignments: dict[str, set[str]] = {}
    for visit, (entries, truth) in enumerate(zip(history, truths, strict=True)):
        measured = measure(rendered[visit][1])
        for true_lesion in truth["lesions"]:
            if "centroid_mm" not in true_lesion or not measured.lesions:
                continue
            centre = np.array(true_lesion["centroid_mm"])
            nearest = min(
                measured.lesions, key=lambda x: np.linalg.norm(np.array(x.centroid_mm) - centre)
            )
            track = next(
                (e.track for e in entries if e.present and e.component == nearest.id), None
            )
            assignments.setdefault(true_lesion["track"], set()).add(str(track))
    ours = [next(iter(v)) for v in assignments.values() if len(v) == 1]
    correct = all(len(v) == 1 and "None" not in v for v in assignments.values()) and len(
        set(ours)
    ) == len(ours)
    return {
        "visits": visits,
        "assignments": {k: sorted(v) for k, v in assignments.items()},
        "statuses": [[e.as_dict()["status"] for e in entries] for entries in history],
        "correct": correct,
    }


def _share(errors: list[float], limit: float) -> str:
    return f"{sum(abs(e) <= limit for e in errors)}/{len(errors)}"


def _median_abs(values: list[float | None]) -> float | None:
    present = [abs(v) for v in values if v is not None]
    return statistics.median(present) if present else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--visits", type=int, default=3, help="visits per patient for tracking")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "precision.json")
    args = parser.parse_args()
    scenarios = list(Scenario)
    started = time.perf_counter()
    patients = []
    print(
        f"bench_precision [{SYNTHETIC}]: {args.patients} patients, "
        f"{args.visits} visits each for tracking"
    )
    for number in range(args.patients):
        seed = 1000 + number
        t0 = time.perf_counter()
        record = patient_figures(seed, scenarios[number % len(scenarios)], args.visits)
        record["seconds"] = round(time.perf_counter() - t0, 1)
        patients.append(record)
        wt = record["A_1mm"]["relative_error"]["WT"]
        print(
            f"  seed {seed} {record['scenario']:<18} WT err A {100 * wt:+.2f} % "
            f"C {100 * (record['C_5mm']['relative_error']['WT'] or 0):+.2f} %  "
            f"rescan dWT {record['rescan']['diameter_difference_mm']['WT']:+.3f} mm  "
            f"tracking {'ok' if record['tracking']['correct'] else 'WRONG'} "
            f"({record['seconds']} s)",
            flush=True,
        )
    summary: dict[str, Any] = {}
    for scan in ("A_1mm", "B_1mm_rescan", "C_5mm"):
        summary[scan] = {
            region: _median_abs(
                [
                    p[scan]["relative_error"][region]
                    for p in patients
                    if p[scan]["truth_ml"][region] >= 1.0
                ]
            )
            for region in ("WT", "TC", "ET")
        }
    big = [p for p in patients if p["rescan"]["true_wt_diameter_mm"] >= 20.0]
    differences = [p["rescan"]["diameter_difference_mm"]["WT"] for p in big]
    within = sum(abs(d) <= 0.1 for d in differences)
    cvs = [float(np.std(p["rescan"]["wt_ml"], ddof=1) / np.mean(p["rescan"]["wt_ml"])) for p in big]
    products = [
        x["relative_error"]
        for p in patients
        for scan in ("A_1mm", "B_1mm_rescan", "C_5mm")
        for x in p[scan]["products"]
        if x.get("found")
    ]
    products_1mm = [
        x["relative_error"]
        for p in patients
        for scan in ("A_1mm", "B_1mm_rescan")
        for x in p[scan]["products"]
        if x.get("found")
    ]
    tracking_ok = sum(p["tracking"]["correct"] for p in patients)
    soft_differences = [p["rescan"]["soft_diameter_difference_mm"]["WT"] for p in big]
    soft_cvs = [
        float(np.std(p["rescan"]["soft_wt_ml"], ddof=1) / np.mean(p["rescan"]["soft_wt_ml"]))
        for p in big
    ]
    for scan in ("A_1mm", "B_1mm_rescan", "C_5mm"):
        summary[f"{scan}_soft"] = {
            region: _median_abs(
                [
                    p[scan]["soft_relative_error"][region]
                    for p in patients
                    if p[scan]["truth_ml"][region] >= 1.0
                ]
            )
            for region in ("WT", "TC", "ET")
        }
    summary.update(
        {
            "volume_median_abs_error_target": 0.02,
            "rescan_tumours_20mm_or_more": len(big),
            "rescan_wt_diameter_within_0.1mm": f"{within}/{len(big)}",
            "rescan_wt_diameter_abs_p95_mm": float(np.percentile(np.abs(differences), 95))
            if differences
            else None,
            "rescan_soft_wt_diameter_within_0.1mm": _share(soft_differences, 0.1),
            "rescan_soft_wt_diameter_abs_p95_mm": float(np.percentile(np.abs(soft_differences), 95))
            if soft_differences
            else None,
            "rescan_soft_wt_cv_median": statistics.median(soft_cvs) if soft_cvs else None,
            "rescan_soft_wt_cv_max": max(soft_cvs) if soft_cvs else None,
            "rescan_wt_cv_median": statistics.median(cvs) if cvs else None,
            "rescan_wt_cv_max": max(cvs) if cvs else None,
            "products_within_5pct_all_scans": _share(products, 0.05),
            "products_within_5pct_1mm_scans": _share(products_1mm, 0.05),
            "product_median_abs_error": _median_abs(products),
            "tracking_correct": f"{tracking_ok}/{len(patients)}",
        }
    )
    print(f"summary [{SYNTHETIC}]")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    result = {
        "benchmark": "measurement precision on phantoms (issue: ground truth and measurement)",
        "data": SYNTHETIC,
        "environment": environment(),
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summary,
        "patients": patients,
    }
    write_results(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
