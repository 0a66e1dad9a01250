"""Reading and writing visits: NIfTI files in any common naming, and DICOM series.

A visit folder holds up to four structural sequences (see ``labels.Sequence``; T1 post-contrast
or FLAIR at least, see ``read_visit``), optionally a tumour segmentation (``*seg*``, ``*mask*``,
...) and a reference brain mask (``*brainmask*``). Names are matched case-insensitively on the
tokens of the file name, so BraTS 2021 (``_t1ce``), BraTS 2023 (``-t1c``), LUMIERE (``CT1``),
nnU-Net (``_0001``) and names found in the wild (``_fla``, ``_t1gd``, ``T1W``) all work. DICOM
series are matched on SeriesDescription, then ProtocolName.

Every reader returns SimpleITK images, so geometry travels with the voxels. Every writer writes to
a temporary name first and renames, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import os
import re
import shutil
import sys
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from isal import igzip, isal_zlib
from nibabel.volumeutils import apply_read_scaling

from inference.errors import (
    DuplicateSequenceError,
    FileTooLargeError,
    GeometryMismatchError,
    InputError,
    MissingSequenceError,
    NotThreeDimensionalError,
    TruncatedFileError,
    UnreadableFileError,
    VisitInputError,
)
from inference.files import atomic_path
from inference.imaging.cache import images as image_cache
from inference.imaging.validate import (
    SEGMENTABLE,
    ImageLimits,
    check_header,
    check_raw_values,
    check_same_head,
    check_segmentable,
    check_voxels,
)
from inference.labels import (
    ALL_SEQUENCES,
    LabelConvention,
    Sequence,
    detect_label_convention,
    labels_to_internal,
)

NIFTI_SUFFIXES = (".nii.gz", ".nii")


class MapKind(enum.StrEnum):
    SEGMENTATION = "segmentation"
    BRAIN_MASK = "brain_mask"


FileRole = Sequence | MapKind

# Tokens of a file name (lower case, punctuation removed) that name a sequence.
_SEQUENCE_TOKENS: dict[str, Sequence] = {
    **dict.fromkeys(
        ["t1", "t1n", "t1w", "t1pre", "t1native", "mprage", "t1mprage", "0000"], Sequence.T1
    ),
    **dict.fromkeys(
        [
            "t1c",
            "t1ce",
            "t1gd",
            "t1gad",
            "t1post",
            "t1postcontrast",
            "t1contrast",
            "t1wce",
            "t1cw",
            "ct1",
            "t1plusc",
            "t1pc",
            "0001",
        ],
        Sequence.T1C,
    ),
    **dict.fromkeys(["t2", "t2w", "t2wi", "t2tse", "0002"], Sequence.T2),
    **dict.fromkeys(["flair", "fla", "t2f", "t2flair", "flairw", "0003"], Sequence.FLAIR),
}
_NNUNET_CHANNELS = {"0000", "0001", "0002", "0003"}
_SEGMENTATION_TOKENS = {
    "seg",
    "segmentation",
    "mask",
    "label",
    "labels",
    "gt",
    "groundtruth",
    "truth",
    "ot",
    "otmulticlass",
    "annotation",
    "tumor",
    "tumour",
}
_BRAIN_MASK_TOKENS = {"brainmask", "brain_mask", "skullstrip", "bet"}


def _stem(name: str) -> str:
    lowered = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _tokens(stem: str) -> list[str]:
    text = stem.lower().replace("+c", "plusc").replace("+", "plus")
    return [t for t in re.split(r"[^a-z0-9]+", text) if t]


def classify_filename(name: str) -> FileRole | None:
    """The role of a NIfTI file from its name, or None if it is not part of a visit.

    >>> [classify_filename(n) for n in ["BraTS-GLI-00001-000-t2f.nii.gz", "case_t1ce.nii"]]
    [<Sequence.FLAIR: 'flair'>, <Sequence.T1C: 't1c'>]
    >>> classify_filename("TCGA-FG-6692_t1c_hdbet_brainmask.nii.gz")
    <MapKind.BRAIN_MASK: 'brain_mask'>
    >>> classify_filename("BraTS2021_00000_seg.nii.gz")
    <MapKind.SEGMENTATION: 'segmentation'>
    >>> classify_filename("notes.txt") is None
    True
    """
    if not name.lower().endswith(NIFTI_SUFFIXES) or name.startswith("."):
        return None
    tokens = _tokens(_stem(name))
    joined = "".join(tokens)
    if (
        any(t in _BRAIN_MASK_TOKENS or t.endswith("brainmask") for t in tokens)
        or "brainmask" in joined
    ):
        return MapKind.BRAIN_MASK
    if any(t in _SEGMENTATION_TOKENS or t.startswith("seg") or t.endswith("mask") for t in tokens):
        return MapKind.SEGMENTATION
    for i in range(len(tokens) - 1, -1, -1):
        # "t1_gd", "t1 post", "t2_flair": a weighting followed by its qualifier
        if (
            i > 0
            and tokens[i - 1] in {"t1", "t2"}
            and tokens[i - 1] + tokens[i] in _SEQUENCE_TOKENS
        ):
            return _SEQUENCE_TOKENS[tokens[i - 1] + tokens[i]]
        token = tokens[i]
        if token in _NNUNET_CHANNELS and i != len(tokens) - 1:
            continue  # nnU-Net channel numbers are only read at the very end of a name
        if token in _SEQUENCE_TOKENS:
            return _SEQUENCE_TOKENS[token]
    return None


# DICOM: SeriesDescription / ProtocolName patterns, checked in this order.
_DICOM_IGNORED = re.compile(
    r"local|scout|survey|\bloc\b|dwi|diffusion|\badc\b|\btrace\b|perf|\bdsc\b|\bdce\b|\bswi\b|"
    r"t2\s*\*|t2star|\bgre\b|\bmra\b|\btof\b|calib|\bmap\b|\bphase\b|\bsub\b"
)
_DICOM_FLAIR = re.compile(r"flair|\bt2f\b|dark\s*fluid|\bfla\b|\bir[-_ ]?fse\b")
_DICOM_T1 = re.compile(r"t1|mprage|mp-rage|spgr|bravo|\btfe\b|vibe|\bse\s*t1")
_DICOM_CONTRAST = re.compile(
    r"post|\+\s*c\b|\bc\s*\+|\bc\+|\+\s*gd|\bgd\b|gad|contrast|\bce\b|t1c\b|t1ce|t1gd|\bc\b|"
    r"enhanc|\bmdc\b|\bkm\b|postgd|\bwith\b"
)
_DICOM_T2 = re.compile(r"t2|\btse\b|\bfse\b")


def classify_series_description(text: str) -> Sequence | None:
    """The sequence a DICOM SeriesDescription / ProtocolName names, or None.

    >>> [classify_series_description(t) for t in ["T1 MPRAGE", "T1+C", "AX FLAIR", "T2 TSE"]]
    [<Sequence.T1: 't1'>, <Sequence.T1C: 't1c'>, <Sequence.FLAIR: 'flair'>, <Sequence.T2: 't2'>]
    >>> classify_series_description("AX T1 POST GD"), classify_series_description("Localizer")
    (<Sequence.T1C: 't1c'>, None)
    """
    lowered = " " + text.lower().replace("_", " ") + " "
    if _DICOM_FLAIR.search(lowered):
        return Sequence.FLAIR
    if _DICOM_IGNORED.search(lowered):
        return None
    if _DICOM_T1.search(lowered):
        return Sequence.T1C if _DICOM_CONTRAST.search(lowered) else Sequence.T1
    if _DICOM_T2.search(lowered):
        return Sequence.T2
    return None


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series found in a visit folder."""

    folder: Path
    series_uid: str
    files: tuple[str, ...]
    description: str
    protocol: str
    # StudyDate (0008,0020), else SeriesDate, else AcquisitionDate: the day of the scan
    scanned_on: dt.date | None = None

    @property
    def label(self) -> str:
        return f"DICOM series '{self.description or self.protocol or self.series_uid}'"


