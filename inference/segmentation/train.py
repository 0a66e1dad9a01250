"""Training the segmenter: on phantoms (the shipped model) or on your own labelled visits.

``python -m inference train --phantoms 60 --out inference/weights`` trains the shipped model from
scratch; ``python -m inference train DATA_DIR ... --out DIR`` trains on BraTS 2021/2023, LUMIERE
or phantom folders (any visit folder with the four sequences and a segmentation).

- Cases: every visit becomes a stack of axial slices of the *prepared* visit (1 mm, skull-stripped,
  z-scored in the brain mask; see ``preprocess.py``). Folders go through the real ``prepare_visit``.
  Generated phantoms take a shortcut that gives the same kind of image at a fraction of the cost:
  rendered, resampled to 1 mm, masked with the true brain mask (randomly eroded or dilated by up
  to 2 mm, as an estimated mask would be) and z-scored; bias field and noise are left in.
- Patient-level split: all visits of a patient are in training or all in validation.
- Class-aware sampling: most patches are centred on a tumour pixel of a randomly chosen class, so
  small enhancing lesions and necrosis are seen often.
- Augmentation (numpy, so any Keras backend): flips, rotation +-15 deg, scaling 0.85-1.15,
  per-sequence intensity scale and shift, gamma, Gaussian noise.
- Loss: cross-entropy + soft Dice (``model.dice_ce_loss``). AdamW with cosine decay.
- Checkpoint each epoch (``last.keras``: model and optimiser, so ``--resume`` continues where it
  stopped), best weights by validation loss, early stopping, ``training_log.csv`` and
  ``training.jsonl`` (one line per epoch). Seeds fixed with ``keras.utils.set_random_seed``.
- Export: float16 weights (``segmenter.weights.npz``) and the model card (``model.json``).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from inference.errors import InputError
from inference.files import atomic_path
from inference.labels import Sequence, TumorLabel
from inference.segmentation.model import CHANNELS, CLASSES

PATCH = 128
SPACING_MM = 1.0


# Cases -------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One visit's training slices: images (n, y, x, 4) float16, labels (n, y, x) uint8."""

    key: str
    patient: str
    images: np.ndarray
    labels: np.ndarray

    @property
    def tumour_slices(self) -> np.ndarray:
        found: np.ndarray = np.flatnonzero(self.labels.reshape(len(self.labels), -1).max(axis=1))
        return found


def brain_box(mask: np.ndarray, margin: int = 4) -> tuple[slice, ...]:
    """The (z, y, x) box of a mask's non-zero voxels, widened by ``margin`` voxels."""
    where = np.argwhere(mask)
    if len(where) == 0:
        raise InputError("the brain mask is empty")
    start = np.maximum(where.min(axis=0) - margin, 0)
    stop = np.minimum(where.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))


