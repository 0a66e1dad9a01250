"""Segmenting a prepared visit with the shipped (or any exported) model.

A ``Segmenter`` is loaded once from a weights folder - ``segmenter.weights.npz`` plus the model
card ``model.json`` (architecture, input spacing, normalisation, label map, training data,
metrics, sha256 of the weights) - and called for many visits. Loading checks the card, the
checksum and every weight's name and shape, and never downloads anything.

A visit is segmented on its prepared 1 mm grid: cropped to the brain, axial slices padded to a
multiple of 32 and batched, optionally averaged with the left-right flipped prediction
(test-time augmentation), reassembled, and resampled back onto the visit's own T1 post-contrast
geometry (labels nearest-neighbour, probabilities linearly).

A visit may lack sequences as long as it holds T1 post-contrast or FLAIR: the missing channels
are zero-filled (0 everywhere, as outside the brain: the sequence-dropout convention of training)
and the result is in the FLAIR's geometry when there is no T1 post-contrast. What a subset can
measure follows ``REGION_NEEDS`` (``sequence_support``): a region that is not supported is
reported as null with the reason, never as a number.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from inference.errors import InputError
from inference.files import atomic_path, sha256_of
from inference.imaging.validate import reference_sequence
from inference.labels import ALL_SEQUENCES, REGION_LABELS, Region, Sequence, TumorLabel
from inference.segmentation.contract import ARCHITECTURE, CHANNELS, CLASSES, STRIDE

WEIGHTS_FILE = "segmenter.weights.npz"
CARD_FILE = "model.json"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
# Where a segmenter keeps the ONNX export of its weights unless told otherwise.
DEFAULT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tumour-tracker" / "models"
)
SPACING_MM = 1.0
BATCH = 16
# Voxels whose region probability lies between these bounds are the uncertain boundary band.
BAND = (0.25, 0.75)


class WeightsError(InputError):
    """The weights folder is missing, damaged, or belongs to another model."""


class SpacingError(InputError):
    """A prepared visit is not on the grid the model was trained for."""


# What a visit's sequences can measure ------------------------------------------------------------

# A region is measured when the visit holds one of the sequences it needs: enhancement is seen
# only on T1 post-contrast (so the enhancing tumour and the core it encloses need it), the extent
# of the surrounding T2/FLAIR hyperintensity only on FLAIR or T2.
REGION_NEEDS: dict[Region, tuple[Sequence, ...]] = {
    Region.ET: (Sequence.T1C,),
    Region.TC: (Sequence.T1C,),
    Region.WT: (Sequence.FLAIR, Sequence.T2),
}
# Label volumes follow their regions: the necrotic core is part of the core; oedema is the whole
# tumour less the core, so it needs both.
LABEL_REGIONS: dict[str, tuple[Region, ...]] = {
    TumorLabel.NCR.name: (Region.TC,),
    TumorLabel.ED.name: (Region.WT, Region.TC),
}
SHORT_NAMES = {Sequence.T1: "T1", Sequence.T1C: "T1c", Sequence.T2: "T2", Sequence.FLAIR: "FLAIR"}
REGION_WORDS = {Region.WT: "whole tumour", Region.TC: "core", Region.ET: "enhancing"}


@dataclass(frozen=True)
class SequenceSupport:
    """The sequences a segmentation used and the regions they support."""

    used: tuple[Sequence, ...]

    @property
    def missing(self) -> tuple[Sequence, ...]:
        return tuple(s for s in ALL_SEQUENCES if s not in self.used)

    @property
    def regions(self) -> tuple[Region, ...]:
        """Supported regions, in ET, TC, WT order."""
        return tuple(r for r in Region if any(s in self.used for s in REGION_NEEDS[r]))

    def not_measured(self) -> dict[str, str]:
        """Why each region (ET, TC, WT) or label volume (NCR, ED) is not measured; empty when
        every one is."""
        reasons = {r.value: self._reason((r,)) for r in Region if r not in self.regions}
        for label, regions in LABEL_REGIONS.items():
            if any(r not in self.regions for r in regions):
                reasons[label] = self._reason(regions)
        return reasons

    def _reason(self, regions: Iterable[Region]) -> str:
        needs = [
            " or ".join(s.long_name for s in REGION_NEEDS[r])
            for r in regions
            if r not in self.regions
        ]
        return f"not measured: needs {' and '.join(dict.fromkeys(needs))}, which this visit lacks"

    def summary(self) -> str:
        """One line for people: 'T1c, FLAIR (T1, T2 missing): whole tumour, core and enhancing
        measured'."""
        used = ", ".join(SHORT_NAMES[s] for s in self.used)
        missing = f" ({', '.join(SHORT_NAMES[s] for s in self.missing)} missing)"
        order = (Region.WT, Region.TC, Region.ET)
        measured = [REGION_WORDS[r] for r in order if r in self.regions]
        unmeasured = [REGION_WORDS[r] for r in order if r not in self.regions]
        text = f"{used}{missing if self.missing else ''}: {_and(measured)} measured"
        if unmeasured:
            text += f"; {_and(unmeasured)} not measured"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "sequences_used": [s.value for s in self.used],
            "sequences_missing": [s.value for s in self.missing],
            "supported_regions": [r.value for r in self.regions],
            "not_measured": self.not_measured(),
        }


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def sequence_support(present: Iterable[Sequence | str]) -> SequenceSupport:
    """What a visit with these sequences can measure.

    >>> sequence_support(["flair"]).summary()
    'FLAIR (T1, T1c, T2 missing): whole tumour measured; core and enhancing not measured'
    >>> sequence_support([Sequence.T1C]).not_measured()["WT"]
    'not measured: needs FLAIR or T2, which this visit lacks'
    """
    given = {Sequence(s) for s in present}
    return SequenceSupport(tuple(s for s in ALL_SEQUENCES if s in given))


