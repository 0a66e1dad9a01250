"""Segmenter accuracy on held-out SYNTHETIC PHANTOM visits, through the real pipeline.

Held-out patients use seeds the training never saw (training: 100000-100049; here 900000+ and
910000+). Each visit is rendered as a raw BraTS-2023 folder, prepared by ``prepare_visit`` (the
real seven steps, not the training shortcut), segmented by the shipped model with test-time flips,
and scored in the raw T1 post-contrast geometry against the phantom's exact label map.

- Dice and HD95 per region (ET, TC, WT), per visit; patient means with a 95 % bootstrap
  confidence interval over patients (2,000 resamples).
- Small lesions: patients carrying three extra enhancing lesions of 0.1-1 mL (radius 3-6.5 mm);
  lesion-wise detection sensitivity for enhancing lesions of 0.1-1 mL (a true ET component is
  detected when any predicted ET voxel touches it) and false-positive ET lesions per visit
  (predicted ET components of >= 10 voxels touching no true ET).

    .venv/bin/python bench/bench_segment_accuracy.py [--patients 12] [--small 8]
    (``--stage prepare`` only renders and prepares; results are cached under var/bench-segment)

Writes bench/results/segment_accuracy.json and the metrics of inference/weights/model.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from common import REPO, environment, write_results
from scipy import ndimage

sys.path.insert(0, str(REPO))

from inference.imaging.io import output_folder, read_label_map, read_visit, write_image
from inference.imaging.preprocess import prepare_visit, read_prepared, write_prepared
from inference.labels import TumorLabel
from inference.measurement.evaluate import evaluate
from inference.segmentation import phantoms

WORK = REPO / "var" / "bench-segment"
SUFFIX = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "t2f": "t2f", "flair": "t2f"}


def plan(patients: int, small: int) -> list[dict[str, Any]]:
    """Held-out visits: visits 0 and 2 of ``patients`` patients (all six scenarios), and the
    baseline of ``small`` patients with three small satellite lesions each."""
    cases = []
    for seed in range(900_000, 900_000 + patients):
        cases.extend({"seed": seed, "visit": v, "satellites": 0, "set": "main"} for v in (0, 2))
    cases.extend(
        {"seed": seed, "visit": 0, "satellites": 3, "set": "small"}
        for seed in range(910_000, 910_000 + small)
    )
    for case in cases:
        case["name"] = f"PHANTOM-{case['seed']:06d}-{case['visit']:03d}"
    return cases


def prepare_case(case: dict[str, Any]) -> Path:
    raw = WORK / "raw" / case["name"]
    prepared = WORK / "prepared" / case["name"]
    if (prepared / "qc.json").exists():
        return prepared
    patient = phantoms.make_patient(case["seed"], visits=4)
    if case["satellites"]:
        patient = phantoms.with_satellites(patient, case["satellites"], seed=case["seed"])
    if not (raw / "truth.json").exists():
        images, seg, truth = phantoms.render_visit(patient, case["visit"])
        with output_folder(raw) as staging:
            for sequence, image in images.items():
                suffix = SUFFIX[sequence.value]
                write_image(image, staging / f"{case['name']}-{suffix}.nii.gz")
            write_image(seg, staging / f"{case['name']}-seg.nii.gz")
            (staging / "truth.json").write_text(json.dumps(truth, indent=2))
    started = time.perf_counter()
    write_prepared(prepare_visit(read_visit(raw)), prepared)
    print(f"  prepared {case['name']} in {time.perf_counter() - started:.1f} s", flush=True)
    return prepared


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    labelled, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    return labelled, int(count)


def lesion_detection(prediction: np.ndarray, truth: np.ndarray, voxel_ml: float) -> dict[str, Any]:
    true_et, predicted_et = truth == TumorLabel.ET, prediction == TumorLabel.ET
    labelled, count = components(true_et)
    lesions = []
    for index in range(1, count + 1):
        lesion = labelled == index
        lesions.append(
            {
                "volume_ml": round(float(lesion.sum()) * voxel_ml, 4),
                "detected": bool((predicted_et & lesion).any()),
            }
        )
    near_truth = ndimage.binary_dilation(true_et, iterations=1)
    predicted, found = components(predicted_et)
    sizes = np.bincount(predicted.ravel(), minlength=found + 1)
    false_positive = sum(
        1
        for index in range(1, found + 1)
        if sizes[index] >= 10 and not (near_truth & (predicted == index)).any()
    )
    return {"lesions": lesions, "false_positive_lesions": false_positive}


def bootstrap(values: list[float], seed: int = 0, draws: int = 2000) -> list[float]:
    array = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, len(array), (draws, len(array)))].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    by_patient: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_patient.setdefault(row["seed"], []).append(row)
    for region in ("WT", "TC", "ET"):
        per_patient = [
            float(np.mean([r["scores"][region]["dice"] for r in group]))
            for group in by_patient.values()
        ]
        hd = [r["scores"][region]["hd95_mm"] for r in rows]
        out[region] = {
            "dice_mean": round(float(np.mean(per_patient)), 4),
            "dice_ci95": bootstrap(per_patient),
            "dice_median_visit": round(
                float(np.median([r["scores"][region]["dice"] for r in rows])), 4
            ),
            "dice_min_visit": round(float(min(r["scores"][region]["dice"] for r in rows)), 4),
            "hd95_mm_median": round(float(np.median(hd)), 2),
            "hd95_mm_mean": round(float(np.mean(hd)), 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=12)
    parser.add_argument("--small", type=int, default=8)
    parser.add_argument("--stage", choices=["prepare", "all"], default="all")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--no-card", action="store_true", help="do not update model.json")
    args = parser.parse_args()
    cases = plan(args.patients, args.small)
    for case in cases:
        prepare_case(case)
    if args.stage == "prepare":
        return
    from inference.segmentation.segment import DEFAULT_WEIGHTS, Segmenter

    weights = args.weights or DEFAULT_WEIGHTS
    segmenter = Segmenter(weights)
    rows = []
    for case in cases:
        raw, prepared = WORK / "raw" / case["name"], WORK / "prepared" / case["name"]
        truth_image, _ = read_label_map(raw / f"{case['name']}-seg.nii.gz")
        geometry = sitk.ReadImage(str(raw / f"{case['name']}-t1c.nii.gz"))
        images, mask, _qc = read_prepared(prepared)
        result = segmenter.segment(images, mask, geometry=geometry, flips=True)
        scores = evaluate(result.labels, truth_image)
        prediction = sitk.GetArrayFromImage(result.labels)
        truth = sitk.GetArrayFromImage(truth_image)
        voxel_ml = float(np.prod(truth_image.GetSpacing())) / 1000
        truth_json = json.loads((raw / "truth.json").read_text())
        row = {
            **{k: case[k] for k in ("name", "seed", "visit", "set")},
            "scenario": truth_json["scenario"],
            "spacing_mm": truth_json["spacing_mm"],
            "scores": {region.value: s.as_dict() for region, s in scores.items()},
            "volumes_ml": result.volumes_ml,
            "true_volumes_ml": truth_json["volumes_ml"],
            **lesion_detection(prediction, truth, voxel_ml),
            "seconds": result.seconds,
        }
        rows.append(row)
        print(
            f"{case['name']} ({row['scenario']}, {row['spacing_mm'][2]:g} mm): "
            + ", ".join(f"{r} {row['scores'][r]['dice']:.3f}" for r in ("WT", "TC", "ET"))
            + f"; FP lesions {row['false_positive_lesions']}",
            flush=True,
        )
    main_rows = [r for r in rows if r["set"] == "main"]
    small_lesions = [
        lesion for r in rows for lesion in r["lesions"] if 0.1 <= lesion["volume_ml"] <= 1.0
    ]
    detected = sum(lesion["detected"] for lesion in small_lesions)
    result = {
        "data": "SYNTHETIC PHANTOM (held-out seeds, never used in training)",
        "environment": environment(weights=str(weights), model=segmenter.identity),
        "method": __doc__.split("\n\n")[1],
        "main_set": {
            "patients": args.patients,
            "visits": len(main_rows),
            "thick_slice_visits": sum(r["spacing_mm"][2] > 1.5 for r in main_rows),
            **summarise(main_rows),
            "isotropic_only": summarise([r for r in main_rows if r["spacing_mm"][2] <= 1.5]),
        },
        "small_lesions": {
            "enhancing_lesions_0.1_to_1_ml": len(small_lesions),
            "detected": detected,
            "sensitivity": round(detected / len(small_lesions), 4) if small_lesions else None,
            "false_positive_lesions_per_visit": round(
                float(np.mean([r["false_positive_lesions"] for r in rows])), 3
            ),
            "visits": len(rows),
        },
        "targets": {"WT": 0.95, "TC": 0.93, "ET": 0.90, "small_lesion_sensitivity": 0.90},
        "visits": rows,
    }
    write_results(REPO / "bench" / "results" / "segment_accuracy.json", result)
    summary = {
        "data": result["data"],
        "command": "bench/bench_segment_accuracy.py",
        "dice": {r: result["main_set"][r] for r in ("WT", "TC", "ET")},
        "small_lesions": result["small_lesions"],
        "visits": len(main_rows),
        "patients": args.patients,
    }
    if not args.no_card:
        card_path = weights / "model.json"
        card = json.loads(card_path.read_text())
        card["metrics"] = {**card.get("metrics", {}), "held_out_phantoms": summary}
        card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