def dicom_date(text: str) -> dt.date | None:
    """A DICOM DA value (YYYYMMDD; the old YYYY.MM.DD too) as a date, None if empty or not a
    date."""
    digits = text.strip().replace(".", "")
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


Source = Path | DicomSeries


def source_label(source: Source) -> str:
    return source.label if isinstance(source, DicomSeries) else source.name


@dataclass
class VisitFiles:
    """What a visit folder holds, before any voxel is read."""

    folder: Path
    sequences: dict[Sequence, Source] = field(default_factory=dict)
    segmentation: Path | None = None
    brain_mask: Path | None = None
    ignored: list[str] = field(default_factory=list)


@dataclass
class Visit:
    """A visit's images as read, each on its own grid."""

    folder: Path
    images: dict[Sequence, sitk.Image]
    sources: dict[Sequence, str]
    segmentation: sitk.Image | None = None
    label_convention: LabelConvention | None = None
    brain_mask: sitk.Image | None = None
    ignored: list[str] = field(default_factory=list)


def _parse_overrides(overrides: Mapping[str, str] | None) -> dict[str, Sequence | None]:
    parsed: dict[str, Sequence | None] = {}
    for description, target in (overrides or {}).items():
        key = description.strip().lower()
        value = target.strip().lower()
        if value in {"ignore", "skip", "none", ""}:
            parsed[key] = None
        else:
            try:
                parsed[key] = Sequence(value)
            except ValueError as error:
                choices = ", ".join([s.value for s in ALL_SEQUENCES] + ["ignore"])
                raise InputError(
                    f"series override '{description}={target}': unknown sequence '{target}' "
                    f"(choose {choices})"
                ) from error
    return parsed