def zscore(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Z-score within the mask, zero outside (as ``preprocess.normalise`` does)."""
    inside = values[mask]
    std = float(inside.std()) or 1.0
    out: np.ndarray = np.where(mask, (values - float(inside.mean())) / std, 0.0)
    return out.astype(np.float32)


def case_from_arrays(
    channels: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray,
    *,
    key: str,
    patient: str,
    rng: np.random.Generator,
    background_slices: int = 12,
) -> Case:
    """Keep every slice with tumour and ``background_slices`` brain slices without, cropped to the
    brain. ``channels`` is (4, z, y, x), already normalised."""
    box = brain_box(mask)
    channels = channels[(slice(None), *box)]
    labels, mask = labels[box], mask[box]
    has_tumour = labels.reshape(len(labels), -1).max(axis=1) > 0
    has_brain = mask.reshape(len(mask), -1).sum(axis=1) > 500
    plain = np.flatnonzero(has_brain & ~has_tumour)
    chosen = np.sort(
        np.concatenate(
            [
                np.flatnonzero(has_tumour),
                rng.choice(plain, min(background_slices, len(plain)), replace=False),
            ]
        )
    ).astype(int)
    images = np.moveaxis(channels[:, chosen], 0, -1).astype(np.float16)
    return Case(key, patient, np.ascontiguousarray(images), labels[chosen].astype(np.uint8))


def phantom_case(seed: int, visit: int, *, visits: int = 4, satellites: int = 0) -> Case:
    """A rendered phantom visit as prepared-like slices (see the module docstring)."""
    from inference.imaging.register import isotropic_grid, resample  # noqa: PLC0415
    from inference.segmentation import phantoms  # noqa: PLC0415 - only needed for phantom training

    patient = phantoms.make_patient(seed, visits=visits)
    if satellites:
        patient = phantoms.with_satellites(patient, satellites, seed=seed)
    images, seg, _truth = phantoms.render_visit(patient, visit)
    reference = images[Sequence.T1C]
    if reference.GetSpacing() != (SPACING_MM,) * 3:
        grid = isotropic_grid(reference, SPACING_MM)
        images = {s: resample(image, grid) for s, image in images.items()}
        seg = resample(seg, grid, labels=True)
    mask = sitk.GetArrayFromImage(
        phantoms.true_brain_mask(seg, phantoms.visit_pose(patient, visit))
    )
    rng = np.random.default_rng([seed, visit, 11])
    wobble = int(rng.integers(-2, 3))
    if wobble:
        operation = ndimage.binary_dilation if wobble > 0 else ndimage.binary_erosion
        mask = operation(mask > 0, iterations=abs(wobble))
    mask = mask > 0
    labels = sitk.GetArrayFromImage(seg) * mask
    channels = np.stack(
        [zscore(sitk.GetArrayFromImage(images[s]).astype(np.float32), mask) for s in CHANNELS]
    )
    return case_from_arrays(
        channels, labels, mask, key=f"phantom-{seed}-{visit}", patient=f"phantom-{seed}", rng=rng
    )


def folder_case(folder: Path) -> Case:
    """A labelled visit folder (BraTS, LUMIERE, phantom), through the real preparation."""
    from inference.imaging.io import read_visit  # noqa: PLC0415
    from inference.imaging.preprocess import prepare_visit  # noqa: PLC0415

    visit = read_visit(folder)
    if visit.segmentation is None:
        raise InputError(f"{folder.name}: no segmentation to train on")
    prepared = prepare_visit(visit)
    assert prepared.segmentation is not None
    mask = sitk.GetArrayFromImage(prepared.brain_mask) > 0
    # A sequence the visit lacks is zero, as ``segment.py`` fills it (and sequence dropout does).
    empty = np.zeros(mask.shape, np.float32)
    channels = np.stack(
        [
            sitk.GetArrayFromImage(prepared.images[s]) if s in prepared.images else empty
            for s in CHANNELS
        ]
    )
    labels = sitk.GetArrayFromImage(prepared.segmentation).astype(np.uint8)
    rng = np.random.default_rng(int(hashlib.sha256(folder.name.encode()).hexdigest()[:8], 16))
    return case_from_arrays(
        channels, labels, mask, key=folder.name, patient=patient_of(visit_name(folder)), rng=rng
    )


def visit_name(folder: Path) -> str:
    """``Patient-001/week-044`` for LUMIERE-style trees (visits named by week under a patient
    folder), the folder name otherwise."""
    if folder.name.lower().startswith("week"):
        return f"{folder.parent.name}/{folder.name}"
    return folder.name


def patient_of(name: str) -> str:
    """The patient a visit folder belongs to: BraTS ``BraTS-GLI-00001-000`` and phantoms
    ``PHANTOM-00012-003`` drop the last field; LUMIERE ``Patient-001/week-044`` keeps the
    patient folder (the caller passes ``parent/name``)."""
    if "/" in name:
        return name.split("/", maxsplit=1)[0]
    head, sep, tail = name.rpartition("-")
    return head if sep and tail.isdigit() and head.count("-") >= 1 else name


def find_visit_folders(roots: Iterable[Path]) -> list[Path]:
    """Visit folders under ``roots`` that hold a segmentation file."""
    found = []
    for root in roots:
        if not root.is_dir():
            raise InputError(f"{root}: not a folder")
        for folder in sorted({p.parent for p in root.rglob("*.nii*")}):
            names = [p.name.lower() for p in folder.iterdir()]
            if any("seg" in n for n in names):
                found.append(folder)
    return found


def _cached(path: Path, build: Callable[[], Case]) -> Case:
    if path.exists():
        data = np.load(path)
        return Case(str(data["key"]), str(data["patient"]), data["images"], data["labels"])
    case = build()
    with atomic_path(path) as staging:
        np.savez(
            staging, key=case.key, patient=case.patient, images=case.images, labels=case.labels
        )
    return case


def _phantom_job(args: tuple[Path, int, int, int]) -> Case:
    cache, seed, visit, satellites = args
    return _cached(
        cache / f"phantom-{seed}-{visit}-s{satellites}.npz",
        lambda: phantom_case(seed, visit, satellites=satellites),
    )


def synthetic_case(seed: int) -> Case:
    """A sim-to-real training volume (``synthesis.py``) as prepared-like slices."""
    from inference.segmentation import synthesis  # noqa: PLC0415 - only needed for synthetic training

    volume = synthesis.synthesise(seed)
    rng = np.random.default_rng([seed, 13])
    return case_from_arrays(
        volume.channels(CHANNELS),
        volume.labels,
        volume.mask,
        key=f"synthetic-{seed}-{volume.background}-{volume.kind}",
        patient=f"synthetic-{seed}",
        rng=rng,
        background_slices=20,
    )


def _synthetic_job(args: tuple[Path, int]) -> Case:
    cache, seed = args
    return _cached(cache / f"synthetic-{seed}.npz", lambda: synthetic_case(seed))


def _folder_job(args: tuple[Path, Path]) -> Case:
    cache, folder = args
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    return _cached(cache / f"folder-{folder.name}-{digest}.npz", lambda: folder_case(folder))


def phantom_plan(patients: int, first_seed: int, visits: int = 4) -> list[tuple[int, int, int]]:
    """(seed, visit, satellites) for the phantom training set: every visit of ``patients``
    consecutive seeds; one patient in three carries 1-3 small satellite lesions."""
    plan: list[tuple[int, int, int]] = []
    for seed in range(first_seed, first_seed + patients):
        satellites = (seed % 3 == 0) * (1 + seed % 4 % 3)
        plan.extend((seed, visit, satellites) for visit in range(visits))
    return plan


def load_cases(
    *,
    phantoms: list[tuple[int, int, int]],
    folders: list[Path],
    cache: Path,
    synthetic: list[int] | None = None,
    workers: int,
    say: Callable[[str], None],
) -> list[Case]:
    cache.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[Callable[[Any], Case], Any]] = [
        (_phantom_job, (cache, *job)) for job in phantoms
    ] + [(_folder_job, (cache, folder)) for folder in folders]
    jobs += [(_synthetic_job, (cache, seed)) for seed in synthetic or []]
    cases: list[Case] = []
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(max(1, workers)) as pool:
        pending = [pool.apply_async(fn, (arg,)) for fn, arg in jobs]
        for number, result in enumerate(pending, start=1):
            cases.append(result.get())
            if number % 10 == 0 or number == len(pending):
                say(f"cases {number}/{len(pending)} ({time.perf_counter() - started:.0f} s)")
    return cases


def split_patients(
    cases: list[Case], validation_fraction: float, seed: int
) -> tuple[list[Case], list[Case]]:
    """Whole patients to validation, the rest to training (never a patient in both)."""
    patients = sorted({c.patient for c in cases})
    rng = np.random.default_rng(seed)
    count = max(1, round(len(patients) * validation_fraction)) if len(patients) > 1 else 0
    held = set(rng.choice(patients, count, replace=False).tolist()) if count else set()
    return [c for c in cases if c.patient not in held], [c for c in cases if c.patient in held]


# Sampling and augmentation -----------------------------------------------------------------------


def one_hot(labels: np.ndarray) -> np.ndarray:
    out = np.zeros((*labels.shape, len(CLASSES)), np.float32)
    for index, value in enumerate(CLASSES):
        out[..., index] = labels == value
    return out


def _patch(array: np.ndarray, centre: tuple[int, int], size: int) -> np.ndarray:
    """A size x size window of a (y, x, ...) array centred at ``centre``, zero-padded."""
    out = np.zeros((size, size, *array.shape[2:]), array.dtype)
    top, left = centre[0] - size // 2, centre[1] - size // 2
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size, array.shape[0]), min(left + size, array.shape[1])
    out[y0 - top : y1 - top, x0 - left : x1 - left] = array[y0:y1, x0:x1]
    return out


def augment(
    image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Flips, rotation and scaling (labels nearest-neighbour), intensity scale, shift, gamma and
    noise per sequence. ``image`` (y, x, c) float32, ``labels`` (y, x)."""
    if rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    if rng.random() < 0.2:
        image, labels = image[::-1], labels[::-1]
    if rng.random() < 0.6:
        angle = np.radians(rng.uniform(-15, 15))
        zoom = rng.uniform(0.85, 1.15)
        matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / zoom
        centre = (np.array(labels.shape) - 1) / 2
        offset = centre - matrix @ centre
        image = np.stack(
            [
                ndimage.affine_transform(image[..., c], matrix, offset, order=1)
                for c in range(image.shape[-1])
            ],
            axis=-1,
        )
        labels = ndimage.affine_transform(labels, matrix, offset, order=0)
    image = np.ascontiguousarray(image, dtype=np.float32)
    brain = np.any(image != 0, axis=-1)
    for c in range(image.shape[-1]):
        values = image[..., c]
        values *= rng.uniform(0.9, 1.1)
        values += rng.uniform(-0.1, 0.1) * brain
        if rng.random() < 0.3 and brain.any():
            low, high = float(values[brain].min()), float(values[brain].max())
            if high > low:
                unit = (values[brain] - low) / (high - low)
                values[brain] = unit ** rng.uniform(0.8, 1.25) * (high - low) + low
        if rng.random() < 0.3:
            values += rng.normal(0, rng.uniform(0.0, 0.1), values.shape) * brain
    return image, np.ascontiguousarray(labels)


# Subsets of sequences seen in clinics when an exam is incomplete (T1c or FLAIR always kept).
DROPOUT_SUBSETS: tuple[tuple[Sequence, ...], ...] = (
    (Sequence.T1C, Sequence.FLAIR),
    (Sequence.T1C, Sequence.FLAIR),
    (Sequence.T1C,),
    (Sequence.FLAIR,),
    (Sequence.T1, Sequence.T1C, Sequence.FLAIR),
    (Sequence.T1C, Sequence.T2, Sequence.FLAIR),
    (Sequence.T1, Sequence.T1C, Sequence.T2),
    (Sequence.T2, Sequence.FLAIR),
    (Sequence.T1, Sequence.T1C),
)


def drop_sequences(image: np.ndarray, keep: tuple[Sequence, ...]) -> np.ndarray:
    """Zero the channels not in ``keep`` (0 everywhere: how ``segment.py`` fills a missing
    sequence). ``image`` (..., channels) in ``CHANNELS`` order."""
    if not any(s in keep for s in (Sequence.T1C, Sequence.FLAIR)):
        raise ValueError("a subset must keep T1c or FLAIR")
    out = image.copy()
    for index, sequence in enumerate(CHANNELS):
        if sequence not in keep:
            out[..., index] = 0.0
    return out


def sample_batch(
    cases: list[Case],
    rng: np.random.Generator,
    *,
    batch: int,
    patch: int = PATCH,
    tumour_share: float = 0.8,
    augmented: bool = True,
    dropout: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` patches (images, one-hot labels). Most are centred on a tumour pixel of a
    class drawn uniformly among those present, so rare classes and small lesions are seen."""
    images, targets = [], []
    for _ in range(batch):
        case = cases[int(rng.integers(len(cases)))]
        tumour = case.tumour_slices
        if len(tumour) and rng.random() < tumour_share:
            index = int(rng.choice(tumour))
            labels = case.labels[index]
            present = [
                v for v in (TumorLabel.NCR, TumorLabel.ED, TumorLabel.ET) if (labels == v).any()
            ]
            where = np.argwhere(labels == present[int(rng.integers(len(present)))])
        else:
            index = int(rng.integers(len(case.labels)))
            labels = case.labels[index]
            where = np.argwhere(np.any(case.images[index] != 0, axis=-1))
        if len(where) == 0:
            where = np.array([[labels.shape[0] // 2, labels.shape[1] // 2]])
        y, x = where[int(rng.integers(len(where)))] + rng.integers(-patch // 4, patch // 4 + 1, 2)
        image = _patch(case.images[index].astype(np.float32), (int(y), int(x)), patch)
        label = _patch(labels, (int(y), int(x)), patch)
        if augmented:
            image, label = augment(image, label, rng)
        if dropout and rng.random() < dropout:
            image = drop_sequences(image, DROPOUT_SUBSETS[int(rng.integers(len(DROPOUT_SUBSETS)))])
        images.append(image)
        targets.append(one_hot(label))
    return np.stack(images), np.stack(targets)


# Training ----------------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    out: Path
    epochs: int = 40
    steps_per_epoch: int = 150
    validation_steps: int = 20
    batch: int = 16
    patch: int = PATCH
    learning_rate: float = 2e-3
    patience: int = 8
    validation_fraction: float = 0.1
    seed: int = 20261127
    resume: bool = False
    init_weights: Path | None = None  # .weights.h5 or a weights folder, fresh optimiser
    sequence_dropout: float = 0.0  # share of patches with some sequences zeroed
    tumour_share: float = 0.8  # share of patches centred on a tumour pixel
    training_data: dict[str, Any] = field(default_factory=dict)


def _datasets(
    train: list[Case], validation: list[Case], settings: TrainSettings
) -> tuple[Any, Any]:
    import keras  # noqa: PLC0415

    class Patches(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self, cases: list[Case], steps: int, fixed: bool, salt: int) -> None:
            # Two threads prepare batches while the model trains (numpy and scipy release the
            # GIL); each batch's randomness depends only on (seed, epoch, index).
            super().__init__(workers=2, max_queue_size=8)
            self.cases, self.steps, self.fixed, self.salt = cases, steps, fixed, salt
            self.epoch = 0

        def __len__(self) -> int:
            return self.steps

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            epoch = 0 if self.fixed else self.epoch
            rng = np.random.default_rng([settings.seed, self.salt, epoch, index])
            return sample_batch(
                self.cases,
                rng,
                batch=settings.batch,
                patch=settings.patch,
                augmented=not self.fixed,
                tumour_share=settings.tumour_share,
                dropout=0.0 if self.fixed else settings.sequence_dropout,
            )

        def on_epoch_end(self) -> None:
            self.epoch += 1

    return (
        Patches(train, settings.steps_per_epoch, fixed=False, salt=1),
        Patches(validation, settings.validation_steps, fixed=True, salt=2),
    )


def region_dice_metrics() -> list[Any]:
    """Hard Dice of WT, TC and ET over a batch, as Keras metrics."""
    from keras import ops  # noqa: PLC0415

    def make(name: str, classes: tuple[int, ...]) -> Callable[[Any, Any], Any]:
        def metric(y_true: Any, y_pred: Any) -> Any:
            predicted = ops.one_hot(ops.argmax(y_pred, axis=-1), len(CLASSES))
            truth = ops.sum(ops.take(y_true, classes, axis=-1), axis=-1)
            guess = ops.sum(ops.take(predicted, classes, axis=-1), axis=-1)
            overlap = ops.sum(truth * guess)
            return (2.0 * overlap + 1.0) / (ops.sum(truth) + ops.sum(guess) + 1.0)

        metric.__name__ = f"dice_{name}"
        return metric

    return [make("wt", (1, 2, 3)), make("tc", (1, 3)), make("et", (3,))]


def train(
    train_cases: list[Case],
    validation_cases: list[Case],
    settings: TrainSettings,
    *,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, checkpoint, export. Returns the training summary written into the model card."""
    import keras  # noqa: PLC0415

    from inference.segmentation.model import ModelConfig, build_model, dice_ce_loss  # noqa: PLC0415

    if not train_cases or not validation_cases:
        raise InputError("training needs cases for both training and validation (two patients)")
    out = settings.out
    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(settings.seed)
    last = checkpoints / "last.keras"
    state_path = checkpoints / "state.json"
    initial_epoch = 0
    total_steps = settings.epochs * settings.steps_per_epoch
    if settings.resume and last.exists():
        custom = {f.__name__: f for f in region_dice_metrics()}
        model = keras.saving.load_model(
            last, custom_objects={"dice_ce_loss": dice_ce_loss, **custom}
        )
        initial_epoch = json.loads(state_path.read_text())["epochs_done"]
        say(f"resuming after epoch {initial_epoch} from {last}")
    else:
        model = build_model(ModelConfig())
        if settings.init_weights is not None and settings.init_weights.is_dir():
            from inference.segmentation.segment import load_weights, read_card  # noqa: PLC0415

            load_weights(model, settings.init_weights, read_card(settings.init_weights))
            say(f"starting from {settings.init_weights}")
        elif settings.init_weights is not None:
            model.load_weights(settings.init_weights)
            say(f"starting from {settings.init_weights}")
        schedule = keras.optimizers.schedules.CosineDecay(
            settings.learning_rate * 0.1,
            decay_steps=total_steps,
            warmup_target=settings.learning_rate,
            warmup_steps=min(100 if settings.init_weights else 300, total_steps // 10),
            alpha=0.02,
        )
        model.compile(
            optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
            loss=dice_ce_loss,
            metrics=region_dice_metrics(),
        )
    train_data, validation_data = _datasets(train_cases, validation_cases, settings)
    train_data.epoch = initial_epoch
    log = out / "training.jsonl"

    class EpochLog(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            row = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self.started, 1)}
            row.update({k: round(float(v), 5) for k, v in (logs or {}).items()})
            with log.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            state_path.write_text(json.dumps({"epochs_done": epoch + 1}))
            say(
                f"epoch {epoch + 1}/{settings.epochs}: loss {row.get('loss', 0):.4f}, "
                f"val_loss {row.get('val_loss', 0):.4f}, val Dice WT "
                f"{row.get('val_dice_wt', 0):.3f} TC {row.get('val_dice_tc', 0):.3f} "
                f"ET {row.get('val_dice_et', 0):.3f} ({row['seconds']:.0f} s)"
            )

    callbacks = [
        keras.callbacks.ModelCheckpoint(last),
        keras.callbacks.ModelCheckpoint(
            checkpoints / "best.weights.h5",
            monitor="val_loss",
            save_best_only=True,
            save_weights_only=True,
        ),
        keras.callbacks.CSVLogger(str(out / "training_log.csv"), append=settings.resume),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings.patience),
        EpochLog(),
    ]
    started = time.perf_counter()
    history = model.fit(
        train_data,
        validation_data=validation_data,
        epochs=settings.epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=1 if sys.stderr.isatty() else 2,
    )
    best = checkpoints / "best.weights.h5"
    if best.exists():
        model.load_weights(best)
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    best_row = min(rows, key=lambda r: r.get("val_loss", math.inf)) if rows else {}
    summary = {
        "epochs": len(rows),
        "steps_per_epoch": settings.steps_per_epoch,
        "batch": settings.batch,
        "patch": settings.patch,
        "learning_rate": settings.learning_rate,
        "seed": settings.seed,
        "sequence_dropout": settings.sequence_dropout,
        "tumour_share": settings.tumour_share,
        "init_weights": str(settings.init_weights) if settings.init_weights else None,
        "seconds_this_run": round(time.perf_counter() - started, 1),
        "best_epoch": best_row.get("epoch"),
        "validation_at_best": {k: v for k, v in best_row.items() if k.startswith("val_")},
        "training_cases": len(train_cases),
        "validation_cases": len(validation_cases),
        "training_patients": len({c.patient for c in train_cases}),
        "validation_patients": len({c.patient for c in validation_cases}),
        "keras_backend": keras.backend.backend(),
        "history_epochs": len(history.history.get("loss", [])),
    }
    from inference.segmentation.segment import export_weights  # noqa: PLC0415

    export_weights(model, out, training={**settings.training_data, **summary})
    return summary


def run_training(
    *,
    folders: list[Path],
    phantom_patients: int,
    phantom_first_seed: int,
    cache: Path,
    workers: int,
    settings: TrainSettings,
    synthetic_volumes: int = 0,
    synthetic_first_seed: int = 300_000,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The ``train`` command: gather cases, split by patient, train, export."""
    visit_folders = find_visit_folders(folders) if folders else []
    if folders and not visit_folders:
        raise InputError(
            "no visit folder with a segmentation under " + ", ".join(map(str, folders))
        )
    plan = phantom_plan(phantom_patients, phantom_first_seed) if phantom_patients else []
    synthetic = list(range(synthetic_first_seed, synthetic_first_seed + synthetic_volumes))
    if not plan and not visit_folders and not synthetic:
        raise InputError("nothing to train on: give data folders, --phantoms N or --synthetic N")
    say(
        f"{len(plan)} phantom visits, {len(synthetic)} synthetic volumes, "
        f"{len(visit_folders)} labelled folders; cache {cache}"
    )
    cases = load_cases(
        phantoms=plan,
        folders=visit_folders,
        synthetic=synthetic,
        cache=cache,
        workers=workers,
        say=say,
    )
    train_cases, validation_cases = split_patients(
        cases, settings.validation_fraction, settings.seed
    )
    settings.training_data = {
        "data": (
            [
                "SYNTHETIC PHANTOM visits (inference/segmentation/phantoms.py), seeds "
                f"{phantom_first_seed}-{phantom_first_seed + phantom_patients - 1}"
            ]
            if plan
            else []
        )
        + (
            [
                "SYNTHETIC sim-to-real volumes (inference/segmentation/synthesis.py), seeds "
                f"{synthetic[0]}-{synthetic[-1]}; backgrounds: MNI152 tissue maps and the "
                "tumour-free real brains open-ms-cross-sectional patient07 and patient19"
            ]
            if synthetic
            else []
        )
        + [str(f) for f in folders],
        # the labelled visit folders by name: what a model was trained on is never used to
        # evaluate it (the service's evaluate_model leaves these out)
        "cases": sorted(f.name for f in visit_folders),
        "visits": len(cases),
        "slices": int(sum(len(c.labels) for c in cases)),
    }
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return train(train_cases, validation_cases, settings, say=say)
