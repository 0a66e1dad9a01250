"""Segmentation on REAL public scans, scored against the reference labels each case has.

Every case in ../shared/data (``TRACKER_TEST_DATA``) goes through the service's own preparation
(``read_visit`` + ``prepare_visit``, which carries the folder's label map onto the prepared 1 mm
grid nearest-neighbour) and is segmented there; scores per region (WT, TC, ET) come from
``inference.measurement.evaluate``: Dice, HD95 (mm) and volume error (mL).

- ``tcga-fg-6692-sri24``: against the five-algorithm consensus (``*_fusion-mav_seg``, majority
  vote of five BraTS 2020 algorithms); each of the five algorithms is scored against the same
  consensus too, so the model can be placed inside or outside the spread of BraTS algorithms.
- ``tcga-du-7294-sri24``: non-enhancing glioma, consensus of labels 1 and 2 only: WT and TC Dice;
  any enhancing tumour called is a false positive (mL). The five algorithms likewise.
- ``brats2015-expert/pat0001..0003``: expert labels (``OTMultiClass``, BraTS 2015: 1 necrosis,
  2 oedema, 3 non-enhancing, 4 enhancing; TC = 1, 3, 4), FLAIR and T1c only (already z-scored).
- ``brats-met-00110-000``: a metastasis (RAS on disk): whole-lesion Dice, our WT against the
  AURORA model's labels 1 + 2.
- ``open-ms-cross-sectional/patient26``: a tumour-free brain (multiple sclerosis): false-positive
  ET and WT volume and connected components.
- ``brats-gli-00001-000`` and ``tcga-fg-6692-raw``: no reference; volumes only.

Summary: medians over the labelled glioma cases (fg-6692, du-7294 for WT and TC only, the three
BraTS 2015 cases) against WT >= 0.85, TC >= 0.80, ET >= 0.75, and on patient26 ET FP <= 0.5 mL,
WT FP <= 2 mL.

    .venv/bin/python bench/bench_segment_real.py [--weights DIR [--tag NAME]]... [--no-flips]
        [--cases NAME ...] [--reprepare]

Several ``--weights`` run side by side into one results file (one column each, tagged with the
model card's version unless ``--tag`` names them). Prepared visits are cached under
var/bench-segment/real/<case>, keyed on the inputs and the preparation code; ``--reprepare``
redoes them all. Overlays (T1c and FLAIR with the prediction beside the reference) go to
var/bench-segment/overlays/ and are not committed: they show real patients' scans.

Writes bench/results/segment_real.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import SimpleITK as sitk
from common import REPO, data_folder, environment, write_results
from scipy import ndimage

mpl.use("Agg")
import matplotlib.pyplot as plt

sys.path.insert(0, str(REPO))

from inference.imaging.io import read_image, read_label_map, read_visit, write_text
from inference.imaging.preprocess import PREPARED_NAMES, prepare_visit, write_prepared
from inference.labels import ALL_SEQUENCES, LabelConvention, Region, Sequence, TumorLabel
from inference.measurement.evaluate import evaluate, same_grid

WORK = REPO / "var" / "bench-segment"
OUT = REPO / "bench" / "results" / "segment_real.json"
# Bump when the cache's layout changes; the key also covers the inputs and the preparation code.
CACHE_FORMAT = 1
PREPARATION_CODE = ("io.py", "preprocess.py", "register.py", "atlas.py", "validate.py", "labels.py")
# Colour-blind-safe (Okabe-Ito): NCR vermillion, ED sky blue, ET yellow; MS lesions bluish green.
COLOURS = {1: (0.84, 0.37, 0.0), 2: (0.34, 0.71, 0.91), 3: (0.94, 0.89, 0.26)}
MS_COLOUR = (0.0, 0.62, 0.45)
TARGETS = {"WT": 0.85, "TC": 0.80, "ET": 0.75}
FP_TARGETS_ML = {"ET": 0.5, "WT": 2.0}
REGIONS = ("WT", "TC", "ET")


@dataclass(frozen=True)
class Case:
    name: str  # folder under the data folder
    kind: str  # glioma, metastasis, tumour-free, unlabelled
    reference_kind: str  # expert, algorithm consensus, AURORA model output, none
    reference: str
    regions: tuple[str, ...] = ()  # regions whose Dice is scored
    convention: LabelConvention | None = None  # of the reference label map on disk
    algorithms: bool = False  # algorithms/ holds five BraTS algorithms' outputs
    enhancing_absent: bool = False  # any ET called is a false positive
    panel: str = "reference"  # the overlay's name for the reference column


CONSENSUS = (
    "algorithm consensus, not manual: majority vote (fusion-mav) of five BraTS 2020 algorithms"
)
BRATS2015 = (
    "expert manual labels (BraTS 2015 OTMultiClass: 1 necrosis, 2 oedema, 3 non-enhancing, "
    "4 enhancing; TC = 1, 3, 4)"
)
CASES = (
    Case(
        "tcga-fg-6692-sri24",
        kind="glioma",
        reference_kind="algorithm consensus",
        reference=CONSENSUS + " (1 necrosis, 2 oedema, 4 enhancing)",
        regions=REGIONS,
        convention=LabelConvention.BRATS2021,
        algorithms=True,
    ),
    Case(
        "tcga-du-7294-sri24",
        kind="glioma",
        reference_kind="algorithm consensus",
        reference=CONSENSUS + " (1 necrosis / non-enhancing core, 2 oedema; no enhancing tumour)",
        regions=("WT", "TC"),
        convention=LabelConvention.BRATS2023,  # labels 1 and 2 only: read as they are
        algorithms=True,
        enhancing_absent=True,
    ),
    *(
        Case(
            f"brats2015-expert/pat000{i}",
            kind="glioma",
            reference_kind="expert",
            reference=BRATS2015,
            regions=REGIONS,
            convention=LabelConvention.BRATS2015,
        )
        for i in (1, 2, 3)
    ),
    Case(
        "brats-met-00110-000",
        kind="metastasis",
        reference_kind="AURORA model output",
        reference="AURORA metastasis model output, not manual (labels 1 and 2 as one whole lesion)",
        regions=("WT",),
        convention=LabelConvention.BRATS2023,
        panel="AURORA output",
    ),
    Case(
        "open-ms-cross-sectional/patient26",
        kind="tumour-free",
        reference_kind="none",
        reference="none: tumour-free brain (multiple sclerosis; its manual MS lesion masks are "
        "not tumour)",
        panel="MS lesions",
    ),
    Case("brats-gli-00001-000", kind="unlabelled", reference_kind="none", reference="none"),
    Case("tcga-fg-6692-raw", kind="unlabelled", reference_kind="none", reference="none"),
)


# Preparation (cached) ----------------------------------------------------------------------------


def cache_key(source: Path) -> dict[str, Any]:
    """What a prepared visit depends on: the input files and the preparation code."""
    inputs = sorted(
        (p.name, p.stat().st_size)
        for p in source.iterdir()
        if p.is_file() and p.name.lower().endswith((".nii", ".nii.gz"))
    )
    code = hashlib.sha256()
    for name in PREPARATION_CODE:
        path = REPO / "inference" / name
        code.update(name.encode() + (path.read_bytes() if path.exists() else b""))
    digest = hashlib.sha256(
        json.dumps([CACHE_FORMAT, inputs, code.hexdigest()]).encode()
    ).hexdigest()
    return {"key": digest[:16], "code_sha256": code.hexdigest()[:16], "inputs": inputs}


def prepared_visit(case: Case, *, reprepare: bool) -> tuple[Path, dict[str, Any]]:
    """The case prepared by the service's chain, from the cache when its key still holds."""
    source = data_folder() / case.name
    folder = WORK / "real" / case.name
    key = cache_key(source)
    stamp = folder / "bench-key.json"
    cached = stamp.is_file() and json.loads(stamp.read_text()).get("key") == key["key"]
    if cached and not reprepare:
        return folder, {"cached": True, "key": key["key"]}
    started = time.perf_counter()
    write_prepared(prepare_visit(read_visit(source)), folder)
    seconds = round(time.perf_counter() - started, 1)
    write_text(json.dumps({**key, "seconds": seconds}, indent=2) + "\n", stamp)
    print(f"  prepared {case.name} in {seconds} s", flush=True)
    return folder, {"cached": False, "key": key["key"], "seconds": seconds}