def _quietly(call: Any, *args: Any) -> Any:
    """``call(*args)`` with ITK's warnings off: GDCM warns "No Series were found" for every
    folder without DICOM, which is an answer here, not a problem."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return call(*args)
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _dicom_series_in(folder: Path) -> list[DicomSeries]:
    found = []
    reader = sitk.ImageSeriesReader()
    for directory in sorted({folder, *(p for p in folder.rglob("*") if p.is_dir())}):
        if not any(
            f.is_file() and not f.name.lower().endswith(NIFTI_SUFFIXES) for f in directory.iterdir()
        ):
            continue
        for uid in _quietly(reader.GetGDCMSeriesIDs, str(directory)):
            files = tuple(reader.GetGDCMSeriesFileNames(str(directory), uid))
            if not files:
                continue
            header = sitk.ImageFileReader()
            header.SetFileName(files[0])
            try:
                header.ReadImageInformation()
            except RuntimeError:
                continue

            def tag(key: str, h: sitk.ImageFileReader = header) -> str:
                return h.GetMetaData(key).strip() if h.HasMetaDataKey(key) else ""

            dates = (dicom_date(tag(key)) for key in ("0008|0020", "0008|0021", "0008|0022"))
            found.append(
                DicomSeries(
                    directory,
                    uid,
                    files,
                    tag("0008|103e"),
                    tag("0018|1030"),
                    next((d for d in dates if d is not None), None),
                )
            )
    return found


def find_visit_files(
    folder: Path | str, *, series_overrides: Mapping[str, str] | None = None
) -> VisitFiles:
    """Sort the files of a visit folder into sequences, label maps and ignored files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UnreadableFileError(f"{folder}: not a folder", path=folder)
    if not os.access(folder, os.R_OK | os.X_OK):
        raise UnreadableFileError(f"{folder}: permission denied", path=folder)
    overrides = _parse_overrides(series_overrides)
    visit = VisitFiles(folder)
    claims: dict[Sequence, list[Source]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        role = classify_filename(path.name)
        if role is None:
            if path.name.lower().endswith(NIFTI_SUFFIXES):
                visit.ignored.append(f"{path.name} (name matches no sequence)")
            continue
        if role is MapKind.SEGMENTATION:
            if visit.segmentation is not None:
                raise DuplicateSequenceError(
                    f"two segmentation files: {visit.segmentation.name} and {path.name}",
                    path=path,
                )
            visit.segmentation = path
        elif role is MapKind.BRAIN_MASK:
            visit.brain_mask = path
        else:
            claims.setdefault(role, []).append(path)
    for series in _dicom_series_in(folder):
        keys = [series.description.lower(), series.protocol.lower()]
        override = next((k for k in keys if k in overrides), None)
        if override is not None:
            sequence = overrides[override]
        else:
            sequence = classify_series_description(series.description) or (
                classify_series_description(series.protocol)
            )
        if sequence is None:
            visit.ignored.append(f"{series.label} (not a T1, T1 post-contrast, T2 or FLAIR)")
            continue
        claims.setdefault(sequence, []).append(series)
    for sequence, sources in claims.items():
        if len(sources) > 1:
            names = " and ".join(source_label(s) for s in sources)
            raise DuplicateSequenceError(
                f"{sequence.long_name} appears more than once ({names}); keep one, or map the "
                "others with a series override",
                path=folder,
            )
        visit.sequences[sequence] = sources[0]
    return visit


def _check_readable(path: Path, limits: ImageLimits) -> None:
    if not path.exists():
        raise UnreadableFileError(f"{path.name}: file not found", path=path)
    try:
        with open(path, "rb"):
            pass
    except PermissionError as error:
        raise UnreadableFileError(f"{path.name}: permission denied", path=path) from error
    except OSError as error:
        raise UnreadableFileError(
            f"{path.name}: cannot be opened ({error.strerror})", path=path
        ) from error
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise FileTooLargeError(
            f"{path.name}: file of {size / 2**20:,.0f} MB is larger than the limit of "
            f"{limits.max_file_bytes / 2**20:,.0f} MB (INFERENCE_MAX_FILE_MB)",
            path=path,
        )
    if size == 0:
        raise UnreadableFileError(f"{path.name}: the file is empty", path=path)


MAX_EXTRA_VOLUMES = 16  # 4th and later dimensions: probability maps hold 4, an MRI 1


def nifti_payload_bytes(name: str, header: Any, limits: ImageLimits) -> int:
    """The bytes a NIfTI file holds by its header (offset plus voxel data), after checking its
    dimensions against the limits: called before anything is decompressed, so a small file
    whose header promises gigabytes is refused at once instead of expanded."""
    shape = [int(s) for s in header.get_data_shape()]
    volume = _check_voxel_limit(name, shape, limits)
    extra = int(np.prod(shape[3:], dtype=np.int64)) if len(shape) > 3 else 1
    shown = " x ".join(map(str, shape))
    if extra > MAX_EXTRA_VOLUMES:
        raise FileTooLargeError(
            f"{name}: its header describes {shown} voxels, {extra:,} volumes of more than the "
            f"{MAX_EXTRA_VOLUMES} a file may hold; refused on its header, nothing was decompressed"
        )
    return int(header.get_data_offset()) + volume * extra * int(header.get_data_dtype().itemsize)


# what a corrupt gzip stream raises, read by Python's zlib or by ISA-L
_GZIP_ERRORS = cast(tuple[type[Exception], ...], (OSError, zlib.error, isal_zlib.error))


def _check_voxel_limit(name: str, shape: list[int], limits: ImageLimits) -> int:
    """The voxels of one volume of ``shape``, refused above the limit."""
    volume = int(np.prod(shape[:3], dtype=np.int64))
    if volume > limits.max_voxels:
        raise FileTooLargeError(
            f"{name}: image of {' x '.join(map(str, shape))} = {volume:,} voxels is larger than "
            f"the limit of {limits.max_voxels:,} voxels (INFERENCE_MAX_VOXELS); refused on its "
            "header, nothing was decompressed"
        )
    return volume


def _check_nifti_payload(
    path: Path, limits: ImageLimits, *, floats: bool = False
) -> np.ndarray | None:
    """A NIfTI file must hold as many bytes as its header promises (gzip checked end to end,
    and never decompressed past that). With ``floats``, a floating-point file's voxel values
    are returned as nibabel scales them (None for other files), taken from the same pass: ITK's
    NIfTI reader turns NaN into 0 without a word, so those files are checked on these."""
    compressed = path.name.lower().endswith(".gz")
    if compressed:
        with open(path, "rb") as stream:
            if stream.read(2) != b"\x1f\x8b":
                raise UnreadableFileError(
                    f"{path.name}: corrupt gzip data (the name ends in .gz but the file is not "
                    "gzip-compressed)",
                    path=path,
                )
    try:
        loaded = nib.load(path)  # type: ignore[attr-defined]
    except Exception as error:  # nibabel raises many types for a bad header
        raise UnreadableFileError(
            f"{path.name}: not a readable NIfTI image ({_short(error)})", path=path
        ) from error
    header = loaded.header
    expected = nifti_payload_bytes(path.name, header, limits)
    floats = floats and np.issubdtype(header.get_data_dtype(), np.floating)
    if not compressed:
        if path.stat().st_size < expected:
            raise TruncatedFileError(
                f"{path.name}: the file is truncated: it holds {path.stat().st_size:,} bytes "
                f"but its header describes {expected:,}; upload it again",
                path=path,
            )
        return np.asarray(loaded.dataobj) if floats else None
    # The values are where nibabel reads them: its proxy's offset (a single file whose header
    # says 0 is read after the 352-byte header), dtype and shape.
    proxy = loaded.dataobj
    if floats:
        count = int(np.prod(proxy.shape, dtype=np.int64))
        expected = max(expected, int(proxy.offset) + count * proxy.dtype.itemsize)
    kept = bytearray(expected if floats else 0)
    actual = 0
    try:
        with igzip.open(path, "rb") as stream:  # type: ignore[no-untyped-call]
            while chunk := stream.read(1 << 22):
                if floats and actual < expected:
                    kept[actual : actual + len(chunk)] = chunk[: expected - actual]
                actual += len(chunk)
                if actual > expected + (1 << 20):
                    break
    except EOFError as error:
        raise TruncatedFileError(
            f"{path.name}: the compressed file is truncated (it ends after {actual:,} of "
            f"{expected:,} bytes); upload it again",
            path=path,
        ) from error
    except _GZIP_ERRORS as error:
        raise UnreadableFileError(
            f"{path.name}: corrupt gzip data ({_short(error)})", path=path
        ) from error
    if actual < expected:
        raise TruncatedFileError(
            f"{path.name}: the file is truncated: it holds {actual:,} bytes but its header "
            f"describes {expected:,}; upload it again",
            path=path,
        )
    if not floats:
        return None
    raw = np.frombuffer(kept, proxy.dtype, count, int(proxy.offset))
    return np.asarray(apply_read_scaling(raw, proxy.slope, proxy.inter))


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[-1][:200] if text else type(error).__name__


def read_image(path: Path | str, *, limits: ImageLimits | None = None) -> sitk.Image:
    """Read and validate one NIfTI image. A 4-D file holding one volume is read as 3-D."""
    path = Path(path)
    limits = limits or ImageLimits()
    _check_readable(path, limits)
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise UnreadableFileError(
            f"{path.name}: not a NIfTI file (.nii or .nii.gz expected)", path=path
        )
    image = image_cache.get(path, values_checked=True)
    try:
        if image is None:
            image = _read_verified(path, limits)
        else:  # read or written by this process and unchanged: these limits still apply
            check_header(
                path.name,
                image.GetSize(),
                image.GetSpacing(),
                image.GetNumberOfComponentsPerPixel(),
                limits,
            )
        if image.GetDimension() == 4:
            size = list(image.GetSize())
            image = sitk.Extract(image, [*size[:3], 0], [0, 0, 0, 0])
        check_voxels(path.name, image)
    except InputError as error:
        error.path = path
        raise
    return image


def _read_verified(path: Path, limits: ImageLimits) -> sitk.Image:
    """The file as ITK reads it, once it holds what its header promises, fits the limits and
    (floating-point files) holds finite values; kept in the image cache."""
    values = _check_nifti_payload(path, limits, floats=True)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise UnreadableFileError(
            f"{path.name}: not a readable NIfTI image ({_short(error)})", path=path
        ) from error
    check_header(
        path.name, reader.GetSize(), reader.GetSpacing(), reader.GetNumberOfComponents(), limits
    )
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise UnreadableFileError(
            f"{path.name}: the voxel data cannot be read ({_short(error)})", path=path
        ) from error
    if values is not None:
        check_raw_values(path.name, values)
    image_cache.put_read(path, image, values_checked=True)
    return image


def read_dicom_series(series: DicomSeries, *, limits: ImageLimits | None = None) -> sitk.Image:
    """Read one DICOM series into a 3-D image, with the same checks as a NIfTI file."""
    limits = limits or ImageLimits()
    name = series.label
    total = sum(Path(f).stat().st_size for f in series.files)
    if total > limits.max_file_bytes:
        raise FileTooLargeError(
            f"{name}: {total / 2**20:,.0f} MB is larger than the limit of "
            f"{limits.max_file_bytes / 2**20:,.0f} MB (INFERENCE_MAX_FILE_MB)"
        )
    header = sitk.ImageFileReader()
    header.SetFileName(series.files[0])
    header.ReadImageInformation()
    columns, rows = header.GetSize()[:2]
    spacing = header.GetSpacing()
    check_header(name, (columns, rows, len(series.files)), (*spacing[:2], 1.0), 1, limits)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(series.files))
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise UnreadableFileError(f"{name}: the series cannot be read ({_short(error)})") from error
    check_header(
        name, image.GetSize(), image.GetSpacing(), image.GetNumberOfComponentsPerPixel(), limits
    )
    check_voxels(name, image)
    return image


