"""Measurement on real expert labels and real longitudinal tumour masks (../shared/data).

What it measures
* ``brats2015-expert/pat0001..0003``: the expert label maps (BraTS 2015 labels mapped to the
  internal ones: 1 necrosis and 3 non-enhancing -> NCR, 2 -> ED, 4 -> ET) measured with
  ``inference.measurement.measure.measure``: volumes per compartment and region, lesions, RANO
  products.
* ``tcia-brain-tumor-progression/01..05``: the providers' tumour masks at the two time points
  (binary: measured as tumour core). The header spacing is not the true spacing (the images were
  resized), so absolute mL are not real; the relative volume change and the growth rate per
  month (dates from supplementary.csv) are. Lesions are tracked across the pair: the follow-up
  scan is registered to the first (``register_visits``), its lesion map resampled into the first
  nearest-neighbour, and ``track_lesions`` run over the two.

Rerun
    .venv/bin/python bench/bench_real_measure.py        # -> bench/results/real_measure.json
Test data: ``$TRACKER_TEST_DATA``, default ``<repo root>/../shared/data``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from common import REPO, data_folder, environment, write_results

sys.path.insert(0, str(REPO))

from inference.imaging.io import read_label_map, read_visit
from inference.imaging.register import register_visits, resample
from inference.measurement.lesions import track_lesions
from inference.measurement.measure import measure

DAYS_PER_MONTH = 365.25 / 12


def brats2015() -> list[dict[str, Any]]:
    rows = []
    for case in ("pat0001", "pat0002", "pat0003"):
        labels, convention = read_label_map(
            data_folder() / "brats2015-expert" / case / "OTMultiClass.nii.gz"
        )
        m = measure(labels).as_dict()
        rows.append(
            {
                "case": case,
                "label_convention": convention.value,
                "volumes_ml": m["volumes_ml"],
                "lesion_count": m["lesion_count"],
                "measurable_count": m["measurable_count"],
                "sum_of_products_mm2": m["sum_of_products_mm2"],
                "largest_lesion": {
                    k: m["lesions"][0][k]
                    for k in ("volume_ml", "longest_mm", "perpendicular_mm", "product_mm2")
                }
                if m["lesions"]
                else None,
            }
        )
        print(
            f"  brats2015 {case}: WT {m['volumes_ml']['WT']:.1f} mL, "
            f"TC {m['volumes_ml']['TC']:.1f}, ET {m['volumes_ml']['ET']:.1f}; "
            f"{m['lesion_count']} lesion(s), SPD "
            f"{m['sum_of_products_mm2']:.0f} mm2",
            flush=True,
        )
    return rows


def _dates() -> dict[str, tuple[dt.date, dt.date]]:
    path = data_folder() / "tcia-brain-tumor-progression" / "supplementary.csv"
    dates = {}
    with path.open() as stream:
        reader = csv.reader(stream, skipinitialspace=True)
        next(reader)
        for row in reader:
            if len(row) >= 4 and row[0].strip():
                dates[row[0].strip()] = (
                    dt.date.fromisoformat(row[2].strip()),
                    dt.date.fromisoformat(row[3].strip()),
                )
    return dates


def tcia() -> list[dict[str, Any]]:
    dates = _dates()
    rows = []
    for patient in ("01", "02", "03", "04", "05"):
        folder = data_folder() / "tcia-brain-tumor-progression" / patient
        pre_labels, _ = read_label_map(folder / "Pre_Mask.nii.gz")
        post_labels, _ = read_label_map(folder / "Post_Mask.nii.gz")
        pre, post = measure(pre_labels), measure(post_labels)
        v0, v1 = pre.volumes_ml["TC"], post.volumes_ml["TC"]
        start, end = dates[patient]
        days = (end - start).days
        months = days / DAYS_PER_MONTH
        ratio = v1 / v0 if v0 > 0 else float("nan")
        # Tracking: the follow-up registered onto the first scan.
        pre_visit = read_visit(_single(folder / "Pre_Scan_T1.nii.gz", "pre"), required=())
        post_visit = read_visit(_single(folder / "Post_Scan_T1.nii.gz", "post"), required=())
        registration = register_visits(pre_visit.images, post_visit.images)
        assert pre.lesion_map is not None
        assert post.lesion_map is not None
        post_in_pre = resample(
            post.lesion_map, pre.lesion_map, registration.result.transform, labels=True
        )
        history = track_lesions([pre.lesion_map, post_in_pre])
        rows.append(
            {
                "patient": patient,
                "first_on": start.isoformat(),
                "second_on": end.isoformat(),
                "days": days,
                "volume_header_ml": [round(v0, 3), round(v1, 3)],
                "relative_change": round(ratio - 1, 4),
                "growth_percent_per_month_compound": round(100 * (ratio ** (1 / months) - 1), 2),
                "growth_percent_per_month_linear": round(100 * (ratio - 1) / months, 2),
                "lesions": [len(pre.lesions), len(post.lesions)],
                "registration_ok": registration.ok,
                "registration_correlation": registration.quality["correlation_after"],
                "tracks": [[e.as_dict() for e in visit] for visit in history],
            }
        )
        statuses = ", ".join(f"{e.track} {e.status}" for e in history[1])
        print(
            f"  tcia {patient}: {days} days, tumour core {100 * (ratio - 1):+.0f} % "
            f"({100 * (ratio ** (1 / months) - 1):+.1f} %/month); lesions {len(pre.lesions)} -> "
            f"{len(post.lesions)}; tracks at follow-up: {statuses}",
            flush=True,
        )
    return rows


def _single(source: Path, name: str) -> Path:
    """A one-sequence visit folder (a symbolic link) in a scratch area."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=f"bench-real-{name}-"))
    (folder / f"{name}_T1.nii.gz").symlink_to(source)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "real_measure.json"
    )
    args = parser.parse_args()
    print(f"bench_real_measure on {data_folder()} (REAL DATA)")
    result = {
        "benchmark": "measurement of real expert labels and real longitudinal masks",
        "data": "REAL: brats2015-expert, tcia-brain-tumor-progression (../shared/data)",
        "caution": "TCIA header spacing is not the true spacing: only relative change is real",
        "environment": environment(),
        "brats2015_expert": brats2015(),
        "tcia_progression": tcia(),
    }
    write_results(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
