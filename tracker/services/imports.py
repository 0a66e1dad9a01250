"""Visits from folders on disk (bulk import, the demo cohort): the same checks and storage as an
upload. DICOM series are converted to NIfTI first (geometry kept). A folder without T1
post-contrast or FLAIR is refused before anything is converted (``MissingSequenceError`` naming
the files or series it found)."""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from django.core.files import File

from inference.imaging.io import DicomSeries, find_segmentable_files, read_dicom_series, write_image
from tracker.models import Patient, Visit
from tracker.services.uploads import FIELDS
from tracker.services.visits import visit_create

_FIELD_OF = {sequence: name for name, sequence in FIELDS.items()}


def visit_create_from_folder(
    *, patient: Patient, acquired_on: dt.date, folder: Path, by: Any = None, **fields: Any
) -> Visit:
    files = find_segmentable_files(folder)
    with tempfile.TemporaryDirectory(prefix="import-") as scratch, contextlib.ExitStack() as stack:
        uploads = {}
        for sequence, source in files.sequences.items():
            if isinstance(source, DicomSeries):
                path = Path(scratch) / f"{sequence.value}.nii.gz"
                write_image(read_dicom_series(source), path)
            else:
                path = Path(source)
            handle = stack.enter_context(path.open("rb"))
            uploads[_FIELD_OF[sequence]] = File(handle, name=path.name)
        return visit_create(
            patient=patient, acquired_on=acquired_on, files=uploads, by=by, **fields
        )