def read_label_map(
    path: Path, *, limits: ImageLimits | None = None
) -> tuple[sitk.Image, LabelConvention]:
    """Read a segmentation and map its labels onto the internal convention."""
    image = _read_label_image(path, limits)
    values = sitk.GetArrayViewFromImage(image)
    # integer voxels are their own rounding (the model's and the editors' maps are uint8)
    rounded = values if np.issubdtype(values.dtype, np.integer) else np.rint(values)
    if (
        (rounded is not values and not np.allclose(values, rounded, atol=1e-3))
        or rounded.min() < 0
        or rounded.max() > 255
    ):
        raise UnreadableFileError(
            f"{path.name}: not a label map (values must be small non-negative integers)", path=path
        )
    integers = rounded.astype(np.uint8)  # 0-255, checked above
    present = np.flatnonzero(np.bincount(integers.ravel(), minlength=256))
    convention = detect_label_convention({int(v) for v in present})
    out = sitk.GetImageFromArray(labels_to_internal(integers, convention))
    out.CopyInformation(image)
    return out, convention


def _read_checked(path: Path, limits: ImageLimits) -> sitk.Image:
    """A NIfTI file read whole, after the file-level checks (readable, size, complete)."""
    _check_readable(path, limits)
    cached = image_cache.get(path, values_checked=False)
    if cached is not None:  # read or written by this process and unchanged: the limit applies
        _check_voxel_limit(path.name, list(cached.GetSize()), limits)
        return cached
    _check_nifti_payload(path, limits)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise UnreadableFileError(
            f"{path.name}: not a readable NIfTI image ({_short(error)})", path=path
        ) from error
    image_cache.put_read(path, image, values_checked=False)
    return image