def read_cached(
    folder: Path,
) -> tuple[dict[Sequence, sitk.Image], sitk.Image, sitk.Image | None, dict[str, Any]]:
    """Prepared images (whichever sequences the visit had), brain mask, carried label map, QC."""
    images = {
        s: read_image(folder / PREPARED_NAMES[s])
        for s in ALL_SEQUENCES
        if (folder / PREPARED_NAMES[s]).is_file()
    }
    mask = sitk.Cast(read_image(folder / "brain_mask.nii.gz") > 0, sitk.sitkUInt8)
    seg_path = folder / "seg.nii.gz"
    seg = sitk.ReadImage(str(seg_path)) if seg_path.is_file() else None
    qc = json.loads((folder / "qc.json").read_text())
    return images, mask, seg, qc


def reference_labels(case: Case, seg: sitk.Image | None, qc: dict[str, Any]) -> sitk.Image:
    """The carried label map in internal labels, checked against the case's known convention.

    ``read_visit`` guesses a convention from the labels present; a BraTS 2015 map without
    label 4 would be read as BraTS 2023 (its 3, non-enhancing, as enhancing): fixed here.
    """
    if seg is None:
        raise RuntimeError(f"{case.name}: the preparation carried no reference label map")
    detected = qc.get("label_convention")
    labels = sitk.Cast(seg, sitk.sitkUInt8)
    if case.convention is LabelConvention.BRATS2015 and detected == LabelConvention.BRATS2023:
        array = sitk.GetArrayFromImage(labels)
        array[array == TumorLabel.ET] = TumorLabel.NCR
        fixed = sitk.GetImageFromArray(array)
        fixed.CopyInformation(labels)
        return fixed
    same = {case.convention, LabelConvention(detected)} if detected else set()
    # BraTS 2015 without label 3 reads as 2021: the mapping is the same.
    if len(same) != 1 and same != {LabelConvention.BRATS2015, LabelConvention.BRATS2021}:
        raise RuntimeError(
            f"{case.name}: reference read as {detected}, expected {case.convention.value}"
        )
    return labels


