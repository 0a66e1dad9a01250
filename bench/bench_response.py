"""End-to-end response benchmark on SYNTHETIC PHANTOM patients: segmenter + measurement + lesion
tracking + RANO 2.0 engine, against the same engine on the phantoms' exact truth.

Held-out patients (seeds 920000 + i, never used in training, 100000-100049, nor by the segment
bench, 900000-900011 and 910000-910007), the six scenarios in turn (12 patients: each twice),
five visits each.

Stage 1 (slow, cached under var/bench-response/<seed>/): every visit rendered as a raw BraTS-2023
folder (``phantoms.write_patient``), prepared by the real ``prepare_visit``, segmented by the
shipped model (``inference.segmentation.segment.Segmenter``, test-time flips unless ``--no-flips``)
back in the visit's raw T1 post-contrast geometry, and measured
(``inference.measurement.measure.measure``); each follow-up registered to the baseline on T1
post-contrast (``register_visits``), its lesion map resampled nearest-neighbour onto the
baseline's, and the lesions tracked (``inference.measurement.lesions.track_lesions``). Two
timelines in the ``assess`` input format of DESIGN.md are written: ``measured.json`` (the
pipeline's tracks and diameters) and ``truth.json`` (the phantom's continuous-shape diameters by
true track), with ``details.json`` (volumes and sums of products measured vs truth, seconds per
stage). A patient whose two timelines exist is not redone unless ``--recompute``.

Timelines: RANO 2.0 2-D criteria, newly diagnosed, baseline = the first visit (the
post-radiotherapy scan; radiotherapy ended 28 days before), confirmation of progression on,
no steroids, clinically stable, no non-target disease outside the listed lesions. Both are
assembled by ``inference.response.timeline.build_timeline``, the service's own assembly: an
enhancing tumour on its core lesions, a non-enhancing one on its T2/FLAIR lesions (tracked the same
way); every track seen since the baseline listed at every visit (0 x 0 once vanished), a track that
first shows after the baseline a new lesion at that visit (measurable when any such lesion is).
Timelines cached before 2026-12-06 were assembled by the benchmark's own simpler rule (new
lesions flagged at every later visit and never summed): rerun with ``--recompute``.

Stage 2 (fast): ``inference.response.rano.assess`` on both timelines. The known outcome of a
follow-up visit is the engine's category on the TRUTH timeline; the pipeline's answer is its
category on the MEASURED timeline. Reported over follow-up visits: confusion matrix, per-class
precision and recall, balanced accuracy (mean recall over the classes in the truth; target
>= 0.95), agreement of ``confirmed`` per visit and of ``progression_visit`` per patient, and a
sanity line per patient: the truth timeline's categories next to the phantom's
``expected_response`` (plain thresholds, no confirmation).

    .venv/bin/python bench/bench_response.py                  # 12 patients, about 1-2 hours
    .venv/bin/python bench/bench_response.py --patients 1     # one patient, a few minutes
    .venv/bin/python bench/bench_response.py --assess-only    # stage 2 from the cache only

Writes bench/results/response.json (``--out``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from common import REPO, environment, write_results

sys.path.insert(0, str(REPO))

from inference.imaging.io import read_visit, write_image
from inference.imaging.preprocess import prepare_visit, read_prepared, write_prepared
from inference.imaging.register import register_visits, resample
from inference.labels import Sequence
from inference.measurement.lesions import TrackEntry, track_lesions
from inference.measurement.measure import Measurements, measure
from inference.response.timeline import (
    LesionKind,
    LesionSize,
    PatientRecord,
    VisitRecord,
    build_timeline,
    t2_flair_tracks,
)
from inference.segmentation import phantoms
from inference.segmentation.phantoms import Scenario

SYNTHETIC = "SYNTHETIC PHANTOM"
WORK = REPO / "var" / "bench-response"
FIRST_SEED = 920_000
VISITS = 5
RADIOTHERAPY_GAP_DAYS = 28
BALANCED_ACCURACY_TARGET = 0.95
ORDER = ["pre_baseline", "baseline", "CR", "PR", "MR", "SD", "PD", "indeterminate"]


def plan(patients: int) -> list[tuple[int, Scenario]]:
    """Seeds 920000 + i with the six scenarios in turn (12 patients: each scenario twice)."""
    scenarios = list(Scenario)
    return [(FIRST_SEED + i, scenarios[i % len(scenarios)]) for i in range(patients)]


# Stage 1 ------------------------------------------------------------------------------------


def _patient_record(patient: phantoms.Patient, baseline_on: str) -> PatientRecord:
    radiotherapy_end = dt.date.fromisoformat(baseline_on) - dt.timedelta(RADIOTHERAPY_GAP_DAYS)
    return PatientRecord(
        criteria="rano2-2d",
        presentation=_presentation(patient),
        setting="newly_diagnosed",
        radiotherapy_end_on=radiotherapy_end,
        confirm_pd=True,
        physiologic_steroid_max_mg=0.75,
        antiangiogenic_therapy=False,
    )


def _presentation(patient: phantoms.Patient) -> str:
    return "ce" if patient.lesions[0].enhancing else "non-ce"


def truth_timeline(patient: phantoms.Patient, truths: list[dict[str, Any]]) -> dict[str, Any]:
    """The phantom's own timeline: continuous-shape diameters of each true track, assembled as
    the service assembles its measurements (``inference.response.timeline.build_timeline``). The
    true lesions are the enhancing core of an enhancing tumour, the T2/FLAIR abnormality of a
    non-enhancing one (no enhancing volume is known: None)."""
    kind = LesionKind.CORE if _presentation(patient) == "ce" else LesionKind.T2_FLAIR
    visits, history = [], []
    for index, truth in enumerate(truths):
        sizes = [
            LesionSize(number, x["longest_mm"], x["perpendicular_mm"], None, x["measurable"])
            for number, x in enumerate(truth["lesions"], start=1)
        ]
        history.append(
            [
                TrackEntry(x["track"], True, number, 0.0, None)
                for number, x in enumerate(truth["lesions"], start=1)
            ]
        )
        volumes = truth["volumes_ml"]
        visits.append(
            VisitRecord(
                id=f"v{index}",
                acquired_on=dt.date.fromisoformat(truth["acquired_on"]),
                lesions={kind: sizes},
                whole_ml=volumes["WT"],
                enhancing_ml=volumes["ET"],
            )
        )
    histories = {LesionKind.CORE: [[] for _ in truths], kind: history}
    return build_timeline(_patient_record(patient, truths[0]["acquired_on"]), visits, histories)


def _sizes(lesions: list[Any]) -> list[LesionSize]:
    return [
        LesionSize(
            x.id,
            x.bidimensional.longest_mm,
            x.bidimensional.perpendicular_mm,
            x.et_volume_ml,
            x.bidimensional.measurable,
        )
        for x in lesions
    ]


def measured_timeline(
    patient: phantoms.Patient,
    truths: list[dict[str, Any]],
    measurements: list[Measurements],
    histories: dict[LesionKind, list[list[TrackEntry]]],
) -> dict[str, Any]:
    """The pipeline's timeline: our tracks, with the diameters of the lesion each one is at,
    assembled by ``inference.response.timeline.build_timeline`` as the service does."""
    visits = [
        VisitRecord(
            id=f"v{index}",
            acquired_on=dt.date.fromisoformat(truth["acquired_on"]),
            lesions={
                LesionKind.CORE: _sizes(measured.lesions),
                LesionKind.T2_FLAIR: _sizes(measured.t2_flair_lesions),
            },
            whole_ml=measured.volumes_ml["WT"],
            enhancing_ml=measured.volumes_ml["ET"],
        )
        for index, (truth, measured) in enumerate(zip(truths, measurements, strict=True))
    ]
    record = _patient_record(patient, truths[0]["acquired_on"])
    return build_timeline(record, visits, histories)


def _track_match(
    truth: dict[str, Any], measured: Measurements, entries: list[Any]
) -> dict[str, Any]:
    """Which of our tracks each true lesion is at (nearest measured lesion's centroid, in the
    visit's own scanner space): for reading disagreements, not used by the engine."""
    out: dict[str, Any] = {}
    track_of = {e.component: e.track for e in entries if e.present}
    for lesion in truth["lesions"]:
        if "centroid_mm" not in lesion or not measured.lesions:
            out[lesion["track"]] = None
            continue
        centre = np.array(lesion["centroid_mm"])
        nearest = min(
            measured.lesions, key=lambda x: float(np.linalg.norm(np.array(x.centroid_mm) - centre))
        )
        distance = float(np.linalg.norm(np.array(nearest.centroid_mm) - centre))
        out[lesion["track"]] = {
            "track": track_of.get(nearest.id),
            "distance_mm": round(distance, 2),
        }
    return out


def run_patient(
    seed: int, scenario: Scenario, segmenter: Any, *, flips: bool, recompute: bool
) -> dict[str, Any]:
    """Stage 1 for one patient; returns its details (also written to details.json)."""
    folder = WORK / str(seed)
    cached = [folder / "measured.json", folder / "truth.json", folder / "details.json"]
    if not recompute and all(p.exists() for p in cached[:2]):
        details: dict[str, Any] = (
            json.loads(cached[2].read_text()) if cached[2].exists() else {"seed": seed}
        )
        if details.get("flips", flips) == flips:
            print(f"  seed {seed}: cached in {folder.relative_to(REPO)}", flush=True)
            return details
        print(f"  seed {seed}: cached with flips={details.get('flips')}; recomputing", flush=True)
    started = time.perf_counter()
    patient = phantoms.make_patient(seed, visits=VISITS, scenario=scenario)
    raw = folder / "raw"
    names = [f"PHANTOM-{seed:05d}-{v:03d}" for v in range(VISITS)]
    if recompute or not all((raw / n / "truth.json").exists() for n in names):
        phantoms.write_patient(patient, raw)
    truths = [json.loads((raw / n / "truth.json").read_text()) for n in names]
    seconds: list[dict[str, float]] = []
    measurements: list[Measurements] = []
    visits_images: list[dict[Sequence, sitk.Image]] = []
    for visit, name in enumerate(names):
        timing: dict[str, float] = {"render": truths[visit].get("render_seconds", 0.0)}
        t0 = time.perf_counter()
        raw_visit = read_visit(raw / name)
        prepared_folder = folder / "prepared" / name
        if recompute or not (prepared_folder / "qc.json").exists():
            write_prepared(prepare_visit(raw_visit), prepared_folder)
        images, mask, _qc = read_prepared(prepared_folder)
        t1 = time.perf_counter()
        result = segmenter.segment(
            images, mask, geometry=raw_visit.images[Sequence.T1C], flips=flips
        )
        write_image(result.labels, folder / "seg" / f"{name}-seg.nii.gz")
        t2 = time.perf_counter()
        measurements.append(measure(result.labels))
        t3 = time.perf_counter()
        timing.update(
            prepare=round(t1 - t0, 2), segment=round(t2 - t1, 2), measure=round(t3 - t2, 2)
        )
        seconds.append(timing)
        visits_images.append(raw_visit.images)
        print(
            f"    {name}: prepare {timing['prepare']:.0f} s, segment {timing['segment']:.0f} s, "
            f"measure {timing['measure']:.0f} s; WT {measurements[-1].volumes_ml['WT']:.1f} mL "
            f"(truth {truths[visit]['volumes_ml']['WT']:.1f})",
            flush=True,
        )
    reference = measurements[0].lesion_map
    t2_reference = measurements[0].t2_flair_lesion_map
    assert reference is not None
    assert t2_reference is not None
    maps, t2_maps = [reference], [t2_reference]
    registrations: list[dict[str, Any] | None] = [None]
    for visit in range(1, VISITS):
        t0 = time.perf_counter()
        registration = register_visits(
            visits_images[0], visits_images[visit], sequence=Sequence.T1C
        )
        transform = registration.result.transform
        lesion_map = measurements[visit].lesion_map
        t2_map = measurements[visit].t2_flair_lesion_map
        assert lesion_map is not None
        assert t2_map is not None
        maps.append(resample(lesion_map, reference, transform, labels=True))
        t2_maps.append(resample(t2_map, t2_reference, transform, labels=True))
        seconds[visit]["register"] = round(time.perf_counter() - t0, 2)
        registrations.append(
            {
                "ok": registration.ok,
                "rotation_deg": registration.as_dict()["transform"]["rotation_deg"],
                "correlation_after": registration.quality["correlation_after"],
                "problems": registration.quality["problems"],
            }
        )
    t0 = time.perf_counter()
    history = track_lesions(maps)
    histories = {
        LesionKind.CORE: history,
        LesionKind.T2_FLAIR: t2_flair_tracks(track_lesions(t2_maps)),
    }
    track_seconds = round(time.perf_counter() - t0, 2)
    measured = measured_timeline(patient, truths, measurements, histories)
    truth = truth_timeline(patient, truths)
    details = {
        "data": SYNTHETIC,
        "seed": seed,
        "scenario": scenario.value,
        "presentation": measured["presentation"],
        "flips": flips,
        "model": segmenter.identity,
        "expected_response": [t["expected_response"] for t in truths],
        "visits": [
            {
                "id": f"v{visit}",
                "spacing_mm": truths[visit]["spacing_mm"],
                "volumes_ml": {k: round(v, 3) for k, v in m.volumes_ml.items()},
                "true_volumes_ml": truths[visit]["volumes_ml"],
                "sum_of_products_mm2": round(m.sum_of_products_mm2, 2),
                "true_sum_of_products_mm2": truths[visit]["sum_of_products_mm2"],
                "lesions": [x.as_dict() for x in m.lesions],
                "true_lesions": truths[visit]["lesions"],
                "tracks": [e.as_dict() for e in entries],
                "true_lesion_at_track": _track_match(truths[visit], m, entries),
                "registration": registrations[visit],
                "seconds": seconds[visit],
            }
            for visit, (m, entries) in enumerate(zip(measurements, history, strict=True))
        ],
        "track_seconds": track_seconds,
        "seconds": round(time.perf_counter() - started, 1),
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    # The two timelines last: their presence marks the patient as done.
    (folder / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    (folder / "measured.json").write_text(json.dumps(measured, indent=2) + "\n")
    print(f"  seed {seed} ({scenario.value}): {details['seconds']:.0f} s", flush=True)
    return details


# Stage 2 ------------------------------------------------------------------------------------


def _ordered(categories: set[str]) -> list[str]:
    return [c for c in ORDER if c in categories] + sorted(categories - set(ORDER))


def metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Confusion matrix (truth rows x measured columns), per-class precision and recall,
    balanced accuracy, over follow-up visits."""
    classes = _ordered({r["truth"] for r in rows} | {r["measured"] for r in rows})
    matrix = {t: dict.fromkeys(classes, 0) for t in classes}
    for row in rows:
        matrix[row["truth"]][row["measured"]] += 1
    per_class = {}
    for c in classes:
        true_total = sum(matrix[c].values())
        predicted_total = sum(matrix[t][c] for t in classes)
        per_class[c] = {
            "truth_count": true_total,
            "measured_count": predicted_total,
            "precision": round(matrix[c][c] / predicted_total, 4) if predicted_total else None,
            "recall": round(matrix[c][c] / true_total, 4) if true_total else None,
        }
    recalls = [v["recall"] for v in per_class.values() if v["recall"] is not None]
    agree = sum(r["truth"] == r["measured"] for r in rows)
    confirmed = sum(r["truth_confirmed"] == r["measured_confirmed"] for r in rows)
    return {
        "follow_up_visits": len(rows),
        "classes": classes,
        "confusion_matrix": matrix,
        "per_class": per_class,
        "balanced_accuracy": round(float(np.mean(recalls)), 4) if recalls else None,
        "balanced_accuracy_target": BALANCED_ACCURACY_TARGET,
        "accuracy": round(agree / len(rows), 4) if rows else None,
        "confirmed_agreement": f"{confirmed}/{len(rows)}",
    }


def _relative_error(found: float, truth: float) -> float | None:
    return None if truth <= 0 else (found - truth) / truth


def measurement_summary(details: list[dict[str, Any]]) -> dict[str, Any]:
    """Median absolute relative error of the pipeline's volumes and sums of products."""
    out: dict[str, Any] = {}
    for key in ("WT", "TC", "ET"):
        errors = [
            _relative_error(v["volumes_ml"][key], v["true_volumes_ml"][key])
            for d in details
            for v in d.get("visits", [])
            if v["true_volumes_ml"][key] >= 1.0
        ]
        present = [abs(e) for e in errors if e is not None]
        out[f"{key}_volume_median_abs_error"] = (
            round(statistics.median(present), 4) if present else None
        )
    spd = [
        _relative_error(v["sum_of_products_mm2"], v["true_sum_of_products_mm2"])
        for d in details
        for v in d.get("visits", [])
    ]
    present = [abs(e) for e in spd if e is not None]
    out["sum_of_products_median_abs_error"] = (
        round(statistics.median(present), 4) if present else None
    )
    out["sum_of_products_visits"] = len(present)
    return out


def assess_patients(
    patients: list[tuple[int, Scenario]], details: dict[int, dict[str, Any]]
) -> dict[str, Any] | None:
    try:
        from inference.response.rano import assess, parse_timeline
    except Exception as error:  # the engine may be mid-edit or absent
        print(
            f"stage 2 skipped: cannot import inference.response.rano ({type(error).__name__}: "
            f"{error}). The timelines are cached in {WORK.relative_to(REPO)}/<seed>/; rerun "
            "with --assess-only once the engine exists.",
            flush=True,
        )
        return None
    per_patient, follow_ups, failures = [], [], []
    for seed, scenario in patients:
        folder = WORK / str(seed)
        if not (folder / "measured.json").exists() or not (folder / "truth.json").exists():
            failures.append({"seed": seed, "error": "no cached timelines (run stage 1)"})
            continue
        answers = {}
        try:
            for kind in ("truth", "measured"):
                data = json.loads((folder / f"{kind}.json").read_text())
                answers[kind] = assess(parse_timeline(data)).as_dict()
        except Exception as error:  # report it and go on with the other patients
            failures.append({"seed": seed, "error": f"{type(error).__name__}: {error}"})
            print(f"  seed {seed}: engine failed: {type(error).__name__}: {error}", flush=True)
            continue
        # Recomputed from the cached truth.json files with today's rule (the stored field may
        # predate a fix to phantoms.expected_responses).
        raw = sorted((folder / "raw").glob("PHANTOM-*/truth.json"))
        expected = (
            phantoms.expected_responses([json.loads(path.read_text()) for path in raw])
            if raw
            else details.get(seed, {}).get("expected_response")
        )
        rows = []
        for index, (t, m) in enumerate(
            zip(answers["truth"]["visits"], answers["measured"]["visits"], strict=True)
        ):
            row = {
                "seed": seed,
                "scenario": scenario.value,
                "visit": t["id"],
                "expected_response": expected[index] if expected else None,
                "truth": t["category"],
                "measured": m["category"],
                "truth_confirmed": t["confirmed"],
                "measured_confirmed": m["confirmed"],
                "truth_relative_change": t["relative_change"],
                "measured_relative_change": m["relative_change"],
                "truth_reasons": t["reasons"],
                "measured_reasons": m["reasons"],
            }
            rows.append(row)
            if t["category"] not in ("pre_baseline", "baseline"):
                follow_ups.append(row)
        per_patient.append(
            {
                "seed": seed,
                "scenario": scenario.value,
                "presentation": details.get(seed, {}).get("presentation"),
                "truth_progression_visit": answers["truth"]["progression_visit"],
                "measured_progression_visit": answers["measured"]["progression_visit"],
                "progression_visit_agrees": answers["truth"]["progression_visit"]
                == answers["measured"]["progression_visit"],
                "rows": rows,
                "pipeline": _pipeline_rows(details.get(seed, {})),
            }
        )
    summary = metrics(follow_ups)
    agree_pv = sum(p["progression_visit_agrees"] for p in per_patient)
    summary["progression_visit_agreement"] = f"{agree_pv}/{len(per_patient)}"
    summary["patients_assessed"] = len(per_patient)
    summary["patients_failed"] = failures
    return {"summary": summary, "patients": per_patient}


def _pipeline_rows(details: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "visit": v["id"],
            "spacing_mm": v["spacing_mm"],
            "sum_of_products_mm2": v["sum_of_products_mm2"],
            "true_sum_of_products_mm2": v["true_sum_of_products_mm2"],
            "volumes_ml": {k: v["volumes_ml"][k] for k in ("WT", "TC", "ET")},
            "true_volumes_ml": {k: v["true_volumes_ml"][k] for k in ("WT", "TC", "ET")},
            "registration_ok": (v["registration"] or {}).get("ok"),
            "seconds": v["seconds"],
        }
        for v in details.get("visits", [])
    ]


def print_report(result: dict[str, Any]) -> None:
    summary, patients = result["summary"], result["patients"]
    print(f"\nper patient [{SYNTHETIC}]: categories v0..v4 (truth engine / expected / measured)")
    for p in patients:
        truth = " ".join(f"{r['truth']:<9}" for r in p["rows"])
        expected = " ".join(f"{r['expected_response'] or '-':<9}" for r in p["rows"])
        measured = " ".join(f"{r['measured']:<9}" for r in p["rows"])
        print(f"  {p['seed']} {p['scenario']:<18} {p['presentation'] or '':<6} truth    {truth}")
        print(f"  {'':<33} expected {expected}")
        print(
            f"  {'':<33} measured {measured}  progression {p['truth_progression_visit']} / "
            f"{p['measured_progression_visit']}"
        )
    classes = summary["classes"]
    print(f"\nconfusion matrix [{SYNTHETIC}], follow-up visits (rows truth, columns measured)")
    print("  " + f"{'':<14}" + "".join(f"{c:>14}" for c in classes))
    for t in classes:
        counts = summary["confusion_matrix"][t]
        print("  " + f"{t:<14}" + "".join(f"{counts[m]:>14}" for m in classes))
    print(f"\n  {'class':<14}{'truth n':>9}{'measured n':>12}{'precision':>11}{'recall':>9}")
    for c, v in summary["per_class"].items():
        precision = "-" if v["precision"] is None else f"{v['precision']:.3f}"
        recall = "-" if v["recall"] is None else f"{v['recall']:.3f}"
        print(f"  {c:<14}{v['truth_count']:>9}{v['measured_count']:>12}{precision:>11}{recall:>9}")
    ba = summary["balanced_accuracy"]
    verdict = "" if ba is None else ("(meets" if ba >= BALANCED_ACCURACY_TARGET else "(misses")
    print(
        f"\n  balanced accuracy {ba} {verdict} target {BALANCED_ACCURACY_TARGET})"
        f"; accuracy {summary['accuracy']}; confirmed agrees {summary['confirmed_agreement']}; "
        f"progression visit agrees {summary['progression_visit_agreement']} patients"
    )
    for failure in summary["patients_failed"]:
        print(f"  seed {failure['seed']}: NOT ASSESSED: {failure['error']}")
    disagreements = [
        r
        for p in patients
        for r in p["rows"]
        if r["truth"] != r["measured"] or r["truth_confirmed"] != r["measured_confirmed"]
    ]
    if disagreements:
        print(f"\ndisagreements ({len(disagreements)}):")
    for r in disagreements:
        print(
            f"  {r['seed']} {r['scenario']} {r['visit']}: truth {r['truth']} "
            f"(confirmed {r['truth_confirmed']}, change {r['truth_relative_change']}) vs "
            f"measured {r['measured']} (confirmed {r['measured_confirmed']}, "
            f"change {r['measured_relative_change']})"
        )
        for reason in r["truth_reasons"]:
            print(f"      truth:    {reason}")
        for reason in r["measured_reasons"]:
            print(f"      measured: {reason}")


# Main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=12)
    parser.add_argument("--no-flips", action="store_true", help="segment without test-time flips")
    parser.add_argument("--recompute", action="store_true", help="redo stage 1 for every patient")
    parser.add_argument("--assess-only", action="store_true", help="stage 2 from the cache only")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "response.json")
    args = parser.parse_args()
    flips = not args.no_flips
    patients = plan(args.patients)
    started = time.perf_counter()
    env = environment()  # the load average before this run's own work
    print(
        f"bench_response [{SYNTHETIC}]: {len(patients)} patients (seeds {patients[0][0]}-"
        f"{patients[-1][0]}), {VISITS} visits each, flips {'on' if flips else 'off'}",
        flush=True,
    )
    details: dict[int, dict[str, Any]] = {}
    if args.assess_only:
        for seed, _ in patients:
            path = WORK / str(seed) / "details.json"
            if path.exists():
                details[seed] = json.loads(path.read_text())
    else:
        from inference.segmentation.segment import DEFAULT_WEIGHTS, Segmenter

        segmenter = Segmenter(args.weights or DEFAULT_WEIGHTS)
        print(f"  model loaded in {segmenter.load_seconds:.1f} s", flush=True)
        for seed, scenario in patients:
            details[seed] = run_patient(
                seed, scenario, segmenter, flips=flips, recompute=args.recompute
            )
    stage1_seconds = round(time.perf_counter() - started, 1)
    assessed = assess_patients(patients, details)
    if assessed is None:
        return 0
    print_report(assessed)
    stage_seconds: dict[str, list[float]] = {}
    for d in details.values():
        for v in d.get("visits", []):
            for stage, value in v["seconds"].items():
                stage_seconds.setdefault(stage, []).append(value)
    models = {json.dumps(d.get("model"), sort_keys=True) for d in details.values()}
    result = {
        "benchmark": "end-to-end RANO 2.0 response: segmenter + measurement + tracking + engine",
        "data": f"{SYNTHETIC} (held-out seeds {FIRST_SEED}+, never used in training)",
        "environment": {
            **env,
            "models": [json.loads(m) for m in sorted(models)],
            "flips": sorted({d.get("flips") for d in details.values()}, key=str),
        },
        "method": __doc__.split("\n\n")[1:5],
        "stage1_seconds_this_run": stage1_seconds,
        "seconds_per_visit_median": {
            k: round(statistics.median(v), 2) for k, v in stage_seconds.items()
        },
        "seconds_per_patient": {str(s): d.get("seconds") for s, d in details.items()},
        "summary": assessed["summary"],
        "measurement": measurement_summary(list(details.values())),
        "patients": assessed["patients"],
    }
    write_results(args.out, result)
    print(f"\nmeasurement [{SYNTHETIC}]: {result['measurement']}")
    print(f"seconds per visit (median): {result['seconds_per_visit_median']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