def read_lesion_map(path: Path | str, *, limits: ImageLimits | None = None) -> sitk.Image:
    """Read a lesion-id map (0 background, 1..n lesions, as ``measure`` writes it). All zero is
    a valid map: no tumour left, a complete response; only MRI images are refused for being
    constant."""
    path = Path(path)
    image = _read_label_image(path, limits)
    values = sitk.GetArrayViewFromImage(image)
    if values.size and (values.min() < 0 or not np.array_equal(values, np.rint(values))):
        raise UnreadableFileError(
            f"{path.name}: not a lesion map (values must be non-negative integers)", path=path
        )
    return sitk.Cast(image, sitk.sitkUInt16)


def _read_label_image(path: Path, limits: ImageLimits | None) -> sitk.Image:
    limits = limits or ImageLimits()
    image = _read_checked(path, limits)
    if image.GetDimension() == 4:
        size = list(image.GetSize())
        image = sitk.Extract(image, [*size[:3], 0], [0, 0, 0, 0])
    check_header(
        path.name,
        image.GetSize(),
        image.GetSpacing(),
        image.GetNumberOfComponentsPerPixel(),
        limits,
    )
    return image


def read_probability_map(path: Path | str, *, limits: ImageLimits | None = None) -> sitk.Image:
    """Read a class-probability map: a 4-D file (x, y, z, class) or a vector image, as a vector
    image with one component per class."""
    path = Path(path)
    image = _read_checked(path, limits or ImageLimits())
    if image.GetDimension() == 4:
        size = image.GetSize()
        channels = [sitk.Extract(image, [*size[:3], 0], [0, 0, 0, c]) for c in range(size[3])]
        image = sitk.Compose(channels)
    if image.GetDimension() != 3:
        raise NotThreeDimensionalError(
            f"{path.name}: a probability map must be 3-D with one channel per class"
        )
    return image


