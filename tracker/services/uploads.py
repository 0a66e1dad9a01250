"""Checking an uploaded visit before anything is stored: NIfTI files (one field per sequence,
named as ``inference.labels.Sequence``: ``t1``, ``t1c``, ``t2``, ``flair``; T1 post-contrast or
FLAIR at least, the others when the visit has them) or one zip (``archive``) of NIfTI files or
of DICOM series (a PACS export). ``t1ce``, the field's name before December 2026, is still
accepted for ``t1c``.

A DICOM series is recognised by its SeriesDescription / ProtocolName
(``inference.imaging.io.classify_series_description``), read with the same checks as a NIfTI
file and stored as NIfTI: the DICOM files themselves, with the names and identifiers in their
headers, are not kept. Their scan date (StudyDate) is kept, and is the visit's date where the
upload gives none.

Files are copied into a private staging folder under names of our own (never the uploaded file
name), read and validated by ``inference`` (headers, truncation, dimensions, NaN voxels,
spacing, one head), and each problem is reported against the field it came from. Zip entries are
checked before extraction: no absolute or parent paths, no links, at most
``TRACKER_ZIP_MAX_ENTRIES`` entries and ``TRACKER_MAX_UPLOAD_MB`` uncompressed; an uncompressed
NIfTI entry is extracted only as far as its header says it reaches (its dimensions checked
first), so a small archive cannot fill the disk. A gzip-compressed NIfTI is never expanded past
what its header describes either (``inference.imaging.io``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import nibabel as nib
import SimpleITK as sitk
from django.conf import settings
from django.core.files import File
from django.utils import timezone

from inference.errors import InputError, VisitInputError
from inference.imaging.io import (
    NIFTI_SUFFIXES,
    DicomSeries,
    classify_filename,
    find_visit_files,
    nifti_payload_bytes,
    read_dicom_series,
    read_image,
    read_visit,
)
from inference.imaging.validate import SEGMENTABLE, ImageLimits, check_segmentable
from inference.labels import ALL_SEQUENCES, Sequence
from tracker.storage import staging_root

FIELDS: dict[str, Sequence] = {s.value: s for s in ALL_SEQUENCES}
# Earlier names of a field, still accepted (an integration written against them keeps working).
ALIASES: dict[str, Sequence] = {"t1ce": Sequence.T1C}
ARCHIVE_FIELD = "archive"
# Every file field of an upload form: name -> (sequence, a note for the documentation).
UPLOAD_FIELDS: dict[str, tuple[Sequence, str]] = {
    **{name: (sequence, "") for name, sequence in FIELDS.items()},
    **{name: (s, f" (former name of {s.value}, still accepted)") for name, s in ALIASES.items()},
}
_STAGED = {
    Sequence.T1: "upload-t1n",
    Sequence.T1C: "upload-t1c",
    Sequence.T2: "upload-t2w",
    Sequence.FLAIR: "upload-t2f",
}
_CHUNK = 1024 * 1024


class UploadError(Exception):
    """Problems with an upload, by field: ``{"t1c": ["truncated: ..."], ...}``."""

    def __init__(self, problems: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in problems.items()))
        self.problems = problems


@dataclass
class StagedVisit:
    """Validated files in a private folder, ready to be stored (then ``cleanup``)."""

    folder: Path
    files: dict[Sequence, Path]
    sha256: dict[Sequence, str]
    geometry: dict[Sequence, dict[str, Any]] = field(default_factory=dict)
    # sequences that came as DICOM series: where from, and the scan date in their headers
    dicom: dict[Sequence, DicomSeries] = field(default_factory=dict)

    @property
    def scan_dates(self) -> set[dt.date]:
        """The scan dates the DICOM headers give (none for NIfTI files), leaving out the ones
        no scan can have: anonymised exports write placeholders such as 1900-01-01."""
        return {
            s.scanned_on
            for s in self.dicom.values()
            if s.scanned_on is not None and not scan_date_problem(s.scanned_on)
        }

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def limit_bytes() -> int:
    return int(settings.TRACKER_MAX_UPLOAD_MB) * 1024 * 1024


def _suffix(head: bytes) -> str:
    return ".nii.gz" if head[:2] == b"\x1f\x8b" else ".nii"


def _copy(upload: File[Any], target_stem: Path) -> tuple[Path, str]:
    digest = hashlib.sha256()
    upload.seek(0)
    head = upload.read(2)
    upload.seek(0)
    path = target_stem.with_name(target_stem.name + _suffix(head))
    with path.open("wb") as out:
        for chunk in upload.chunks(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return path, digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Refused(Exception):
    """An archive refused as a whole, with the reason."""


def _unzip(
    archive: File[Any], folder: Path
) -> tuple[dict[Sequence, Path], dict[str, list[str]], dict[Sequence, DicomSeries]]:
    """The archive's NIfTI sequences; or, where it holds none, its DICOM series converted to
    NIfTI (with where each came from)."""
    problems: dict[str, list[str]] = {}
    files: dict[Sequence, Path] = {}
    others: list[zipfile.ZipInfo] = []  # maybe DICOM
    try:
        with zipfile.ZipFile(archive) as bundle:
            entries = [e for e in bundle.infolist() if not e.is_dir()]
            if len(entries) > settings.TRACKER_ZIP_MAX_ENTRIES:
                raise _Refused(
                    f"{len(entries)} entries, more than {settings.TRACKER_ZIP_MAX_ENTRIES}"
                )
            total = sum(e.file_size for e in entries)
            if total > limit_bytes():
                raise _Refused(f"{total} bytes uncompressed, more than {limit_bytes()}")
            for entry in entries:
                name = PurePosixPath(entry.filename.replace("\\", "/"))
                if name.is_absolute() or ".." in name.parts:
                    raise _Refused(f"entry {entry.filename!r} points outside the archive")
                if (entry.external_attr >> 16) & 0o170000 == 0o120000:
                    raise _Refused(f"entry {entry.filename!r} is a link")
                role = classify_filename(name.name)
                if not isinstance(role, Sequence):
                    if not name.name.lower().endswith(NIFTI_SUFFIXES):
                        others.append(entry)
                    continue  # segmentations, masks, notes: not part of an upload
                if role in files:
                    problems.setdefault("archive", []).append(
                        f"two files for {role.long_name}: {name.name} and another"
                    )
                    continue
                target = folder / (
                    _STAGED[role] + (".nii.gz" if name.name.lower().endswith(".gz") else ".nii")
                )
                with bundle.open(entry) as source, target.open("wb") as out:
                    problem = _extract(source, out, name.name)
                if problem:
                    raise _Refused(problem)
                files[role] = target
            if files or not others:
                return files, problems, {}
            # No NIfTI sequence: DICOM files, flat under names of our own (the zip's sizes,
            # checked above, bound each entry).
            dicom_folder = folder / "dicom"
            dicom_folder.mkdir()
            for number, entry in enumerate(others):
                with (
                    bundle.open(entry) as source,
                    (dicom_folder / f"{number:06d}").open("wb") as out,
                ):
                    shutil.copyfileobj(source, out, _CHUNK)
    except _Refused as refused:
        return {}, {"archive": [str(refused)]}, {}
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        return {}, {"archive": [f"not a readable zip archive ({error})"]}, {}
    except NotImplementedError as error:  # Deflate64 (Windows' large zips) and the like
        return (
            {},
            {
                "archive": [
                    f"a compression this server cannot read ({error}); zip it "
                    "again with ordinary deflate"
                ]
            },
            {},
        )
    except RuntimeError as error:  # an encrypted entry
        return {}, {"archive": [f"cannot be read ({error}); send it without a password"]}, {}
    try:
        return _from_dicom(dicom_folder, folder)
    finally:
        shutil.rmtree(dicom_folder, ignore_errors=True)  # their headers name the patient


def _from_dicom(
    dicom_folder: Path, folder: Path
) -> tuple[dict[Sequence, Path], dict[str, list[str]], dict[Sequence, DicomSeries]]:
    """The DICOM series of an archive, each recognised sequence read and written as NIfTI."""
    try:
        found = find_visit_files(dicom_folder)
    except InputError as error:
        return {}, {"archive": [_plain(error.message, dicom_folder)]}, {}
    series = {s: source for s, source in found.sequences.items() if isinstance(source, DicomSeries)}
    if not series:
        ignored = "; ".join(found.ignored) or "no DICOM series"
        return (
            {},
            {"archive": [f"neither NIfTI sequences nor a DICOM series of them ({ignored})"]},
            {},
        )
    files: dict[Sequence, Path] = {}
    problems: dict[str, list[str]] = {}
    for sequence, source in series.items():
        try:
            image = read_dicom_series(source)
        except InputError as error:
            problems.setdefault("archive", []).append(_plain(error.message, dicom_folder))
            continue
        target = folder / f"{_STAGED[sequence]}.nii.gz"
        try:
            sitk.WriteImage(image, str(target), useCompression=True)
        except RuntimeError as error:
            problems.setdefault("archive", []).append(
                f"{source.label}: cannot be converted to NIfTI ({str(error).splitlines()[-1]})"
            )
            continue
        files[sequence] = target
    return files, problems, series


_SLACK = 1 << 20  # bytes an uncompressed entry may hold past what its header describes


def _extract(source: Any, out: Any, name: str) -> str:
    """Copy one zip entry; '' when done, else the problem. A gzip-compressed entry is copied as
    it is (the zip's own sizes bound it); an uncompressed NIfTI entry only as far as its header
    says, after checking the header's dimensions against the voxel limit."""
    if name.lower().endswith(".gz"):
        shutil.copyfileobj(source, out, _CHUNK)
        return ""
    head = source.read(544)
    out.write(head)
    try:
        kind = (
            nib.Nifti2Header
            if head[:4] in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c")
            else nib.Nifti1Header
        )
        header = kind.from_fileobj(io.BytesIO(head))
        allowed = nifti_payload_bytes(name, header, ImageLimits()) + _SLACK
    except InputError as error:
        return error.message
    except Exception as error:  # nibabel raises many types for a bad header
        return f"{name}: not a readable NIfTI header ({error})"
    written = len(head)
    while chunk := source.read(_CHUNK):
        written += len(chunk)
        if written > allowed:
            return (
                f"{name}: holds more than the {allowed - _SLACK:,} bytes its header describes; "
                "extraction stopped"
            )
        out.write(chunk)
    return ""


def stage_upload(files: dict[str, File[Any]], archive: File[Any] | None) -> StagedVisit:
    """Copy, read and validate an upload; every problem raises one ``UploadError`` naming each
    bad field. Nothing is stored: the caller keeps or discards the staging folder."""
    if not files and archive is None:
        names = ", ".join(f"{name} ({sequence.long_name})" for name, sequence in FIELDS.items())
        raise UploadError(
            {
                "upload": [
                    f"no file chosen: send the visit's NIfTI files, {names}, with T1 "
                    f"post-contrast or FLAIR at least; or one zip as {ARCHIVE_FIELD}"
                ]
            }
        )
    unknown = sorted(set(files) - set(UPLOAD_FIELDS))
    problems: dict[str, list[str]] = {name: ["not an upload field"] for name in unknown}
    for alias, sequence in ALIASES.items():
        if alias in files and sequence.value in files:
            problems[alias] = [f"the same sequence as {sequence.value}: send it once"]
    total = sum(f.size or 0 for f in files.values()) + (archive.size or 0 if archive else 0)
    if total > limit_bytes():
        raise UploadError({"upload": [f"{total} bytes, more than {limit_bytes()}"]})
    if archive is not None and files:
        raise UploadError({"archive": ["send either the files or one archive, not both"]})
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=_staging_root()))
    try:
        staged: dict[Sequence, Path] = {}
        sha: dict[Sequence, str] = {}
        field_of: dict[Sequence, str] = {}
        dicom: dict[Sequence, DicomSeries] = {}
        if archive is not None:
            staged, zip_problems, dicom = _unzip(archive, folder)
            problems.update(zip_problems)
            for sequence, path in staged.items():
                sha[sequence] = _sha256(path)
                field_of[sequence] = f"archive ({sequence.long_name})"
        else:
            for name, (sequence, _) in UPLOAD_FIELDS.items():
                if name not in files or sequence in staged:
                    continue
                path, digest = _copy(files[name], folder / _STAGED[sequence])
                staged[sequence], sha[sequence], field_of[sequence] = path, digest, name
        for sequence, other in _same_content(sha):
            problems.setdefault(field_of[sequence], []).append(
                f"the same file as {field_of[other]} (identical content): each sequence is a "
                "scan of its own"
            )
        if not problems.get("archive"):
            try:
                check_segmentable(list(staged))
            except InputError as error:
                # Named against each missing field it could have come in (or the archive).
                keys = [n for n, s in FIELDS.items() if s in SEGMENTABLE] if archive is None else []
                for key in keys or ["archive"]:
                    problems.setdefault(key, []).append(error.message)
        geometry: dict[Sequence, dict[str, Any]] = {}
        for sequence, path in staged.items():
            try:
                image = read_image(path)
            except InputError as error:
                problems.setdefault(field_of[sequence], []).append(_plain(error.message, path))
                continue
            geometry[sequence] = {
                "size": list(image.GetSize()),
                "spacing_mm": [round(s, 5) for s in image.GetSpacing()],
                "origin_mm": [round(o, 4) for o in image.GetOrigin()],
                "direction": [round(d, 6) for d in image.GetDirection()],
            }
            if sequence in dicom:
                source = dicom[sequence]
                geometry[sequence]["source"] = {
                    "dicom_series": source.description or source.protocol,
                    "scanned_on": source.scanned_on.isoformat() if source.scanned_on else None,
                }
        if not problems:
            try:
                read_visit(folder)
            except VisitInputError as error:
                for problem in error.problems:
                    problems.setdefault("visit", []).append(_plain(problem.message, None))
            except InputError as error:
                problems.setdefault("visit", []).append(_plain(error.message, None))
        if problems:
            raise UploadError(problems)
        return StagedVisit(folder, staged, sha, geometry, dicom)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