def ms_lesions_on(grid: sitk.Image, source: Path) -> sitk.Image | None:
    """patient26's manual MS lesion mask (not tumour) on the prepared grid, for the overlay and
    for how much of a false positive falls on MS lesions."""
    found = sorted(source.glob("*GOLD_STANDARD*.nii*"))
    if not found:
        return None
    lesions = sitk.Cast(sitk.ReadImage(str(found[0])) > 0, sitk.sitkUInt8)
    return sitk.Resample(lesions, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)


# The five BraTS algorithms against their consensus -----------------------------------------------


def algorithm_spread(case: Case) -> dict[str, Any]:
    source = data_folder() / case.name
    consensus_path = next(source.glob("*fusion-mav_seg.nii*"))
    consensus, convention = read_label_map(consensus_path)
    rows: dict[str, Any] = {}
    for path in sorted((source / "algorithms").glob("*.nii*")):
        labels, its_convention = read_label_map(path)
        if not same_grid(labels, consensus) and labels.GetSize() == consensus.GetSize():
            labels.CopyInformation(consensus)  # same voxels, header rounding only
        scores = evaluate(labels, consensus)
        rows[path.name.split(".nii")[0]] = {
            "label_convention": its_convention.value,
            **{r.value: s.as_dict() for r, s in scores.items()},
        }
        if case.enhancing_absent:  # ET Dice is 1 or 0 there: its volume says more
            rows[path.name.split(".nii")[0]]["ET_false_positive_ml"] = round(
                scores[Region.ET].prediction_ml, 3
            )
    spread = {}
    for region in REGIONS:
        spread[region] = {
            metric: _min_median_max([row[region][metric] for row in rows.values()])
            for metric in ("dice", "hd95_mm", "volume_error_ml", "prediction_ml")
        }
    if case.enhancing_absent:
        spread["ET_false_positive_ml"] = _min_median_max(
            [row["ET_false_positive_ml"] for row in rows.values()]
        )
    return {
        "consensus": consensus_path.name,
        "consensus_convention": convention.value,
        "algorithms": rows,
        "spread": spread,
    }