def read_visit(
    folder: Path | str,
    *,
    required: tuple[Sequence, ...] | None = None,
    limits: ImageLimits | None = None,
    series_overrides: Mapping[str, str] | None = None,
) -> Visit:
    """Read and validate a visit. Every unusable file is named in one ``VisitInputError``.

    By default a visit needs T1 post-contrast or FLAIR (what segmentation needs; the other
    sequences are read when they are there). ``required`` lists sequences that must all be
    present instead; with ``()`` any non-empty subset will do (registration of a
    single-sequence archive).
    """
    limits = limits or ImageLimits()
    files = find_visit_files(folder, series_overrides=series_overrides)
    if required is None:
        _check_segmentable(files)
    missing = [s for s in required or () if s not in files.sequences]
    if missing or not files.sequences:
        listed = ", ".join(f"{s.long_name} ({n})" for s, n in _found(files).items()) or "none"
        wanted = ", ".join(s.long_name for s in missing) or "at least one sequence"
        raise MissingSequenceError(
            f"{files.folder.name}: missing {wanted}; found {listed}{_ignored(files)}",
            path=files.folder,
        )
    images: dict[Sequence, sitk.Image] = {}
    problems: list[InputError] = []
    for sequence in ALL_SEQUENCES:
        source = files.sequences.get(sequence)
        if source is None:
            continue
        try:
            if isinstance(source, DicomSeries):
                images[sequence] = read_dicom_series(source, limits=limits)
            else:
                images[sequence] = read_image(source, limits=limits)
        except InputError as error:
            problems.append(error)
    segmentation = convention = brain_mask = None
    try:
        if files.segmentation is not None:
            segmentation, convention = read_label_map(files.segmentation, limits=limits)
        if files.brain_mask is not None:
            mask, _ = read_label_map(files.brain_mask, limits=limits)
            brain_mask = sitk.Cast(mask > 0, sitk.sitkUInt8)
    except InputError as error:
        problems.append(error)
    grid = next((s for s in SEGMENTABLE if s in images), None)
    if segmentation is not None and grid is not None:
        try:
            _check_label_grid(segmentation, grid, images[grid], files)
        except InputError as error:
            problems.append(error)
    if problems:
        raise problems[0] if len(problems) == 1 else VisitInputError(problems)
    check_same_head(images, limits)
    return Visit(
        folder=files.folder,
        images=images,
        sources={s: source_label(src) for s, src in files.sequences.items()},
        segmentation=segmentation,
        label_convention=convention,
        brain_mask=brain_mask,
        ignored=files.ignored,
    )