EARLIEST_SCAN = dt.date(1980, 1, 1)


def scan_date_problem(value: dt.date) -> str:
    """Why a date cannot be a scan date ('' if it can): not in the future, not before MRI was
    in use."""
    today = timezone.localdate()
    if value > today:
        return f"{value} is in the future (today is {today})"
    if value < EARLIEST_SCAN:
        return f"{value} is before {EARLIEST_SCAN}: not a date of a digital MRI scan"
    return ""


def scan_date_resolve(given: dt.date | None, staged: StagedVisit) -> dt.date:
    """The visit's date: the one given, checked against the DICOM headers' where the upload
    has them; else theirs. ``UploadError`` (on ``acquired_on``) says what does not agree."""
    found = sorted(staged.scan_dates)
    shown = ", ".join(d.isoformat() for d in found)
    if len(found) > 1:
        raise UploadError(
            {
                "acquired_on": [
                    f"the DICOM series were scanned on different days ({shown}): one visit is "
                    "one session; send each day's series as its own visit"
                ]
            }
        )
    if given is not None:
        if found and given not in found:
            raise UploadError(
                {
                    "acquired_on": [
                        f"{given} is not the scan date in the DICOM headers ({shown}): correct "
                        "the date, or check that these are this visit's images"
                    ]
                }
            )
        return given
    if not found:
        raise UploadError(
            {
                "acquired_on": [
                    "the scan date is required: the upload's DICOM headers give none (or only a "
                    "placeholder such as an anonymised export writes)"
                ]
            }
        )
    return found[0]


