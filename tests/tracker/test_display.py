"""Chains of stored registrations: how another visit is brought onto a visit it was never
registered to directly (through the baseline, or the prior)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tracker.services.display import registration_path


def registration(moving_visit: int, fixed_visit: int) -> Any:
    """A stored registration of visit ``moving_visit``'s run onto visit ``fixed_visit``."""
    return SimpleNamespace(
        run=SimpleNamespace(visit_id=moving_visit),
        to_visit_id=fixed_visit,
        name=f"{moving_visit}->{fixed_visit}",
    )


# Visits 1 (baseline) to 4: each follow-up registered to its prior and to the baseline.
STORED = [
    registration(2, 1),  # visit 2's prior is the baseline: one registration
    registration(3, 2),
    registration(3, 1),
    registration(4, 3),
    registration(4, 1),
]


def names(path: Any) -> list[tuple[str, bool]]:
    return [(r.name, forwards) for r, forwards in path]


def test_a_direct_registration_is_used_as_stored() -> None:
    # from the baseline's space onto visit 3's: the stored transform, forwards
    assert names(registration_path(STORED, 1, 3)) == [("3->1", True)]
    # the other way round: its inverse
    assert names(registration_path(STORED, 3, 1)) == [("3->1", False)]


def test_visits_never_registered_to_each_other_are_joined_through_a_shared_one() -> None:
    path = names(registration_path(STORED, 2, 4))
    assert len(path) == 2
    # out of visit 2's space (backwards along a registration of 2, or forwards along one of
    # 3 onto 2), then into visit 4's (forwards along a registration of visit 4)
    assert path[0] in {("2->1", False), ("3->2", True)}
    assert path[1][0].startswith("4->")
    assert path[1][1]


def test_the_same_visit_needs_nothing_and_an_unjoined_visit_is_said_so() -> None:
    assert registration_path(STORED, 3, 3) == []
    assert registration_path(STORED, 5, 1) is None
    assert registration_path([], 1, 2) is None
