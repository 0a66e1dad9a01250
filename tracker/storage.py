"""Where the service keeps its files: every path under ``MEDIA_ROOT`` is named here, and the
database stores them relative to it (``stored``), so a media volume can move.

    visits/<visit>/original/<sequence>.nii[.gz]   the uploaded scans, read-only
    runs/<run>/prepared/                          the prepared sequences, brain mask, QC record
    runs/<run>/segmentation/                      labels, tumour probability, the model's report
    runs/<run>/lesions[-t2flair].nii.gz           the numbered lesions of the core, of T2/FLAIR
    runs/<run>/to-<visit>.tfm                     the registration onto an earlier visit
    runs/<run>/display/                           8-bit layers for the viewer and the reports
    staging/upload-*/                             an upload while it is checked
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from inference.imaging.preprocess import PREPARED_NAMES
from inference.labels import Sequence


def media(path: str | Path) -> Path:
    """A stored (relative) path as a file."""
    return Path(settings.MEDIA_ROOT) / path


def stored(path: Path) -> str:
    """A file under ``MEDIA_ROOT`` as the database stores it."""
    return str(path.relative_to(settings.MEDIA_ROOT))


def original_folder(visit: Any) -> Path:
    return media(f"visits/{visit.code}/original")


def staging_root() -> Path:
    return media("staging")


@dataclass(frozen=True)
class RunFiles:
    """The files of one analysis run."""

    root: Path

    @property
    def prepared(self) -> Path:
        return self.root / "prepared"

    @property
    def qc(self) -> Path:
        return self.prepared / "qc.json"

    @property
    def segmentation(self) -> Path:
        return self.root / "segmentation"

    @property
    def labels(self) -> Path:
        return self.segmentation / "seg.nii.gz"

    @property
    def probabilities(self) -> Path:
        return self.segmentation / "prob.nii.gz"

    @property
    def segmentation_report(self) -> Path:
        return self.segmentation / "segmentation.json"

    @property
    def lesions(self) -> Path:
        return self.root / "lesions.nii.gz"

    @property
    def t2_flair_lesions(self) -> Path:
        return self.root / "lesions-t2flair.nii.gz"

    @property
    def display(self) -> Path:
        return self.root / "display"

    def prepared_image(self, sequence: Sequence) -> Path:
        return self.prepared / PREPARED_NAMES[sequence]

    def transform_to(self, visit: Any) -> Path:
        return self.root / f"to-{visit.code}.tfm"


def run_files(run: Any) -> RunFiles:
    return RunFiles(media(run.folder))


def viewer_volume(run: Any, name: str) -> Path | None:
    """A volume the WebGL viewer may fetch, by name: the prepared (normalised) T1c or FLAIR,
    the original (as acquired) ones, the labels; None for any other name or a missing file."""
    files = run_files(run)
    volumes = {
        "t1c": files.prepared_image(Sequence.T1C),
        "flair": files.prepared_image(Sequence.FLAIR),
        "seg": files.labels,
    }
    if name in volumes:
        return volumes[name]
    if name in {f"original-{s.value}" for s in (Sequence.T1C, Sequence.FLAIR)}:
        sequence = name.removeprefix("original-")
        return next(iter(sorted(original_folder(run.visit).glob(f"{sequence}.nii*"))), None)
    return None
