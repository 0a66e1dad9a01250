"""The vocabularies every module shares: MRI sequences and tumour labels.

Internal label convention is BraTS 2023: 0 background, 1 necrotic / non-enhancing core (NCR),
2 oedema / surrounding FLAIR hyperintensity (ED), 3 enhancing tumour (ET). BraTS 2021 label 4 is
read as 3.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt


class Sequence(enum.StrEnum):
    """The four structural sequences of a visit, in the order the model takes them."""

    T1 = "t1"
    T1C = "t1c"
    T2 = "t2"
    FLAIR = "flair"

    @property
    def long_name(self) -> str:
        return _SEQUENCE_TITLES[self]


_SEQUENCE_TITLES = {
    Sequence.T1: "T1",
    Sequence.T1C: "T1 post-contrast",
    Sequence.T2: "T2",
    Sequence.FLAIR: "FLAIR",
}

ALL_SEQUENCES: tuple[Sequence, ...] = (Sequence.T1, Sequence.T1C, Sequence.T2, Sequence.FLAIR)

# Which sequence a visit-to-visit registration prefers when both visits have it.
REGISTRATION_PREFERENCE: tuple[Sequence, ...] = (
    Sequence.T1C,
    Sequence.T1,
    Sequence.FLAIR,
    Sequence.T2,
)


class TumorLabel(enum.IntEnum):
    BACKGROUND = 0
    NCR = 1
    ED = 2
    ET = 3


class Region(enum.StrEnum):
    ET = "ET"
    TC = "TC"
    WT = "WT"


REGION_LABELS: dict[Region, frozenset[TumorLabel]] = {
    Region.ET: frozenset({TumorLabel.ET}),
    Region.TC: frozenset({TumorLabel.NCR, TumorLabel.ET}),
    Region.WT: frozenset({TumorLabel.NCR, TumorLabel.ED, TumorLabel.ET}),
}

BRATS2021_ENHANCING = 4


def labels_from_brats2021(labels: npt.NDArray[np.integer]) -> npt.NDArray[np.uint8]:
    """Map BraTS 2021 labels (1 NCR, 2 ED, 4 ET) onto the internal convention.

    >>> labels_from_brats2021(np.array([0, 1, 2, 4])).tolist()
    [0, 1, 2, 3]
    """
    out = labels.astype(np.uint8, copy=True)
    out[labels == BRATS2021_ENHANCING] = TumorLabel.ET
    return out


class LabelConvention(enum.StrEnum):
    BRATS2023 = "brats2023"
    BRATS2021 = "brats2021"
    BRATS2015 = "brats2015"
    BINARY = "binary"


def detect_label_convention(values: set[int]) -> LabelConvention:
    """Guess the convention of a label map from the labels it holds.

    BraTS 2015 uses 1 necrosis, 2 oedema, 3 non-enhancing core, 4 enhancing; BraTS 2021 drops 3;
    BraTS 2023 moves enhancing to 3.

    >>> detect_label_convention({0, 1, 2, 4}).value
    'brats2021'
    >>> detect_label_convention({0, 1, 2, 3, 4}).value
    'brats2015'
    >>> detect_label_convention({0, 1}).value
    'binary'
    """
    if BRATS2021_ENHANCING in values:
        return LabelConvention.BRATS2015 if 3 in values else LabelConvention.BRATS2021
    if values <= {0, 1}:
        return LabelConvention.BINARY
    return LabelConvention.BRATS2023


def labels_to_internal(
    labels: npt.NDArray[np.integer], convention: LabelConvention
) -> npt.NDArray[np.uint8]:
    """Map a label array in ``convention`` onto the internal (BraTS 2023) labels.

    A binary tumour mask has no compartments; it is kept as 0/1 and the caller must say so.

    >>> labels_to_internal(np.array([0, 1, 2, 3, 4]), LabelConvention.BRATS2015).tolist()
    [0, 1, 2, 1, 3]
    """
    if convention is LabelConvention.BRATS2021:
        return labels_from_brats2021(labels)
    out = labels.astype(np.uint8, copy=True)
    if convention is LabelConvention.BRATS2015:
        out[labels == 3] = TumorLabel.NCR  # non-enhancing core belongs to the tumour core
        out[labels == BRATS2021_ENHANCING] = TumorLabel.ET
    return out
