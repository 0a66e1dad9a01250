"""The shipped (phantom-trained) segmenter on the real four-sequence cases in ../shared/data.

Neither case has reference tumour labels, so there is no Dice here: the volumes found, the
model's own uncertainty interval, and overlay images (written under var/bench-segment/overlays,
not committed: they show real patients' scans) that a person looks at and describes in
bench/README.md.

    .venv/bin/python bench/bench_segment_real.py

Writes bench/results/segment_real.json.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import SimpleITK as sitk
from common import REPO, data_folder, environment, write_results

mpl.use("Agg")
import matplotlib.pyplot as plt

sys.path.insert(0, str(REPO))

from inference.io import read_visit
from inference.labels import Sequence
from inference.preprocess import prepare_visit, read_prepared, write_prepared

CASES = ("brats-gli-00001-000", "tcga-fg-6692-raw")
WORK = REPO / "var" / "bench-segment"
# Colour-blind-safe (Okabe-Ito): NCR vermillion, ED sky blue, ET yellow.
COLOURS = {1: (0.84, 0.37, 0.0), 2: (0.34, 0.71, 0.91), 3: (0.94, 0.89, 0.26)}


def overlay(images: dict[Sequence, sitk.Image], labels: sitk.Image, out: Path, title: str) -> None:
    t1c = sitk.GetArrayFromImage(images[Sequence.T1C])
    flair = sitk.GetArrayFromImage(images[Sequence.FLAIR])
    seg = sitk.GetArrayFromImage(labels)
    area = (seg > 0).sum(axis=(1, 2))
    centre = int(np.argmax(area)) if area.any() else seg.shape[0] // 2
    picks = [max(centre - 10, 0), centre, min(centre + 10, seg.shape[0] - 1)]
    figure, axes = plt.subplots(2, 3, figsize=(12, 8))
    for column, z in enumerate(picks):
        for row, (name, volume) in enumerate((("T1c", t1c), ("FLAIR", flair))):
            axis = axes[row, column]
            axis.imshow(volume[z], cmap="gray", vmin=-2, vmax=4)
            colour = np.zeros((*seg[z].shape, 4))
            for value, rgb in COLOURS.items():
                colour[seg[z] == value] = (*rgb, 0.45)
            axis.imshow(colour)
            axis.set_title(f"{name} slice {z}")
            axis.axis("off")
    figure.suptitle(title + "  (NCR vermillion, ED blue, ET yellow)")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)
    plt.close(figure)


def main() -> None:
    from inference.segment import Segmenter

    segmenter = Segmenter()
    rows: dict[str, Any] = {}
    for case in CASES:
        source = data_folder() / case
        if not source.is_dir():
            rows[case] = {"skipped": f"{source} not found"}
            continue
        prepared = WORK / "real" / case
        if not (prepared / "qc.json").exists():
            write_prepared(prepare_visit(read_visit(source)), prepared)
        images, mask, _qc = read_prepared(prepared)
        result = segmenter.segment(images, mask, flips=True)
        overlay(images, result.labels, WORK / "overlays" / f"{case}.png", case)
        rows[case] = {
            "volumes_ml": result.volumes_ml,
            "seconds": result.seconds,
            "slices": result.details["slices"],
            "slice_size": result.details["slice_size"],
            "brain_ml": round(float(sitk.GetArrayViewFromImage(mask).sum()) / 1000, 1),
            "overlay": f"var/bench-segment/overlays/{case}.png (not committed)",
        }
        print(case, {r: v["volume_ml"] for r, v in result.volumes_ml.items()}, flush=True)
    write_results(
        REPO / "bench" / "results" / "segment_real.json",
        {
            "data": "REAL public cases (../shared/data); no reference tumour labels available",
            "environment": environment(model=segmenter.identity),
            "cases": rows,
        },
    )


if __name__ == "__main__":
    main()
