"""Command line: ``python -m inference COMMAND ...``.

Every command prints JSON to stdout, a short human summary and progress to stderr, and exits 0 on
success, 2 on bad input with a one-line message (no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from collections.abc import Sequence as SequenceOf
from pathlib import Path
from typing import Any

from inference.errors import InputError

EXIT_BAD_INPUT = 2


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress(started: float) -> Callable[[str], None]:
    return lambda step: _say(f"  [{time.perf_counter() - started:5.1f} s] {step}")


def _series_map(pairs: list[str] | None) -> dict[str, str]:
    overrides = {}
    for pair in pairs or []:
        description, sep, sequence = pair.rpartition("=")
        if not sep or not description:
            raise InputError(f"--series-map '{pair}': expected DESCRIPTION=SEQUENCE")
        overrides[description] = sequence
    return overrides


def cmd_prepare(args: argparse.Namespace) -> dict[str, Any]:
    from inference.imaging.io import read_visit  # noqa: PLC0415 - keep `--help` fast
    from inference.imaging.preprocess import prepare_visit, write_prepared  # noqa: PLC0415

    started = time.perf_counter()
    visit = read_visit(args.visit_dir, series_overrides=_series_map(args.series_map))
    _say(
        f"prepare {visit.folder.name}: "
        + ", ".join(f"{s.long_name} <- {n}" for s, n in visit.sources.items())
    )
    prepared = prepare_visit(visit, progress=_progress(started))
    write_prepared(prepared, args.out)
    mask_step = next(r for r in prepared.records if r.name == "brain_mask")
    dice = mask_step.metrics.get("reference_dice")
    _say(
        f"done in {time.perf_counter() - started:.1f} s: "
        f"brain {mask_step.metrics['volume_ml']:.0f} mL"
        + (f" (Dice {dice:.3f} against the reference mask)" if dice is not None else "")
        + f", skull-stripped input: {'yes' if mask_step.metrics['skull_stripped_input'] else 'no'}"
        + f" -> {args.out}"
    )
    return {"out": str(args.out), **prepared.qc}


def cmd_register(args: argparse.Namespace) -> dict[str, Any]:
    from inference.imaging.io import output_folder, read_visit, write_text  # noqa: PLC0415
    from inference.imaging.register import register_visits, save_transform  # noqa: PLC0415
    from inference.labels import Sequence  # noqa: PLC0415

    overrides = _series_map(args.series_map)
    fixed = read_visit(args.fixed_visit_dir, required=(), series_overrides=overrides)
    moving = read_visit(args.moving_visit_dir, required=(), series_overrides=overrides)
    sequence = Sequence(args.sequence) if args.sequence else None
    registration = register_visits(
        fixed.images, moving.images, fixed_mask=fixed.brain_mask, sequence=sequence
    )
    report = {
        "fixed": str(args.fixed_visit_dir),
        "moving": str(args.moving_visit_dir),
        **registration.as_dict(),
    }
    with output_folder(args.out) as staging:
        save_transform(registration.result.transform, staging / "transform.tfm")
        write_text(json.dumps(report, indent=2) + "\n", staging / "registration.json")
    quality = registration.quality
    verdict = "ok" if registration.ok else "FLAGGED: " + "; ".join(quality["problems"])
    _say(
        f"registered {moving.folder.name} -> {fixed.folder.name} "
        f"on {registration.sequence.long_name} "
        f"in {registration.result.seconds:.1f} s: rotation "
        f"{report['transform']['rotation_deg']:.1f} deg, "
        f"correlation {quality['correlation_before']:.2f}"
        f" -> {quality['correlation_after']:.2f} ({verdict})"
    )
    return {"out": str(args.out), **report}


def cmd_measure(args: argparse.Namespace) -> dict[str, Any]:
    from inference.imaging.io import read_label_map, read_probability_map, write_text  # noqa: PLC0415
    from inference.measurement.measure import MeasureSettings, measure  # noqa: PLC0415

    labels, convention = read_label_map(args.labels)
    probabilities = read_probability_map(args.prob) if args.prob else None
    settings = MeasureSettings(
        connectivity=args.connectivity,
        min_lesion_ml=args.min_lesion_ml,
        max_targets=args.max_targets,
    )
    result = {
        "labels": str(args.labels),
        "label_convention": convention.value,
        **measure(labels, probabilities=probabilities, settings=settings).as_dict(),
    }
    if args.out:
        write_text(json.dumps(result, indent=2) + "\n", args.out)
    lesions = result["lesions"]
    if result["volumes_ml"]["WT"] == 0:
        _say("no tumour labelled: the map is all background (measured as zero, not an error)")
    _say(
        f"WT {result['volumes_ml']['WT']:.2f} mL, TC {result['volumes_ml']['TC']:.2f} mL, "
        f"ET {result['volumes_ml']['ET']:.2f} mL; {len(lesions)} lesion(s), "
        f"{result['measurable_count']} measurable, sum of products "
        f"{result['sum_of_products_mm2']:.0f} mm2"
    )
    return result


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from inference.imaging.io import read_label_map  # noqa: PLC0415
    from inference.measurement.evaluate import evaluate  # noqa: PLC0415

    prediction, _ = read_label_map(args.pred)
    truth, _ = read_label_map(args.truth)
    scores = evaluate(prediction, truth)
    _say(
        ", ".join(
            f"{region.value} Dice {s.dice:.3f} HD95 {s.hd95_mm:.1f} mm"
            for region, s in scores.items()
        )
    )
    return {region.value: score.as_dict() for region, score in scores.items()}


def cmd_assess(args: argparse.Namespace) -> dict[str, Any]:
    from inference.imaging.io import read_json  # noqa: PLC0415
    from inference.response.rano import assess, parse_timeline  # noqa: PLC0415

    timeline = parse_timeline(read_json(args.timeline, what="timeline"))
    result = assess(timeline).as_dict()
    for row in result["visits"]:
        confirmed = {True: " confirmed", False: " preliminary", None: ""}[row["confirmed"]]
        _say(f"{row['id']}: {row['category']}{confirmed}")
    _say(f"progression visit: {result['progression_visit'] or 'none'}")
    return result


def cmd_growth(args: argparse.Namespace) -> dict[str, Any]:
    from inference.imaging.io import read_json  # noqa: PLC0415
    from inference.response.growth import analyse  # noqa: PLC0415

    data = read_json(args.series, what="growth series")
    if args.forecast_on is not None and isinstance(data, dict):
        data = {**data, "forecast_on": args.forecast_on}
    result = analyse(data)
    for series in result["series"]:
        trend = series["trend"]
        doubling = trend["doubling_time_days"]
        halving = trend["halving_time_days"]
        summary = (
            f"doubling {doubling} d"
            if doubling
            else f"halving {halving} d"
            if halving
            else (trend["note"] or "no trend")
        )
        _say(f"{series['name']}: {summary}")
    return result


def cmd_phantom(args: argparse.Namespace) -> dict[str, Any]:
    from inference.segmentation.phantoms import Scenario, make_patient, write_patient  # noqa: PLC0415

    if args.visits < 1:
        raise InputError("--visits must be at least 1")
    try:
        scenario = Scenario(args.scenario) if args.scenario else None
    except ValueError as error:
        choices = ", ".join(s.value for s in Scenario)
        raise InputError(f"unknown scenario '{args.scenario}' (choose {choices})") from error
    patient = make_patient(args.seed, visits=args.visits, scenario=scenario)
    _say(f"SYNTHETIC PHANTOM patient {args.seed}: {patient.scenario.value}, {args.visits} visit(s)")
    folders = write_patient(patient, args.out, progress=lambda line: _say(f"  {line}"))
    truths = [json.loads((folder / "truth.json").read_text()) for folder in folders]
    return {
        "data": "SYNTHETIC PHANTOM",
        "seed": args.seed,
        "scenario": patient.scenario.value,
        "visits": [
            {
                "folder": str(folder),
                "expected_response": t["expected_response"],
                "volumes_ml": t["volumes_ml"],
                "sum_of_products_mm2": t["sum_of_products_mm2"],
            }
            for folder, t in zip(folders, truths, strict=True)
        ],
    }


def cmd_segment(args: argparse.Namespace) -> dict[str, Any]:
    from inference.imaging.io import find_segmentable_files  # noqa: PLC0415
    from inference.imaging.preprocess import is_prepared  # noqa: PLC0415
    from inference.segmentation.segment import (  # noqa: PLC0415
        DEFAULT_WEIGHTS,
        Segmenter,
        segment_folder,
        write_segmentation,
    )

    started = time.perf_counter()
    if not is_prepared(args.visit_dir):
        find_segmentable_files(args.visit_dir)  # refuse before a model is loaded
    segmenter = Segmenter(args.weights or DEFAULT_WEIGHTS, runtime=args.runtime, cache=args.cache)
    _say(
        f"model {segmenter.card.get('name')} {segmenter.card.get('version')} "
        f"(sha256 {str(segmenter.card.get('weights_sha256'))[:12]}) "
        f"loaded in {segmenter.load_seconds:.1f} s, runs on {segmenter.runtime}"
    )
    result = segment_folder(
        args.visit_dir, segmenter, flips=not args.no_flips, progress=_progress(started)
    )
    report = write_segmentation(result, segmenter, args.out, source=str(args.visit_dir))
    volumes = result.volumes_ml
    _say(f"sequences: {result.details['sequences']}")
    _say(
        ", ".join(
            f"{r} not measured"
            if v["volume_ml"] is None
            else f"{r} {v['volume_ml']:.2f} mL [{v['low_ml']:.2f}-{v['high_ml']:.2f}]"
            for r, v in volumes.items()
        )
        + f"; segmented in {result.seconds['total']:.1f} s -> {args.out}"
    )
    return {"out": str(args.out), **report}


def cmd_export_onnx(args: argparse.Namespace) -> dict[str, Any]:
    """Build (or find) the ONNX export of a weights folder in the cache; print its record."""
    from inference.segmentation import runtime  # noqa: PLC0415
    from inference.segmentation.segment import DEFAULT_WEIGHTS, Segmenter  # noqa: PLC0415

    segmenter = Segmenter(args.weights or DEFAULT_WEIGHTS, runtime="onnx", cache=args.cache)
    sha = str(segmenter.card.get("weights_sha256"))
    path, record = runtime.onnx_paths(args.cache or _default_cache(), sha)
    _say(f"{'built' if segmenter.model is not None else 'found'} {path}")
    return {"onnx": str(path), **json.loads(record.read_text())}


def _default_cache() -> Path:
    from inference.segmentation.segment import DEFAULT_CACHE  # noqa: PLC0415

    return DEFAULT_CACHE


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from inference.segmentation.train import TrainSettings, run_training  # noqa: PLC0415

    settings = TrainSettings(
        out=args.out,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        batch=args.batch,
        learning_rate=args.learning_rate,
        patience=args.patience,
        seed=args.seed,
        resume=args.resume,
        init_weights=args.init_weights,
        sequence_dropout=args.sequence_dropout,
        tumour_share=args.tumour_share,
    )
    _say(f"training -> {args.out} (checkpoints in {args.out / 'checkpoints'})")
    summary = run_training(
        folders=list(args.data),
        phantom_patients=args.phantoms,
        phantom_first_seed=args.phantom_first_seed,
        cache=args.cache,
        workers=args.workers,
        settings=settings,
        synthetic_volumes=args.synthetic,
        synthetic_first_seed=args.synthetic_first_seed,
        say=_say,
    )
    return {"out": str(args.out), **summary}


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from inference.demo import run_demo  # noqa: PLC0415

    return run_demo(Path(args.out), seed=args.seed, say=_say)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="preprocess one visit (seven steps, qc.json)")
    prepare.add_argument("visit_dir", type=Path)
    prepare.add_argument("--out", type=Path, required=True)
    prepare.add_argument(
        "--series-map",
        action="append",
        metavar="DESCRIPTION=SEQUENCE",
        help="DICOM SeriesDescription to t1, t1c, t2, flair or ignore (repeatable)",
    )
    prepare.set_defaults(run=cmd_prepare)

    register = commands.add_parser("register", help="register a follow-up visit to an earlier one")
    register.add_argument("fixed_visit_dir", type=Path)
    register.add_argument("moving_visit_dir", type=Path)
    register.add_argument("--out", type=Path, required=True)
    register.add_argument("--sequence", choices=["t1", "t1c", "t2", "flair"])
    register.add_argument("--series-map", action="append", metavar="DESCRIPTION=SEQUENCE")
    register.set_defaults(run=cmd_register)

    measure = commands.add_parser("measure", help="volumes, lesions, RANO products of a label map")
    measure.add_argument("--labels", type=Path, required=True)
    measure.add_argument("--prob", type=Path, help="4-class probability map (soft volumes)")
    measure.add_argument("--out", type=Path, help="write measurements.json here too")
    measure.add_argument("--connectivity", type=int, choices=[6, 18, 26], default=26)
    measure.add_argument("--min-lesion-ml", type=float, default=0.05)
    measure.add_argument("--max-targets", type=int, default=3)
    measure.set_defaults(run=cmd_measure)

    evaluate = commands.add_parser("evaluate", help="Dice, HD95, volume error per BraTS region")
    evaluate.add_argument("--pred", type=Path, required=True)
    evaluate.add_argument("--truth", type=Path, required=True)
    evaluate.set_defaults(run=cmd_evaluate)

    phantom = commands.add_parser("phantom", help="a synthetic patient with exact ground truth")
    phantom.add_argument("--out", type=Path, required=True)
    phantom.add_argument("--seed", type=int, required=True)
    phantom.add_argument("--visits", type=int, default=4)
    phantom.add_argument("--scenario", help="progression, partial_response, stable, ...")
    phantom.set_defaults(run=cmd_phantom)

    assess = commands.add_parser("assess", help="RANO 2.0 response of a timeline (JSON, - = stdin)")
    assess.add_argument("timeline", help="timeline JSON file (schema in the README)")
    assess.set_defaults(run=cmd_assess)

    growth = commands.add_parser("growth", help="growth rates, doubling time, forecast (JSON)")
    growth.add_argument("series", help="volume series JSON file (schema in the README)")
    growth.add_argument("--forecast-on", help="date YYYY-MM-DD for the forecast")
    growth.set_defaults(run=cmd_growth)

    segment = commands.add_parser("segment", help="segment a visit (raw or prepared)")
    segment.add_argument("visit_dir", type=Path)
    segment.add_argument("--out", type=Path, required=True)
    segment.add_argument("--weights", type=Path, help="weights folder (default: shipped model)")
    segment.add_argument("--no-flips", action="store_true", help="skip test-time flipping")
    segment.add_argument(
        "--runtime",
        choices=("auto", "keras", "onnx"),
        default="auto",
        help="where the forward pass runs (auto: ONNX Runtime on CPU, Keras on JAX)",
    )
    segment.add_argument("--cache", type=Path, help="folder of ONNX exports (default: ~/.cache)")
    segment.set_defaults(run=cmd_segment)

    export = commands.add_parser(
        "export-onnx", help="export the segmenter to ONNX (checked against Keras), cached"
    )
    export.add_argument("--weights", type=Path, help="weights folder (default: shipped model)")
    export.add_argument("--cache", type=Path, help="folder of ONNX exports (default: ~/.cache)")
    export.set_defaults(run=cmd_export_onnx)

    train = commands.add_parser("train", help="train the segmenter (phantoms or your own data)")
    train.add_argument("data", type=Path, nargs="*", help="folders of labelled visits")
    train.add_argument("--out", type=Path, required=True, help="weights folder to write")
    train.add_argument("--phantoms", type=int, default=0, help="phantom patients (4 visits each)")
    train.add_argument("--phantom-first-seed", type=int, default=100_000)
    train.add_argument(
        "--synthetic",
        type=int,
        default=0,
        help="sim-to-real volumes (segmentation/synthesis.py)",
    )
    train.add_argument("--synthetic-first-seed", type=int, default=300_000)
    train.add_argument(
        "--sequence-dropout", type=float, default=0.0, help="share of patches with sequences zeroed"
    )
    train.add_argument(
        "--tumour-share", type=float, default=0.8, help="share of patches centred on tumour"
    )
    train.add_argument("--cache", type=Path, default=Path("var/train-cache"))
    train.add_argument("--workers", type=int, default=2, help="processes preparing cases")
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--steps", type=int, default=150, help="batches per epoch")
    train.add_argument("--batch", type=int, default=16)
    train.add_argument("--learning-rate", type=float, default=2e-3)
    train.add_argument("--patience", type=int, default=8, help="early stopping (epochs)")
    train.add_argument("--seed", type=int, default=20261127)
    train.add_argument("--resume", action="store_true", help="continue from checkpoints/last.keras")
    train.add_argument(
        "--init-weights",
        type=Path,
        help="start from a .weights.h5 or a weights folder (fine-tune, new schedule)",
    )
    train.set_defaults(run=cmd_train)

    demo = commands.add_parser("demo", help="prepare and register a synthetic MNI152 visit")
    demo.add_argument("--out", type=Path, default=Path("var/demo"))
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: SequenceOf[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.run(args)
    except InputError as error:
        _say(f"error: {error.message}")
        return EXIT_BAD_INPUT
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
