"""Lesion tracking on hand-made lesion maps: continuing, new, gone, split, merged, reappeared."""

from __future__ import annotations

import numpy as np
import pytest

from inference.errors import GeometryMismatchError
from inference.measurement.lesions import track_lesions

from .images import image_from_array

SHAPE = (10, 40, 60)


def _map(*boxes: tuple[int, slice, slice]) -> object:
    values = np.zeros(SHAPE, np.uint16)
    for lesion_id, rows, cols in boxes:
        values[3:7, rows, cols] = lesion_id
    return image_from_array(values, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))


def _statuses(visit: list) -> dict[str, str]:
    return {entry.track: entry.status for entry in visit}


def test_tracks_keep_their_ids_as_lesions_grow_and_shrink() -> None:
    visits = [
        _map((1, slice(5, 15), slice(5, 15)), (2, slice(20, 30), slice(40, 50))),
        _map((1, slice(20, 32), slice(38, 52)), (2, slice(6, 14), slice(6, 14))),  # ids swapped
        _map((1, slice(4, 16), slice(4, 16))),  # the second lesion is gone
    ]
    history = track_lesions(visits)
    assert [_statuses(v) for v in history] == [
        {"L1": "new", "L2": "new"},
        {"L1": "continuing", "L2": "continuing"},
        {"L1": "continuing", "L2": "disappeared"},
    ]
    # the track follows the lesion, not the component number
    assert history[1][0].component == 2
    assert history[1][1].component == 1
    assert history[2][1].volume_ml == 0
    assert history[2][1].component is None


def test_a_new_lesion_gets_a_new_track() -> None:
    history = track_lesions(
        [
            _map((1, slice(5, 15), slice(5, 15))),
            _map((1, slice(5, 15), slice(5, 15)), (2, slice(25, 35), slice(45, 55))),
        ]
    )
    assert _statuses(history[1]) == {"L1": "continuing", "L2": "new"}


def test_a_split_lesion_keeps_its_track_on_the_larger_piece() -> None:
    history = track_lesions(
        [
            _map((1, slice(5, 25), slice(5, 35))),
            _map((1, slice(5, 25), slice(5, 22)), (2, slice(5, 25), slice(26, 35))),
        ]
    )
    second = {e.track: e for e in history[1]}
    assert second["L1"].status == "continuing"
    assert second["L1"].component == 1
    assert second["L2"].status == "split"
    assert second["L2"].split_from == "L1"


def test_merged_lesions_continue_the_larger_track() -> None:
    history = track_lesions(
        [
            _map((1, slice(5, 25), slice(5, 22)), (2, slice(5, 25), slice(26, 30))),
            _map((1, slice(5, 25), slice(5, 32))),
        ]
    )
    second = {e.track: e for e in history[1]}
    assert second["L1"].status == "merged"
    assert second["L1"].merged_from == ["L2"]
    assert second["L2"].status == "merged"
    assert second["L2"].merged_into == "L1"
    assert not second["L2"].present


def test_without_overlap_the_nearest_lesion_within_reach_continues() -> None:
    history = track_lesions(
        [
            _map((1, slice(5, 10), slice(5, 10))),
            _map((1, slice(5, 10), slice(12, 17))),  # moved 7 mm: no overlap, same lesion
            _map((1, slice(5, 10), slice(45, 50))),  # 33 mm away: a different lesion
        ],
        max_distance_mm=15.0,
    )
    assert _statuses(history[1]) == {"L1": "continuing"}
    assert _statuses(history[2]) == {"L1": "disappeared", "L2": "new"}


def test_a_lesion_that_returns_where_one_disappeared_reappears() -> None:
    history = track_lesions(
        [
            _map((1, slice(5, 12), slice(5, 12))),
            _map(),
            _map((1, slice(6, 12), slice(6, 12))),
        ]
    )
    assert [_statuses(v) for v in history] == [
        {"L1": "new"},
        {"L1": "disappeared"},
        {"L1": "reappeared"},
    ]


def test_maps_must_share_one_grid() -> None:
    other = image_from_array(np.zeros((10, 40, 61), np.uint16))
    with pytest.raises(GeometryMismatchError):
        track_lesions([_map(), other])