def find_segmentable_files(
    folder: Path | str, *, series_overrides: Mapping[str, str] | None = None
) -> VisitFiles:
    """The files of a visit that can be segmented (T1 post-contrast or FLAIR), before any voxel
    is read: a quick check before a model is loaded. ``read_visit`` checks the same and more."""
    files = find_visit_files(folder, series_overrides=series_overrides)
    _check_segmentable(files)
    return files


def _found(files: VisitFiles) -> dict[Sequence, str]:
    return {s: source_label(files.sequences[s]) for s in ALL_SEQUENCES if s in files.sequences}


def _ignored(files: VisitFiles) -> str:
    return f"; ignored: {', '.join(files.ignored)}" if files.ignored else ""


def _check_segmentable(files: VisitFiles) -> None:
    try:
        check_segmentable(_found(files))
    except MissingSequenceError as error:
        raise MissingSequenceError(
            f"{files.folder.name}: {error.message}{_ignored(files)}", path=files.folder
        ) from None


def _check_label_grid(
    labels: sitk.Image, sequence: Sequence, image: sitk.Image, files: VisitFiles
) -> None:
    """A segmentation must be on its image's grid (the T1 post-contrast's by convention, the
    FLAIR's in a visit without T1 post-contrast)."""
    same = (
        labels.GetSize() == image.GetSize()
        and np.allclose(labels.GetSpacing(), image.GetSpacing(), atol=1e-3)
        and np.allclose(labels.GetOrigin(), image.GetOrigin(), atol=1e-2)
        and np.allclose(labels.GetDirection(), image.GetDirection(), atol=1e-3)
    )
    if not same:
        seg_name = files.segmentation.name if files.segmentation else "segmentation"
        image_name = source_label(files.sequences[sequence])
        raise GeometryMismatchError(
            f"{seg_name} is not on the grid of {image_name} (size {labels.GetSize()} vs "
            f"{image.GetSize()}, spacing {tuple(round(s, 3) for s in labels.GetSpacing())} vs "
            f"{tuple(round(s, 3) for s in image.GetSpacing())}); a segmentation must share its "
            f"{sequence.long_name} image's geometry",
            path=files.segmentation,
        )