def _min_median_max(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 4),
        "median": round(statistics.median(values), 4),
        "max": round(max(values), 4),
    }


# Scoring one case --------------------------------------------------------------------------------


def components(mask: np.ndarray, min_voxels: int = 1) -> int:
    labelled, count = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, 3))
    if min_voxels <= 1:
        return int(count)
    sizes = np.bincount(labelled.ravel())[1:]
    return int((sizes >= min_voxels).sum())


def score_case(
    case: Case,
    labels: sitk.Image,
    reference: sitk.Image | None,
    ms_lesions: sitk.Image | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    predicted = sitk.GetArrayViewFromImage(labels)
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    if reference is not None:
        scores = evaluate(labels, reference)
        out["scores"] = {r: scores[Region(r)].as_dict() for r in REGIONS if r in case.regions}
        if case.enhancing_absent:
            et = np.isin(predicted, [TumorLabel.ET])
            out["false_positive"] = {
                "ET_ml": round(float(et.sum()) * voxel_ml, 3),
                "ET_components": components(et),
            }
    elif case.kind == "tumour-free":
        fp: dict[str, Any] = {}
        for region, values in (("ET", [3]), ("TC", [1, 3]), ("WT", [1, 2, 3])):
            mask = np.isin(predicted, values)
            fp[f"{region}_ml"] = round(float(mask.sum()) * voxel_ml, 3)
            fp[f"{region}_components"] = components(mask)
            fp[f"{region}_components_10_voxels_or_more"] = components(mask, 10)
        if ms_lesions is not None:
            lesion = sitk.GetArrayViewFromImage(ms_lesions) > 0
            fp["WT_on_ms_lesions_ml"] = round(
                float((np.isin(predicted, [1, 2, 3]) & lesion).sum()) * voxel_ml, 3
            )
            fp["ms_lesions_ml"] = round(float(lesion.sum()) * voxel_ml, 3)
        out["false_positive"] = fp
    return out


# Overlays ----------------------------------------------------------------------------------------


def _colour(labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    colour = np.zeros((*labels.shape, 4))
    for value, rgb in COLOURS.items():
        colour[labels == value] = (*rgb, alpha)
    return colour


def overlay(
    images: dict[Sequence, sitk.Image],
    mask: sitk.Image,
    prediction: sitk.Image,
    *,
    reference: sitk.Image | None,
    ms_lesions: sitk.Image | None,
    out: Path,
    title: str,
    reference_name: str,
) -> None:
    """T1c and FLAIR at three axial slices, the prediction with the reference beside it.

    Prepared images are LPS (identity direction), so array rows run anterior to posterior and
    columns patient right to left: the radiological view, patient's right on the image's left.
    """
    predicted = sitk.GetArrayFromImage(prediction)
    truth = sitk.GetArrayFromImage(reference) if reference is not None else None
    lesions = sitk.GetArrayFromImage(ms_lesions) if ms_lesions is not None else None
    shown = truth if truth is not None else lesions
    focus = truth if truth is not None and truth.any() else predicted
    area = (focus > 0).sum(axis=(1, 2))
    centre = int(np.argmax(area)) if area.any() else predicted.shape[0] // 2
    picks = [max(centre - 10, 0), centre, min(centre + 10, predicted.shape[0] - 1)]
    brain = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    (_, y0, x0), (_, y1, x1) = brain.min(axis=0), brain.max(axis=0) + 1
    y0, x0 = max(y0 - 5, 0), max(x0 - 5, 0)
    y1, x1 = y1 + 5, x1 + 5
    per_slice = 2 if shown is not None else 1
    figure, axes = plt.subplots(2, 3 * per_slice, figsize=(3.2 * 3 * per_slice, 7.2), squeeze=False)
    for row, sequence in enumerate((Sequence.T1C, Sequence.FLAIR)):
        volume = (
            sitk.GetArrayFromImage(images[sequence])
            if sequence in images
            else np.zeros_like(predicted, np.float32)
        )
        name = "T1c" if sequence is Sequence.T1C else "FLAIR"
        for i, z in enumerate(picks):
            panels = [("model", predicted)]
            if shown is not None:
                panels.append((reference_name, shown))
            for j, (what, labels) in enumerate(panels):
                axis = axes[row, i * per_slice + j]
                axis.imshow(volume[z, y0:y1, x0:x1], cmap="gray", vmin=-2, vmax=4)
                crop = labels[z, y0:y1, x0:x1]
                if labels is lesions:
                    colour = np.zeros((*crop.shape, 4))
                    colour[crop > 0] = (*MS_COLOUR, 0.6)
                else:
                    colour = _colour(crop)
                axis.imshow(colour)
                missing = "" if sequence in images else " (absent)"
                axis.set_title(f"{name}{missing} z={z}: {what}", fontsize=9)
                axis.text(2, 10, "R", color="white", fontsize=9)
                axis.text(crop.shape[1] - 10, 10, "L", color="white", fontsize=9)
                axis.axis("off")
    legend = "NCR vermillion, ED blue, ET yellow"
    if lesions is not None:
        legend += "; MS lesions (not tumour) green"
    figure.suptitle(f"{title}\n({legend}; radiological view, patient's right on the left)")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=72)
    plt.close(figure)


# Summary and table -------------------------------------------------------------------------------


def summarise(rows: dict[str, Any], algorithms: dict[str, Any]) -> dict[str, Any]:
    """One weights' figures against the targets."""
    medians: dict[str, Any] = {}
    for region in REGIONS:
        values = {
            case.name: rows[case.name]["scores"][region]["dice"]
            for case in CASES
            if case.kind == "glioma"
            and case.name in rows
            and "scores" in rows[case.name]
            and region in case.regions
        }
        median = round(statistics.median(values.values()), 4) if values else None
        medians[region] = {
            "median_dice": median,
            "target": TARGETS[region],
            "met": None if median is None else median >= TARGETS[region],
            "cases": values,
        }
    summary: dict[str, Any] = {"glioma_median_dice": medians}
    free = rows.get("open-ms-cross-sectional/patient26", {}).get("false_positive")
    if free:
        summary["tumour_free_false_positive_ml"] = {
            region: {
                "value": free[f"{region}_ml"],
                "target_max": limit,
                "met": free[f"{region}_ml"] <= limit,
            }
            for region, limit in FP_TARGETS_ML.items()
        }
    spread = {}
    for name, table in algorithms.items():
        if name not in rows or "scores" not in rows[name]:
            continue
        spread[name] = {}
        for region, score in rows[name]["scores"].items():
            low, high = (table["spread"][region]["dice"][k] for k in ("min", "max"))
            dice = score["dice"]
            where = "inside" if low <= dice <= high else ("below" if dice < low else "above")
            spread[name][region] = {
                "dice": dice,
                "algorithms_min": low,
                "algorithms_max": high,
                "position": where,
            }
    summary["against_algorithm_spread"] = spread
    met = rows.get("brats-met-00110-000", {}).get("scores", {}).get("WT")
    if met:
        summary["metastasis_whole_lesion_dice"] = met["dice"]
    return summary


def _cell(score: dict[str, Any] | None) -> str:
    if not score:
        return f"{'-':>22}"
    return f"{score['dice']:6.3f} {score['hd95_mm']:6.1f} {score['volume_error_ml']:+8.1f}"


def print_table(results: dict[str, Any], tags: list[str]) -> None:
    head = "".join(f" | {r + ' Dice  HD95    dV mL':>22}" for r in REGIONS)
    print(f"\n{'case':<36} {'weights':<14}{head} | notes")
    for case in CASES:
        entry = results["cases"].get(case.name)
        if entry is None:
            continue
        for tag in tags:
            row = entry["results"].get(tag, {})
            if "skipped" in row:
                print(f"{case.name:<36} {tag:<14} skipped: {row['skipped'][:90]}")
                continue
            scores = row.get("scores", {})
            cells = "".join(f" | {_cell(scores.get(r))}" for r in REGIONS)
            notes = []
            fp = row.get("false_positive", {})
            if "ET_ml" in fp:
                notes.append(f"ET FP {fp['ET_ml']:.2f} mL")
            if "WT_ml" in fp:
                notes.append(f"WT FP {fp['WT_ml']:.2f} mL ({fp['WT_components']} comp.)")
            if not scores and not fp and "volumes_ml" in row:
                v = row["volumes_ml"]
                notes.append(", ".join(f"{r} {v[r]['volume_ml']:.1f} mL" for r in REGIONS))
            print(f"{case.name:<36} {tag:<14}{cells} | {'; '.join(notes)}")
        table = entry.get("algorithms")
        if table:
            spread = table["spread"]
            cells = "".join(
                " | "
                + f"{spread[r]['dice']['min']:.2f}-{spread[r]['dice']['median']:.2f}-"
                f"{spread[r]['dice']['max']:.2f}".rjust(22)
                for r in REGIONS
                if not (case.enhancing_absent and r == "ET")
            )
            fp = spread.get("ET_false_positive_ml")
            if fp:
                cells += (
                    f" | {'-':>22} | ET FP {fp['min']:.2f}-{fp['median']:.2f}-{fp['max']:.2f} mL"
                )
            else:
                cells += " |"
            print(f"{'  5 algorithms: Dice min-median-max':<36} {'':<14}{cells}")
    print("\nSummary (median Dice over labelled glioma cases; FP on tumour-free patient26)")
    for tag in tags:
        summary = results["summary"][tag]
        parts = []
        for region in REGIONS:
            m = summary["glioma_median_dice"][region]
            ok = {True: "met", False: "NOT met", None: "n/a"}[m["met"]]
            value = "-" if m["median_dice"] is None else f"{m['median_dice']:.3f}"
            parts.append(f"{region} {value} (>= {m['target']}, n={len(m['cases'])}, {ok})")
        for region, f in summary.get("tumour_free_false_positive_ml", {}).items():
            ok = "met" if f["met"] else "NOT met"
            parts.append(f"{region} FP {f['value']:.2f} mL (<= {f['target_max']}, {ok})")
        for name, regions in summary["against_algorithm_spread"].items():
            where = ", ".join(f"{r} {v['position']}" for r, v in regions.items())
            parts.append(f"{name} vs the 5 algorithms' Dice range: {where}")
        if "metastasis_whole_lesion_dice" in summary:
            parts.append(
                f"metastasis whole-lesion Dice {summary['metastasis_whole_lesion_dice']:.3f}"
            )
        print(f"  weights {tag}:")
        for part in parts:
            print(f"    {part}")


# Main --------------------------------------------------------------------------------------------


def pick_cases(names: list[str] | None) -> list[Case]:
    if not names:
        return list(CASES)
    chosen = [c for c in CASES if any(n == c.name or n in c.name for n in names)]
    if not chosen:
        sys.exit(f"no case matches {names}; cases: {', '.join(c.name for c in CASES)}")
    return chosen


def main() -> None:
    from inference.segmentation.segment import DEFAULT_WEIGHTS, Segmenter, read_card

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--weights", action="append", type=Path, help="weights folder (repeat to compare)"
    )
    parser.add_argument("--tag", action="append", help="a name per --weights (default: version)")
    parser.add_argument("--no-flips", action="store_true", help="no test-time flips")
    parser.add_argument("--cases", nargs="+", help="case names (or parts of them) to run")
    parser.add_argument("--reprepare", action="store_true", help="redo the cached preparations")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    folders = args.weights or [DEFAULT_WEIGHTS]
    if args.tag and len(args.tag) != len(folders):
        sys.exit("give one --tag per --weights")
    tags: list[str] = []
    for i, folder in enumerate(folders):
        tag = args.tag[i] if args.tag else str(read_card(folder).get("version") or folder.name)
        while tag in tags:
            tag += "+"
        tags.append(tag)
    cases = pick_cases(args.cases)
    flips = not args.no_flips

    # Prepare every case once (shared by all weights), and the algorithms' spread.
    prepared: dict[str, Any] = {}
    results: dict[str, Any] = {"cases": {}}
    algorithms: dict[str, Any] = {}
    for case in cases:
        source = data_folder() / case.name
        entry: dict[str, Any] = {
            "kind": case.kind,
            "reference_kind": case.reference_kind,
            "reference": case.reference,
            "results": {},
        }
        results["cases"][case.name] = entry
        if not source.is_dir():
            prepared[case.name] = {"skipped": f"{source} not found"}
            continue
        try:
            folder, info = prepared_visit(case, reprepare=args.reprepare)
            images, mask, seg, qc = read_cached(folder)
            reference = reference_labels(case, seg, qc) if case.regions else None
        except Exception as error:  # recorded, not fatal: one case must not stop the others
            message = f"{type(error).__name__}: {error}"
            print(f"  {case.name}: preparation failed: {message}", flush=True)
            traceback.print_exc(limit=2)
            prepared[case.name] = {"skipped": message}
            continue
        entry["preparation"] = {
            **info,
            "sequences": sorted(s.value for s in images),
            "label_convention": qc.get("label_convention"),
            "grid": qc.get("grid"),
            "seconds_recorded": qc.get("seconds"),
        }
        prepared[case.name] = {
            "images": images,
            "mask": mask,
            "reference": reference,
            "ms_lesions": ms_lesions_on(mask, source) if case.kind == "tumour-free" else None,
        }
        if case.algorithms:
            algorithms[case.name] = entry["algorithms"] = algorithm_spread(case)

    identities = {}
    for tag, folder in zip(tags, folders, strict=True):
        segmenter = Segmenter(folder)
        identities[tag] = {"folder": str(Path(folder).resolve()), **segmenter.identity}
        print(f"weights {tag}: {folder}", flush=True)
        for case in cases:
            entry = results["cases"][case.name]
            ready = prepared[case.name]
            if "skipped" in ready:
                entry["results"][tag] = {"skipped": ready["skipped"]}
                continue
            try:
                result = segmenter.segment(ready["images"], ready["mask"], flips=flips)
            except Exception as error:  # e.g. a visit with sequences the segmenter refuses
                message = f"{type(error).__name__}: {error}"
                print(f"  {case.name}: segmentation failed: {message}", flush=True)
                entry["results"][tag] = {"skipped": message}
                continue
            started = time.perf_counter()
            row = score_case(case, result.labels, ready["reference"], ready["ms_lesions"])
            overlay_path = WORK / "overlays" / f"{case.name.replace('/', '_')}__{tag}.png"
            overlay(
                ready["images"],
                ready["mask"],
                result.labels,
                reference=ready["reference"],
                ms_lesions=ready["ms_lesions"],
                out=overlay_path,
                title=f"{case.name} - weights {tag} - reference: {case.reference_kind}",
                reference_name=case.panel,
            )
            entry["results"][tag] = {
                **row,
                "volumes_ml": result.volumes_ml,
                "seconds": {
                    **result.seconds,
                    "score_and_overlay": round(time.perf_counter() - started, 3),
                },
                "details": result.details,
                "overlay": f"{overlay_path.relative_to(REPO)} (not committed)",
            }
            print(f"  {case.name}: {result.seconds['total']:.1f} s", flush=True)
        del segmenter

    rows_by_tag = {
        tag: {
            name: entry["results"][tag]
            for name, entry in results["cases"].items()
            if "skipped" not in entry["results"].get(tag, {"skipped": ""})
        }
        for tag in tags
    }
    results["summary"] = {tag: summarise(rows_by_tag[tag], algorithms) for tag in tags}
    write_results(
        args.out,
        {
            "data": (
                "REAL public cases (../shared/data, TRACKER_TEST_DATA): real patients' scans, "
                "none of them trained on. References differ by case: expert manual labels "
                "(BraTS 2015), five-algorithm consensus (TCGA SRI-24 cases), AURORA model "
                "output (metastasis), none (tumour-free patient26: false positives; two "
                "unlabelled cases: volumes only). Scored on the prepared 1 mm grid "
                "(read_visit + prepare_visit)."
            ),
            "environment": environment(weights=identities, flips=flips),
            "targets": {
                "glioma_median_dice": TARGETS,
                "tumour_free_false_positive_ml_max": FP_TARGETS_ML,
            },
            **results,
        },
    )
    print_table(results, tags)


if __name__ == "__main__":
    main()