def unmeasured_volumes(reasons: dict[str, str]) -> dict[str, Any]:
    """A region's volumes as reported when it is not supported: null, with the reason."""
    return {
        region: {
            "volume_ml": None,
            "expected_ml": None,
            "low_ml": None,
            "high_ml": None,
            "reason": reason,
        }
        for region, reason in reasons.items()
    }


# Export and load ---------------------------------------------------------------------------------


def _key(path: str) -> str:
    return path.replace("/", "__")


def export_weights(model: Any, out: Path, *, training: dict[str, Any], config: Any = None) -> Path:
    """Write float16 weights (small tensors such as normalisation statistics stay float32) and
    the model card. Metrics are added to the card by ``bench/bench_segment_accuracy.py``."""
    import keras  # noqa: PLC0415

    from inference.segmentation.model import ModelConfig  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for variable in model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(variable))
        arrays[_key(variable.path)] = value.astype(np.float16 if value.size >= 4096 else np.float32)
    weights = out / WEIGHTS_FILE
    with atomic_path(weights) as staging:
        np.savez_compressed(staging, **arrays)  # type: ignore[arg-type]
    card_path = out / CARD_FILE
    previous = json.loads(card_path.read_text()) if card_path.exists() else {}
    card = {
        "name": "tumour-segmenter",
        "version": dt.date.today().isoformat(),
        **(config or ModelConfig()).as_dict(),
        "parameters": int(model.count_params()),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256_of(weights),
        "weights_bytes": weights.stat().st_size,
        "storage": "float16 (tensors under 4,096 values float32)",
        "input": {
            "channels": [s.value for s in CHANNELS],
            "spacing_mm": SPACING_MM,
            "slices": "axial, LPS, cropped to the brain, padded to a multiple of 32",
            "normalisation": "z-score within the brain mask, 0 outside (imaging/preprocess.py)",
        },
        "label_map": {str(v): TumorLabel(v).name if v else "background" for v in CLASSES},
        "label_convention": "BraTS 2023 (1 NCR, 2 ED/SNFH, 3 ET)",
        "training": training,
        "metrics": previous.get("metrics", {}),
        "intended_use": (
            "Research software. Trained on synthetic data only (phantoms and generated volumes, "
            "some drawn into two real tumour-free brains); measured on a handful of real public "
            "cases, not validated on patients; not for diagnostic use."
        ),
        "keras_version": keras.__version__,
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return out


def read_card(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise WeightsError(f"weights folder {folder} does not exist")
    path = folder / CARD_FILE
    if not path.is_file():
        raise WeightsError(f"{folder}: no model card ({CARD_FILE})")
    try:
        card: dict[str, Any] = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(f"{path}: the model card is not valid JSON ({error})") from error
    if card.get("architecture") != ARCHITECTURE:
        raise WeightsError(
            f"{path}: weights for architecture '{card.get('architecture')}', "
            f"this code builds '{ARCHITECTURE}'"
        )
    if card.get("input", {}).get("spacing_mm") != SPACING_MM:
        raise WeightsError(f"{path}: model expects {card.get('input', {}).get('spacing_mm')} mm")
    return card


def check_weights_file(folder: Path, card: dict[str, Any]) -> Path:
    """The weights file the card names, there and with the card's checksum."""
    path = folder / str(card.get("weights_file", WEIGHTS_FILE))
    if not path.is_file():
        raise WeightsError(f"{folder}: weights file {path.name} is missing")
    actual = sha256_of(path)
    if actual != card.get("weights_sha256"):
        raise WeightsError(
            f"{path.name}: sha256 {actual[:12]}... does not match the model card's "
            f"{str(card.get('weights_sha256'))[:12]}... (damaged or replaced weights)"
        )
    return path


def load_weights(model: Any, folder: Path, card: dict[str, Any]) -> None:
    """Check the checksum, then assign every weight by name; any difference is an error."""
    path = check_weights_file(folder, card)
    try:
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise WeightsError(f"{path.name}: truncated or corrupt weights ({error})") from error
    expected = {_key(v.path): v for v in model.weights}
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise WeightsError(
            f"{path.name}: weights for another architecture ({len(missing)} missing, "
            f"{len(extra)} unexpected; e.g. {(missing or extra)[0]})"
        )
    for name, variable in expected.items():
        if tuple(arrays[name].shape) != tuple(variable.shape):
            raise WeightsError(
                f"{path.name}: weights for another architecture ({name} is "
                f"{arrays[name].shape}, the model needs {tuple(variable.shape)})"
            )
        variable.assign(arrays[name].astype(variable.dtype))


# Segmenting --------------------------------------------------------------------------------------


@dataclass
class Segmentation:
    labels: sitk.Image  # BraTS 2023 labels, uint8
    probabilities: sitk.Image  # vector image, one float32 component per class
    volumes_ml: dict[str, dict[str, Any]]  # per region; null volumes with a reason if unsupported
    seconds: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


class Segmenter:
    """Load once, segment many visits. ``runtime`` is where the forward pass runs (see
    ``inference.segmentation.runtime``: ``keras``, ``onnx`` or ``auto``); ``cache`` is where an
    ONNX export of these weights is kept (default: the user's cache folder)."""

    def __init__(
        self,
        folder: Path | str = DEFAULT_WEIGHTS,
        *,
        runtime: str = "keras",
        cache: Path | str | None = None,
    ) -> None:
        from inference.segmentation import runtime as runtimes  # noqa: PLC0415

        started = time.perf_counter()
        self.folder = Path(folder)
        self.card = read_card(self.folder)
        self.runtime = runtimes.resolve(runtime)
        self.model: Any = None
        self._forward: Any = None
        if self.runtime == "onnx":
            cache = Path(cache) if cache else DEFAULT_CACHE
            sha = str(self.card.get("weights_sha256"))
            path = runtimes.cached_onnx(cache, sha)
            if path is None:
                self.model = self._keras_model()
                path = runtimes.export_onnx(self.model, cache, weights_sha256=sha)
            else:
                check_weights_file(self.folder, self.card)
            self._forward = runtimes.onnx_forward(path)
        else:
            self.model = self._keras_model()
        self.load_seconds = time.perf_counter() - started

    def _keras_model(self) -> Any:
        from inference.segmentation.model import ModelConfig, build_model  # noqa: PLC0415

        config = ModelConfig(decoder_filters=tuple(self.card["decoder_filters"]))
        model = build_model(config)
        load_weights(model, self.folder, self.card)
        return model

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "model": self.card.get("name"),
            "architecture": self.card.get("architecture"),
            "version": self.card.get("version"),
            "weights_sha256": self.card.get("weights_sha256"),
        }

    def forward(self, slices: np.ndarray) -> np.ndarray:
        """Probabilities for slices, one pass, in batches of ``BATCH``."""
        if self._forward is None:
            return np.asarray(self.model.predict(slices, batch_size=BATCH, verbose=0))
        return np.concatenate(
            [self._forward(slices[i : i + BATCH]) for i in range(0, len(slices), BATCH)]
        )

    def warm_up(self) -> float:
        """One small forward pass (graphs traced, memory allocated) so the first visit does not
        pay for it; returns the seconds it took."""
        started = time.perf_counter()
        self.forward(np.zeros((2, 224, 192, 4), np.float32))
        return time.perf_counter() - started

    def predict_slices(self, slices: np.ndarray, *, flips: bool = True) -> np.ndarray:
        """Probabilities (n, y, x, 4) for slices (n, y, x, 4); y and x multiples of 32."""
        probabilities = self.forward(slices)
        if flips:
            flipped = self.forward(np.ascontiguousarray(slices[:, :, ::-1]))
            probabilities = (probabilities + flipped[:, :, ::-1]) / 2
        return probabilities.astype(np.float32)

    def segment(
        self,
        images: dict[Sequence, sitk.Image],
        brain_mask: sitk.Image,
        *,
        geometry: sitk.Image | None = None,
        flips: bool = True,
    ) -> Segmentation:
        """Segment a prepared visit (z-scored 1 mm images and their brain mask; T1 post-contrast
        or FLAIR at least, missing channels zero-filled). The result is on ``geometry`` (the
        visit's own T1 post-contrast image, else its FLAIR) when given, else on the prepared
        grid."""
        started = time.perf_counter()
        present = [s for s in CHANNELS if s in images]
        reference = images[reference_sequence(present)]
        for sequence in present:
            spacing = images[sequence].GetSpacing()
            if any(abs(s - SPACING_MM) > 1e-3 for s in spacing):
                raise SpacingError(
                    f"prepared {sequence.long_name} has spacing "
                    f"{' x '.join(f'{s:g}' for s in spacing)} mm; the model needs "
                    f"{SPACING_MM:g} mm isotropic (run prepare first)"
                )
            if images[sequence].GetSize() != reference.GetSize():
                raise SpacingError(f"prepared {sequence.long_name} is not on the reference grid")
        mask = sitk.GetArrayFromImage(brain_mask) > 0
        if mask.shape != sitk.GetArrayViewFromImage(reference).shape:
            raise SpacingError("the brain mask is not on the prepared grid")
        if not mask.any():
            raise InputError("the brain mask is empty: nothing to segment")
        where = np.argwhere(mask)
        start = np.maximum(where.min(axis=0) - 2, 0)
        stop = np.minimum(where.max(axis=0) + 3, mask.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
        # A missing sequence is a channel of zeros: what the model sees outside the brain, and
        # what sequence dropout showed it in training.
        box_shape = tuple(b.stop - b.start for b in box)
        volume = np.stack(
            [
                sitk.GetArrayFromImage(images[s])[box].astype(np.float32)
                if s in images
                else np.zeros(box_shape, np.float32)
                for s in CHANNELS
            ],
            axis=-1,
        )
        height, width = volume.shape[1:3]
        padded_h = -(-height // STRIDE) * STRIDE
        padded_w = -(-width // STRIDE) * STRIDE
        slices = np.zeros((volume.shape[0], padded_h, padded_w, len(CHANNELS)), np.float32)
        top, left = (padded_h - height) // 2, (padded_w - width) // 2
        slices[:, top : top + height, left : left + width] = volume
        prepared_at = time.perf_counter()
        predicted = self.predict_slices(slices, flips=flips)[
            :, top : top + height, left : left + width
        ]
        predicted_at = time.perf_counter()
        full = np.zeros((*mask.shape, len(CLASSES)), np.float32)
        full[..., 0] = 1.0
        full[box] = predicted
        probabilities = sitk.GetImageFromArray(full, isVector=True)
        probabilities.CopyInformation(reference)
        labels = sitk.GetImageFromArray(np.asarray(CLASSES, np.uint8)[np.argmax(full, axis=-1)])
        labels.CopyInformation(reference)
        if geometry is not None and not _same_grid(geometry, reference):
            # Back onto the visit's own grid: the label map nearest-neighbour from the 1 mm
            # prediction, the probabilities linearly.
            probabilities = sitk.Resample(
                probabilities, geometry, sitk.Transform(), sitk.sitkLinear, 0.0
            )
            labels = sitk.Resample(labels, geometry, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        support = sequence_support(present)
        volumes: dict[str, dict[str, Any]] = dict(volume_intervals(labels, probabilities))
        reasons = support.not_measured()
        volumes.update(unmeasured_volumes({k: v for k, v in reasons.items() if k in volumes}))
        finished = time.perf_counter()
        return Segmentation(
            labels=labels,
            probabilities=probabilities,
            volumes_ml=volumes,
            seconds={
                "crop_and_batch": round(prepared_at - started, 3),
                "predict": round(predicted_at - prepared_at, 3),
                "reassemble": round(finished - predicted_at, 3),
                "total": round(finished - started, 3),
            },
            details={
                "slices": int(slices.shape[0]),
                "slice_size": [int(padded_h), int(padded_w)],
                "flips": flips,
                **support.as_dict(),
                "sequences": support.summary(),
            },
        )


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)
    )


def volume_intervals(labels: sitk.Image, probabilities: sitk.Image) -> dict[str, dict[str, float]]:
    """Per region: the label map's volume, the expected volume (sum of probabilities) and an
    interval from the uncertain boundary band: voxels with region probability >= 0.75 (low)
    and >= 0.25 (high). A sure segmentation has a narrow interval."""
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    label_values = sitk.GetArrayViewFromImage(labels)
    probability = sitk.GetArrayViewFromImage(probabilities)
    out = {}
    for region in Region:
        values = sorted(int(v) for v in REGION_LABELS[region])
        members = [CLASSES.index(v) for v in values]
        p = probability[..., members].sum(axis=-1)
        out[region.value] = {
            "volume_ml": round(float(np.isin(label_values, values).sum()) * voxel_ml, 3),
            "expected_ml": round(float(p.sum()) * voxel_ml, 3),
            "low_ml": round(float((p >= BAND[1]).sum()) * voxel_ml, 3),
            "high_ml": round(float((p >= BAND[0]).sum()) * voxel_ml, 3),
        }
    return out


# A visit folder, end to end ----------------------------------------------------------------------


def segment_folder(
    folder: Path | str,
    segmenter: Segmenter,
    *,
    flips: bool = True,
    progress: Any = None,
) -> Segmentation:
    """Segment a visit folder: ``prepare`` output as it is, or a raw visit, prepared first. The
    result is in the T1 post-contrast (else FLAIR) geometry of the folder given."""
    from inference.imaging.io import read_visit  # noqa: PLC0415
    from inference.imaging.preprocess import is_prepared, prepare_visit, read_prepared  # noqa: PLC0415

    say = progress or (lambda _message: None)
    started = time.perf_counter()
    if is_prepared(folder):
        images, mask, _qc = read_prepared(folder)
        geometry = images[reference_sequence(images)]
        source = "prepared"
    else:
        visit = read_visit(folder)
        say("preparing")
        prepared = prepare_visit(visit, progress=say)
        images, mask = prepared.images, prepared.brain_mask
        geometry = visit.images[reference_sequence(visit.images)]
        source = "raw (prepared first)"
    read_at = time.perf_counter()
    say("segmenting")
    result = segmenter.segment(images, mask, geometry=geometry, flips=flips)
    result.seconds = {"read_and_prepare": round(read_at - started, 3), **result.seconds}
    result.details["input"] = source
    return result


def write_segmentation(
    result: Segmentation, segmenter: Segmenter, out: Path | str, *, source: str
) -> dict[str, Any]:
    """``seg.nii.gz``, ``prob.nii.gz`` and ``segmentation.json``, all or nothing."""
    from inference.imaging.io import output_folder, write_image, write_text  # noqa: PLC0415

    report = {
        "visit": source,
        **segmenter.identity,
        "load_seconds": round(segmenter.load_seconds, 3),
        "seconds": result.seconds,
        **result.details,
        "volumes_ml": result.volumes_ml,
        "uncertainty": (
            "low_ml-high_ml: voxels with region probability >= 0.75 and >= 0.25 "
            "(the uncertain boundary band); expected_ml: sum of probabilities"
        ),
        "label_convention": "BraTS 2023 (1 NCR, 2 ED, 3 ET)",
        "grid": {
            "size": list(result.labels.GetSize()),
            "spacing_mm": list(result.labels.GetSpacing()),
        },
    }
    with output_folder(out) as staging:
        write_image(result.labels, staging / "seg.nii.gz")
        write_image(result.probabilities, staging / "prob.nii.gz")
        write_text(json.dumps(report, indent=2) + "\n", staging / "segmentation.json")
    return report