def write_image(image: sitk.Image, path: Path | str, *, compression_level: int = 1) -> Path:
    """Write an image atomically: to a temporary name in the same folder, then rename.

    A ``.nii.gz`` file is written by ITK uncompressed and compressed by ISA-L's igzip (level
    0-3): a standard gzip file, about as small as zlib's at level 1 and written four times as
    fast (a probability map of a visit: 2.9 s -> 1.0 s)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        if path.name.lower().endswith(".gz"):
            plain = temporary.with_name(temporary.name[: -len(".gz")])
            try:
                sitk.WriteImage(image, str(plain), False)
                with (
                    open(plain, "rb") as source,
                    open(temporary, "wb") as target,
                    igzip.IGzipFile(  # type: ignore[no-untyped-call]
                        filename="",
                        mode="wb",
                        compresslevel=min(max(compression_level, 0), 3),
                        fileobj=target,
                        mtime=0,
                    ) as compressed,
                ):
                    shutil.copyfileobj(source, compressed, 1 << 22)
            finally:
                plain.unlink(missing_ok=True)
        else:
            sitk.WriteImage(image, str(temporary), True, compression_level)
    image_cache.put_written(path, image)
    return path


def write_text(text: str, path: Path | str) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def output_folder(out: Path | str) -> Iterator[Path]:
    """Yield a fresh staging folder that replaces ``out`` only if the block succeeds.

    An earlier result in ``out`` stays untouched until the new one is complete, and is kept if
    the new one fails.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = None
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, backup)
    os.replace(staging, out)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def write_dicom_series(
    image: sitk.Image,
    folder: Path | str,
    *,
    series_description: str,
    protocol_name: str | None = None,
    patient_id: str = "ANON0001",
    study_uid: str | None = None,
    series_number: int = 1,
    study_date: dt.date | None = None,
) -> list[Path]:
    """Write a 3-D image as an MR DICOM series (int16 with rescale slope/intercept).

    Used to test the DICOM reader and to export. Tags follow what scanners write: modality,
    UIDs, frame of reference, per-slice position and orientation, spacing and thickness.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    values = sitk.GetArrayFromImage(image).astype(np.float64)
    low, high = float(values.min()), float(values.max())
    slope = (
        max((high - low) / 32000.0, 1e-6)
        if (high - low > 32000 or not _is_integral(values))
        else 1.0
    )
    intercept = low if slope != 1.0 else 0.0
    stored = np.rint((values - intercept) / slope).astype(np.int16)
    volume = sitk.GetImageFromArray(stored)
    volume.CopyInformation(image)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    orientation = "\\".join(f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1]))
    prefix = "1.2.826.0.1.3680043.8.498"
    study_uid = study_uid or f"{prefix}.{np.random.default_rng().integers(1, 2**62)}"
    series_uid = f"{prefix}.{np.random.default_rng().integers(1, 2**62)}"
    frame_uid = f"{prefix}.{np.random.default_rng().integers(1, 2**62)}"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    written = []
    for k in range(volume.GetDepth()):
        slice_image = volume[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "MR",
            "0008|0008": "ORIGINAL\\PRIMARY\\M\\ND",
            "0008|103e": series_description,
            "0018|1030": protocol_name or series_description,
            "0010|0020": patient_id,
            "0010|0010": patient_id,
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0052": frame_uid,
            "0020|0011": str(series_number),
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": orientation,
            "0028|0030": f"{image.GetSpacing()[1]:.6f}\\{image.GetSpacing()[0]:.6f}",
            "0018|0050": f"{image.GetSpacing()[2]:.6f}",
            "0018|0088": f"{image.GetSpacing()[2]:.6f}",
            "0028|1052": f"{intercept:.6f}",
            "0028|1053": f"{slope:.9f}",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
            "0008|0018": f"{series_uid}.{k + 1}",
        }
        if study_date is not None:
            tags["0008|0020"] = tags["0008|0021"] = study_date.strftime("%Y%m%d")
        for key, value in tags.items():
            slice_image.SetMetaData(key, value)
        path = folder / f"IM{k + 1:04d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slice_image)
        written.append(path)
    return written


def _is_integral(values: np.ndarray) -> bool:
    return bool(np.all(np.abs(values - np.rint(values)) < 1e-6))


MAX_JSON_BYTES = 10 * 1024 * 1024


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path: Path | str, *, what: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A JSON document (``-`` reads standard input), strictly: no NaN or Infinity, at most
    ``max_bytes``. Problems are ``InputError`` messages that name the file and the place."""
    name = str(path)
    try:
        if name == "-":
            text = sys.stdin.read(max_bytes + 1)
        else:
            path = Path(path)
            if path.is_file() and path.stat().st_size > max_bytes:
                raise FileTooLargeError(
                    f"{what} {name}: {path.stat().st_size} bytes, more than {max_bytes}", path=path
                )
            text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnreadableFileError(f"{what} {name}: no such file", path=name) from None
    except PermissionError:
        raise UnreadableFileError(f"{what} {name}: permission denied", path=name) from None
    except IsADirectoryError:
        raise UnreadableFileError(f"{what} {name}: is a folder, not a file", path=name) from None
    except UnicodeDecodeError:
        raise UnreadableFileError(f"{what} {name}: not UTF-8 text", path=name) from None
    if len(text) > max_bytes:
        raise FileTooLargeError(f"{what} {name}: more than {max_bytes} bytes", path=name)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:
        place = ""
        if isinstance(error, json.JSONDecodeError):
            place = f" at line {error.lineno}, column {error.colno}"
            error_text = error.msg
        else:
            error_text = str(error)
        raise UnreadableFileError(
            f"{what} {name}: not valid JSON{place} ({error_text})", path=name
        ) from None
