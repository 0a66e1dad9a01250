"""Benchmark: bias of the RANO bidimensional product against analytic ellipsoids (SYNTHETIC:
exact shapes, not scans). For each grid and size range, ellipsoids with random semi-axes,
in-plane rotation and tilts up to 35 degrees, on a grid at a random sub-voxel offset, are
measured (``inference.measurement.measure.measure``) and compared with the product of the diameters
of their largest axial cross-section (``inference.segmentation.phantoms.ellipsoid_lesion``).
Reported per group: mean and median signed error, its spread, the worst case. Target (issue 14):
|mean| <= 1 %.

Rerun
    .venv/bin/python bench/bench_diameter_bias.py            # 100 shapes a group, ~40 s
    .venv/bin/python bench/bench_diameter_bias.py --shapes 8 --out /tmp/bias.json
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import numpy as np
from common import REPO, environment, write_results

sys.path.insert(0, str(REPO))

from inference.measurement.measure import measure
from inference.segmentation.phantoms import ellipsoid_lesion, rotation

GROUPS = [  # (grid spacing mm, semi-axes range mm)
    ((1.0, 1.0, 1.0), (5.0, 9.0)),
    ((1.0, 1.0, 1.0), (9.0, 25.0)),
    ((0.5, 0.5, 1.0), (5.0, 25.0)),
    ((1.0, 1.0, 3.0), (7.0, 25.0)),
    ((1.0, 1.0, 5.0), (9.0, 25.0)),
    ((1.0, 1.0, 5.0), (5.0, 9.0)),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=int, default=100, help="ellipsoids per group")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/diameter_bias.json")
    args = parser.parse_args()
    groups = []
    for spacing, sizes in GROUPS:
        rng = np.random.default_rng([int(spacing[2] * 10), *map(int, sizes)])
        errors = []
        for _ in range(args.shapes):
            turn = rotation(rng.uniform(0, math.pi), *rng.uniform(-0.6, 0.6, 2))
            image, truth = ellipsoid_lesion(
                rng.uniform(*sizes, 3), turn, spacing, rng.uniform(0, 1, 3)
            )
            product = measure(image).lesions[0].bidimensional.product_mm2
            errors.append(100 * (product / truth - 1))
        group = {
            "spacing_mm": list(spacing),
            "semi_axes_mm": list(sizes),
            "shapes": len(errors),
            "mean_error_percent": round(statistics.fmean(errors), 2),
            "median_error_percent": round(statistics.median(errors), 2),
            "sd_percent": round(statistics.stdev(errors), 2),
            "worst_percent": round(max(errors, key=abs), 2),
            "target_met": abs(statistics.fmean(errors)) <= 1.0,
        }
        groups.append(group)
        print(
            f"{' x '.join(f'{s:g}' for s in spacing)} mm, semi-axes {sizes[0]:g}-{sizes[1]:g} mm: "
            f"mean {group['mean_error_percent']:+.2f} %, "
            f"median {group['median_error_percent']:+.2f} %, sd {group['sd_percent']:.2f}, "
            f"worst {group['worst_percent']:+.2f} %"
        )
    write_results(
        args.out,
        {
            "data": "SYNTHETIC analytic ellipsoids (exact truth), not scans",
            "environment": environment(),
            "target": "|mean product error| <= 1 % per group",
            "groups": groups,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
