"""Lesion tracking across visits: stable track ids, new, disappeared, split and merged lesions.

Input: for each visit in date order, a map of lesion components (0 background, 1..n lesion ids as
``measure`` numbers them) on one common grid - follow-ups resampled nearest-neighbour into the
baseline's space with their registration. Matching, visit by visit against the one before:

1. overlap first: components that share voxels are linked;
   - one to one: the track continues;
   - one earlier lesion to several: a split - the piece overlapping it most keeps the track, the
     others start new tracks marked ``split_from``;
   - several earlier lesions to one: a merge - it continues the track it overlaps most, the
     others end, marked ``merged_into``;
2. then centroid distance: a lesion with no overlap continues the nearest unmatched earlier lesion
   (or a lesion that had disappeared at an earlier visit) within ``max_distance_mm``;
3. anything left is new; earlier lesions left unmatched have disappeared.
Track ids are ``L1``, ``L2``, ... in order of first appearance and never reused.
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from inference.measurement.evaluate import require_same_grid


@dataclass
class TrackEntry:
    """One track at one visit."""

    track: str
    present: bool
    component: int | None  # lesion id in this visit's map, None when absent
    volume_ml: float
    centroid_mm: list[float] | None
    new: bool = False
    reappeared: bool = False
    split_from: str | None = None
    merged_from: list[str] = field(default_factory=list)
    merged_into: str | None = None

    @property
    def status(self) -> str:
        if not self.present:
            return "merged" if self.merged_into else "disappeared"
        if self.split_from:
            return "split"
        if self.new:
            return "new"
        if self.reappeared:
            return "reappeared"
        return "merged" if self.merged_from else "continuing"

    def as_dict(self) -> dict[str, Any]:
        return {
            "track": self.track,
            "status": self.status,
            "component": self.component,
            "volume_ml": round(self.volume_ml, 4),
            "centroid_mm": None
            if self.centroid_mm is None
            else [round(c, 3) for c in self.centroid_mm],
            "split_from": self.split_from,
            "merged_from": self.merged_from,
            "merged_into": self.merged_into,
        }


@dataclass
class _Component:
    id: int
    voxels: int
    centroid_mm: np.ndarray


def _components(image: sitk.Image) -> tuple[np.ndarray, dict[int, _Component]]:
    """The map's values and its lesions: voxel counts from one pass over the map, centroids
    from each lesion's own box."""
    values = sitk.GetArrayFromImage(image)
    if not np.issubdtype(values.dtype, np.integer) or values.min() < 0:
        values = values.astype(np.int64)
    counts = np.bincount(values.ravel())
    out = {}
    for index, box in enumerate(ndimage.find_objects(values), start=1):
        if box is None or counts[index] == 0:
            continue
        inside = np.nonzero(values[box] == index)
        centre = [
            float(np.mean(axis)) + where.start for axis, where in zip(inside, box, strict=True)
        ]
        point = image.TransformContinuousIndexToPhysicalPoint(centre[::-1])
        out[index] = _Component(index, int(counts[index]), np.array(point))
    return values, out


def track_lesions(
    maps: SequenceOf[sitk.Image], *, max_distance_mm: float = 15.0
) -> list[list[TrackEntry]]:
    """Track entries for every visit: each visit lists every track seen so far."""
    if not maps:
        return []
    for other in maps[1:]:
        require_same_grid(maps[0], other, "lesion maps of one patient")
    voxel_ml = float(np.prod(maps[0].GetSpacing())) / 1000.0
    counter = 0

    def new_track() -> str:
        nonlocal counter
        counter += 1
        return f"L{counter}"

    history: list[list[TrackEntry]] = []
    previous_values: np.ndarray | None = None
    previous_track_of: dict[int, str] = {}  # component id at the previous visit -> track
    last_seen: dict[str, np.ndarray] = {}  # track -> last centroid
    for values, components in (_components(m) for m in maps):
        track_of: dict[int, str] = {}
        entries: dict[str, TrackEntry] = {}

        def enter(component: _Component, track: str, **marks: Any) -> None:
            track_of[component.id] = track  # noqa: B023 - used within this iteration only
            entries[track] = TrackEntry(  # noqa: B023
                track=track,
                present=True,
                component=component.id,
                volume_ml=component.voxels * voxel_ml,
                centroid_mm=component.centroid_mm.tolist(),
                **marks,
            )

        unmatched_previous = set(previous_track_of)
        unmatched_current = set(components)
        if previous_values is not None:
            overlaps = _overlaps(previous_values, values)
            # one to one, strongest overlaps first
            for (old, cur), _ in sorted(overlaps.items(), key=lambda kv: -kv[1]):
                if old in unmatched_previous and cur in unmatched_current:
                    enter(components[cur], previous_track_of[old])
                    unmatched_previous.discard(old)
                    unmatched_current.discard(cur)
            # splits: further current pieces of an earlier lesion
            for cur in sorted(unmatched_current):
                parents = [(n, old) for (old, c), n in overlaps.items() if c == cur]
                if parents:
                    parent = previous_track_of[max(parents)[1]]
                    enter(components[cur], new_track(), split_from=parent, new=True)
                    unmatched_current.discard(cur)
            # merges: further earlier lesions absorbed by a current one
            for old in sorted(unmatched_previous):
                children = [(n, cur) for (o, cur), n in overlaps.items() if o == old]
                if children:
                    into = track_of[max(children)[1]]
                    entries[into].merged_from.append(previous_track_of[old])
                    entries[previous_track_of[old]] = TrackEntry(
                        previous_track_of[old], False, None, 0.0, None, merged_into=into
                    )
                    unmatched_previous.discard(old)
        # centroid distance: unmatched earlier lesions, then tracks that had disappeared
        candidates = {
            previous_track_of[o]: last_seen[previous_track_of[o]] for o in unmatched_previous
        }
        dormant = {t: c for t, c in last_seen.items() if t not in entries and t not in candidates}
        for cur in sorted(unmatched_current, key=lambda c: -components[c].voxels):
            component = components[cur]
            best = _nearest(component.centroid_mm, candidates, max_distance_mm)
            if best is not None:
                enter(component, best)
                del candidates[best]
                continue
            best = _nearest(component.centroid_mm, dormant, max_distance_mm)
            if best is not None:
                enter(component, best, reappeared=True)
                del dormant[best]
                continue
            enter(component, new_track(), new=True)
        # everything seen before and not present now is absent at this visit
        for track in last_seen:
            if track not in entries:
                entries[track] = TrackEntry(track, False, None, 0.0, None)
        for track, entry in entries.items():
            if entry.present and entry.centroid_mm is not None:
                last_seen[track] = np.array(entry.centroid_mm)
        history.append(sorted(entries.values(), key=lambda e: int(e.track[1:])))
        previous_values, previous_track_of = values, track_of
    return history


def _overlaps(a: np.ndarray, b: np.ndarray) -> dict[tuple[int, int], int]:
    both = (a > 0) & (b > 0)
    pairs, counts = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
    return {(int(p[0]), int(p[1])): int(n) for p, n in zip(pairs.T, counts, strict=True)}


def _nearest(point: np.ndarray, candidates: dict[str, np.ndarray], limit: float) -> str | None:
    best, best_distance = None, limit
    for track, centre in candidates.items():
        distance = float(np.linalg.norm(point - centre))
        if distance <= best_distance:
            best, best_distance = track, distance
    return best