def _same_content(sha: dict[Sequence, str]) -> list[tuple[Sequence, Sequence]]:
    """(sequence, the earlier sequence with the same bytes) for every repeat."""
    first: dict[str, Sequence] = {}
    repeats = []
    for sequence, digest in sha.items():
        if digest in first:
            repeats.append((sequence, first[digest]))
        else:
            first[digest] = sequence
    return repeats


def _plain(message: str, path: Path | None) -> str:
    """The message without our staging names (the person never sent those): the field it is
    listed under names the file."""
    text = message
    if path is not None:
        text = text.replace(str(path), "the file").replace(path.name, "the file")
    for staged in _STAGED.values():
        for suffix in (".nii.gz", ".nii"):
            text = text.replace(staged + suffix, "the file")
    return text.removeprefix("the file: ")


STAGING_KEPT_S = 3600  # no upload is checked for longer than this


def clean_stale_staging(*, older_than_s: int = STAGING_KEPT_S) -> int:
    """Remove staging folders a killed web worker left behind (untouched for ``older_than_s``);
    run when the web server starts and by the sweeper. Returns how many were removed."""
    root = staging_root()
    if not root.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for folder in [*root.glob("upload-*"), *root.glob("correction-*")]:
        try:
            stale = folder.is_dir() and folder.stat().st_mtime < cutoff
        except FileNotFoundError:
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _staging_root() -> Path:
    root = staging_root()
    root.mkdir(parents=True, exist_ok=True)
    return root
