"""Training volumes built for sim-to-real transfer (the exact phantoms stay in ``phantoms.py``).

The phantoms give each tissue one intensity, so a model trained on them learns "bright on T1c is
enhancing tumour". This generator makes that rule useless and forces the model to learn shape and
context instead (the SynthSeg recipe, Billot et al., Medical Image Analysis 83, 2023, with
synthetic tumours drawn into real tumour-free brains as in Hu et al., CVPR 2023):

- **Backgrounds**: the MNI152 tissue maps shipped in nilearn, turned into a label map (white
  matter, grey matter, CSF) whose intensities are drawn anew for every volume; or one of the two
  real tumour-free brains that may be trained on (``open-ms-cross-sectional`` patient07 and
  patient19; patient26 is never read here: it is the unseen false-positive check).
- **Confounders**, each a tissue label of its own and background for the loss: dura, falx and
  tentorium, dural sinuses, cortical veins and the choroid plexus (all enhancing), rim artefacts
  left by skull stripping, FLAIR-bright white-matter lesions, resection cavities with a thin
  post-surgical rim, blood products (bright on T1 before contrast, so also on T1c).
- **Tumours** as in glioma imaging: irregular, nodular, thick, thin or incomplete enhancing rims;
  necrosis and cysts whose contrast varies; infiltrative non-enhancing tumour; oedema that follows
  white matter; multifocal and metastasis-like lesions; mass effect as a displacement field.
  Roughly one volume in six holds no tumour at all.
- **Intensities** are drawn per tissue and per sequence around textbook contrasts (relative to
  white matter), with wide random spreads and, now and then, an ordering turned around; T1c is T1
  times (1 + enhancement), so whatever is bright before contrast stays bright after it. Then a
  bias field, gamma, noise, blur and a thick-slice acquisition on a random axis (1-7 mm, as
  acquired then resampled), a brain mask eroded or dilated by up to 2 mm, and z-scoring within it
  (as ``preprocess.normalise`` does).

Arrays are numpy (z, y, x) on a 1 mm LPS grid. Everything is seeded: a seed gives the same volume.
"""

from __future__ import annotations

import enum
import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from inference.imaging import atlas
from inference.labels import Sequence, TumorLabel

SEQUENCES: tuple[Sequence, ...] = (Sequence.T1, Sequence.T1C, Sequence.T2, Sequence.FLAIR)

# The only real cases that may be trained on (../shared/data README); patient26 stays unseen.
REAL_BACKGROUNDS: tuple[str, ...] = ("patient07", "patient19")
_REAL_FILES = {
    Sequence.T1: "T1_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz",
    Sequence.T1C: "T1POST_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz",
    Sequence.T2: "T2_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz",
    Sequence.FLAIR: "FLAIR_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz",
}


class Tissue(enum.IntEnum):
    """Labels of the generator. Only the tumour ones become tumour labels for the loss."""

    OUTSIDE = 0
    WM = 1
    GM = 2
    CSF = 3
    REAL = 4  # a real background voxel: its own intensity is kept
    DURA = 10
    SINUS = 11
    VEIN = 12
    PLEXUS = 13
    RIM = 14
    WM_LESION = 15
    CAVITY = 16
    SURGICAL_RIM = 17
    BLOOD = 18
    OEDEMA = 20
    NECROSIS = 21
    CYST = 22
    NON_ENHANCING = 23
    ENHANCING = 24


CONFOUNDERS: frozenset[Tissue] = frozenset(
    {
        Tissue.DURA,
        Tissue.SINUS,
        Tissue.VEIN,
        Tissue.PLEXUS,
        Tissue.RIM,
        Tissue.WM_LESION,
        Tissue.CAVITY,
        Tissue.SURGICAL_RIM,
        Tissue.BLOOD,
    }
)
TUMOUR_LABELS: dict[Tissue, TumorLabel] = {
    Tissue.OEDEMA: TumorLabel.ED,
    Tissue.NECROSIS: TumorLabel.NCR,
    Tissue.CYST: TumorLabel.NCR,
    Tissue.NON_ENHANCING: TumorLabel.NCR,  # BraTS: non-enhancing tumour core belongs to TC
    Tissue.ENHANCING: TumorLabel.ET,
}

# Textbook contrasts relative to white matter: (T1, enhancement on T1c, T2, FLAIR), each a
# (low, high) range drawn uniformly. T1c = T1 * (1 + enhancement).
_CONTRASTS: dict[Tissue, tuple[tuple[float, float], ...]] = {
    Tissue.WM: ((1.0, 1.0), (0.0, 0.03), (1.0, 1.0), (1.0, 1.0)),
    Tissue.GM: ((0.65, 0.85), (0.0, 0.06), (1.15, 1.5), (1.05, 1.35)),
    Tissue.CSF: ((0.2, 0.45), (0.0, 0.05), (2.0, 3.2), (0.15, 0.55)),
    Tissue.DURA: ((0.5, 0.9), (0.4, 1.4), (0.6, 1.4), (0.7, 1.6)),
    Tissue.SINUS: ((0.4, 1.0), (0.6, 2.0), (0.3, 1.6), (0.4, 1.6)),
    Tissue.VEIN: ((0.5, 0.95), (0.4, 1.6), (0.5, 1.5), (0.6, 1.4)),
    Tissue.PLEXUS: ((0.6, 0.95), (0.4, 1.4), (1.2, 2.4), (0.7, 1.4)),
    Tissue.RIM: ((0.9, 2.5), (0.0, 0.6), (0.8, 2.5), (0.9, 2.5)),
    Tissue.WM_LESION: ((0.55, 0.9), (0.0, 0.05), (1.4, 2.2), (1.35, 2.2)),
    Tissue.CAVITY: ((0.2, 0.5), (0.0, 0.05), (1.8, 3.0), (0.2, 1.2)),
    Tissue.SURGICAL_RIM: ((0.6, 0.95), (0.1, 0.6), (1.0, 1.8), (1.0, 1.8)),
    Tissue.BLOOD: ((1.2, 2.0), (0.0, 0.1), (0.3, 1.6), (0.7, 1.8)),
    # Vasogenic oedema is often as dark on T1 as grey matter: without T1 and T2, a dark-on-T1c,
    # bright-on-FLAIR region is oedema as often as tumour core, and only context tells them apart.
    Tissue.OEDEMA: ((0.6, 0.95), (0.0, 0.04), (1.3, 2.0), (1.25, 2.1)),
    # Necrosis is not always dark on T1c nor bright on FLAIR (haemorrhagic or proteinaceous).
    Tissue.NECROSIS: ((0.25, 0.95), (0.0, 0.1), (0.9, 2.8), (0.5, 2.0)),
    Tissue.CYST: ((0.2, 0.5), (0.0, 0.05), (2.0, 3.0), (0.3, 1.3)),
    Tissue.NON_ENHANCING: ((0.45, 0.8), (0.0, 0.06), (1.5, 2.6), (1.4, 2.4)),
    Tissue.ENHANCING: ((0.6, 0.95), (0.25, 1.6), (1.05, 1.7), (1.05, 1.7)),
}
_ENHANCING = frozenset({Tissue.ENHANCING, Tissue.DURA, Tissue.SINUS, Tissue.VEIN, Tissue.PLEXUS})
# Tissues painted as a multiple of the background (anatomy shows through) rather than replacing it.
_MULTIPLICATIVE = frozenset({Tissue.OEDEMA, Tissue.WM_LESION})


@dataclass(frozen=True)
class SyntheticVolume:
    """One training volume. ``images`` z-scored inside ``mask`` (0 outside), ``labels`` in
    BraTS 2023 tumour labels, ``tissue`` the generator's own labels (for checks and tests)."""

    seed: int
    background: str
    images: dict[Sequence, np.ndarray]
    labels: np.ndarray
    tissue: np.ndarray
    mask: np.ndarray
    kind: str

    def channels(self, order: Iterable[Sequence] = SEQUENCES) -> np.ndarray:
        return np.stack([self.images[s] for s in order])


# Backgrounds -------------------------------------------------------------------------------------


def real_background_folder() -> Path:
    """Where patient07 and patient19 live: ``INFERENCE_REAL_BACKGROUNDS``, else
    ``open-ms-cross-sectional`` in ``TRACKER_TEST_DATA`` or in ``../shared/data``."""
    if "INFERENCE_REAL_BACKGROUNDS" in os.environ:
        return Path(os.environ["INFERENCE_REAL_BACKGROUNDS"])
    shared = Path(__file__).resolve().parents[3] / "shared" / "data"
    return Path(os.environ.get("TRACKER_TEST_DATA", shared)) / "open-ms-cross-sectional"


def _box(mask: np.ndarray, margin: int = 3) -> tuple[slice, ...]:
    where = np.argwhere(mask)
    start = np.maximum(where.min(axis=0) - margin, 0)
    stop = np.minimum(where.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))


@functools.cache
def mni_anatomy() -> np.ndarray:
    """WM / GM / CSF labels of the MNI152 template, cropped to the brain (read-only)."""
    brain = sitk.GetArrayFromImage(atlas.template_brain_mask()) > 0
    wm = sitk.GetArrayFromImage(atlas.tissue_map("wm"))
    gm = sitk.GetArrayFromImage(atlas.tissue_map("gm"))
    tissue = np.full(brain.shape, Tissue.CSF, np.uint8)
    tissue[gm >= 0.35] = Tissue.GM
    tissue[(wm >= 0.5) & (wm >= gm)] = Tissue.WM
    tissue[~brain] = Tissue.OUTSIDE
    box = _box(brain)
    out = np.ascontiguousarray(tissue[box])
    out.setflags(write=False)
    return out


@functools.cache
def real_background(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A real tumour-free brain: (images (4, z, y, x) with white matter at about 1.0, tissue
    labels with WM / GM / CSF estimated from T1), cropped to the brain (read-only)."""
    if name not in REAL_BACKGROUNDS:
        raise ValueError(f"{name} may not be trained on; allowed: {', '.join(REAL_BACKGROUNDS)}")
    folder = real_background_folder() / name
    arrays = []
    for sequence in SEQUENCES:
        image = sitk.DICOMOrient(sitk.ReadImage(str(folder / _REAL_FILES[sequence])), "LPS")
        arrays.append(sitk.GetArrayFromImage(image).astype(np.float32))
    stack = np.stack(arrays)
    brain = ndimage.binary_fill_holes(np.all(stack > 0, axis=0))
    brain = _largest_component(ndimage.binary_opening(brain, iterations=1))
    t1 = stack[0]
    inside = t1[brain]
    wm_level = float(np.percentile(inside, 85))
    tissue = np.full(brain.shape, Tissue.GM, np.uint8)
    tissue[t1 >= 0.88 * wm_level] = Tissue.WM
    tissue[t1 < 0.55 * wm_level] = Tissue.CSF
    tissue[~brain] = Tissue.OUTSIDE
    white = tissue == Tissue.WM
    for index in range(len(stack)):
        stack[index] /= float(np.median(stack[index][white])) or 1.0
        stack[index][~brain] = 0
    box = _box(brain)
    images = np.ascontiguousarray(stack[(slice(None), *box)])
    labels = np.ascontiguousarray(tissue[box])
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _largest_component(mask: np.ndarray) -> np.ndarray:
    components, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    out: np.ndarray = components == int(np.argmax(sizes))
    return out


def available_backgrounds() -> list[str]:
    """``mni`` always; the real brains when their files are there."""
    found = ["mni"]
    for name in REAL_BACKGROUNDS:
        if all((real_background_folder() / name / f).exists() for f in _REAL_FILES.values()):
            found.append(name)
    return found


# Shapes ------------------------------------------------------------------------------------------


def smooth_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise with unit standard deviation (computed on a coarse grid)."""
    step = max(1, int(sigma // 2))
    coarse_shape = tuple(max(2, -(-n // step)) for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), sigma / step)
    if step > 1:
        field = ndimage.zoom(
            field, [n / c for n, c in zip(shape, coarse_shape, strict=True)], order=1
        )
        field = field[tuple(slice(0, n) for n in shape)]
    field = field - field.mean()
    out: np.ndarray = (field / (field.std() or 1.0)).astype(np.float32)
    return out


def _ball_offsets(radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    grid = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1].reshape(3, -1).T
    inside: np.ndarray = grid[(grid**2).sum(axis=1) <= radius**2 + 1e-6]
    return inside


def _stamp(
    target: np.ndarray, points: np.ndarray, radius: float, allowed: np.ndarray
) -> np.ndarray:
    """Boolean mask of balls of ``radius`` around ``points`` (n, 3), within ``allowed``."""
    out = np.zeros(target.shape, bool)
    if len(points) == 0:
        return out
    offsets = _ball_offsets(radius)
    every = (np.round(points).astype(int)[:, None, :] + offsets[None]).reshape(-1, 3)
    every = every[np.all((every >= 0) & (every < np.array(target.shape)), axis=1)]
    out[tuple(every.T)] = True
    inside: np.ndarray = out & allowed
    return inside


def _random_walk(
    start: np.ndarray,
    steps: int,
    depth: np.ndarray,
    band: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """A tortuous path that stays within a band of distance from the brain surface."""
    points = [start.astype(float)]
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    shape = np.array(depth.shape)
    for _ in range(steps):
        direction = direction + 0.35 * rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        nxt = points[-1] + direction
        index = tuple(np.clip(np.round(nxt).astype(int), 0, shape - 1))
        if not band[0] <= depth[index] <= band[1]:
            direction = -direction + 0.5 * rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            continue
        points.append(nxt)
    return np.array(points)


def _pick(mask: np.ndarray, rng: np.random.Generator, count: int = 1) -> np.ndarray:
    where = np.argwhere(mask)
    if len(where) == 0:
        return np.zeros((0, 3), int)
    picked: np.ndarray = where[rng.integers(len(where), size=count)]
    return picked


def add_confounders(
    tissue: np.ndarray, brain: np.ndarray, rng: np.random.Generator, *, real: bool
) -> None:
    """Paint the confounders into ``tissue`` in place. Real brains have their own dura, vessels
    and plexus, so they get only the lesion-like confounders (and fewer of them)."""
    depth = ndimage.distance_transform_edt(brain)
    midline = tissue.shape[2] // 2
    zz = np.arange(tissue.shape[0])[:, None, None]
    yy = np.arange(tissue.shape[1])[None, :, None]
    xx = np.arange(tissue.shape[2])[None, None, :]
    if not real:
        # Dura over parts of the surface, the falx in the midline fissure, the tentorium below.
        shell = brain & (depth <= rng.uniform(1.0, 2.5))
        patches = smooth_noise(tissue.shape, 8.0, rng) > rng.uniform(-0.8, 0.6)
        tissue[shell & patches] = Tissue.DURA
        top = np.argwhere(brain)[:, 0].max()
        falx = (np.abs(xx - midline) <= rng.integers(0, 2)) & (tissue == Tissue.CSF)
        falx &= zz > top - rng.integers(25, 55)
        tissue[falx & brain] = Tissue.DURA
        low = np.argwhere(brain)[:, 0].min()
        posterior = np.argwhere(brain)[:, 1].min()
        tentorium = (zz < low + rng.integers(20, 35)) & (yy < posterior + rng.integers(40, 70))
        tissue[tentorium & shell] = Tissue.DURA
        # Superior sagittal sinus along the top of the midline, transverse sinuses behind.
        crown = brain & (depth <= 3) & (np.abs(xx - midline) <= 1) & (zz > top - 60)
        tissue[_stamp(tissue, np.argwhere(crown)[::3], rng.uniform(1.5, 3.5), brain)] = Tissue.SINUS
        transverse = brain & (depth <= 3) & (zz < low + 30) & (yy < posterior + 25)
        transverse &= np.abs(xx - midline) > 8
        if rng.random() < 0.8:
            points = np.argwhere(transverse)[::4]
            tissue[_stamp(tissue, points, rng.uniform(1.5, 3.0), brain)] = Tissue.SINUS
        # Choroid plexus in the lateral ventricles (deep CSF).
        ventricles = (tissue == Tissue.CSF) & (depth > 15)
        for centre in _pick(ventricles, rng, int(rng.integers(1, 5))):
            blob = _stamp(tissue, centre[None], rng.uniform(2.0, 5.0), ventricles | (depth > 15))
            tissue[blob] = Tissue.PLEXUS
    # Cortical veins: thin tortuous tubes near the surface (real brains get a few more).
    for _ in range(int(rng.integers(0, 8 if not real else 4))):
        start = _pick(brain & (depth > 0.5) & (depth < 3), rng)
        if len(start):
            path = _random_walk(start[0], int(rng.integers(15, 60)), depth, (0.5, 4.0), rng)
            tissue[_stamp(tissue, path, rng.uniform(0.6, 1.5), brain)] = Tissue.VEIN
    # Rim artefacts left by skull stripping.
    if rng.random() < 0.4:
        shell = brain & (depth <= rng.uniform(1.0, 3.0))
        patches = smooth_noise(tissue.shape, 10.0, rng) > rng.uniform(0.8, 1.8)
        tissue[shell & patches] = Tissue.RIM
    # FLAIR-bright white-matter lesions (small-vessel disease, MS), mostly periventricular.
    if rng.random() < 0.55:
        white = (tissue == Tissue.WM) & (depth > 8)
        for centre in _pick(white, rng, int(rng.integers(1, 16))):
            radii = rng.uniform(1.0, 5.0, 3)
            box = tuple(
                slice(max(int(c - r - 1), 0), int(c + r + 2))
                for c, r in zip(centre, radii, strict=True)
            )
            grid = np.ogrid[box]
            inside = (
                sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1
            )
            region = tissue[box]
            region[inside & (region != Tissue.OUTSIDE)] = Tissue.WM_LESION
    # A resection cavity with a thin post-surgical rim.
    if rng.random() < 0.15:
        centre = _pick(brain & (depth > 12), rng)
        if len(centre):
            radius = rng.uniform(6.0, 16.0)
            cavity = _stamp(tissue, centre, radius, brain)
            rim = _stamp(tissue, centre, radius + rng.uniform(1.0, 2.0), brain) & ~cavity
            rim &= smooth_noise(tissue.shape, 6.0, rng) > rng.uniform(-1.0, 0.3)
            tissue[cavity] = Tissue.CAVITY
            tissue[rim] = Tissue.SURGICAL_RIM
    # Blood products.
    if rng.random() < 0.2:
        for centre in _pick(brain & (depth > 5), rng, int(rng.integers(1, 4))):
            tissue[_stamp(tissue, centre[None], rng.uniform(1.5, 5.0), brain)] = Tissue.BLOOD


def _tumour_centre(
    brain: np.ndarray, tissue: np.ndarray, radius: float, rng: np.random.Generator
) -> np.ndarray | None:
    depth = ndimage.distance_transform_edt(brain)
    inner = brain & (depth > max(radius * 0.6, 6.0)) & (tissue != Tissue.CSF)
    picked = _pick(inner, rng)
    return picked[0] if len(picked) else None


def _mass_effect(
    arrays: list[np.ndarray],
    orders: list[int],
    centre: np.ndarray,
    radius: float,
    strength: float,
) -> list[np.ndarray]:
    """Push the background away from ``centre``: a voxel at distance r samples from
    r - s * R^3 / (r^2 + R^2), so the displacement fades with distance and stays invertible."""
    shape = arrays[0].shape[-3:]
    reach = int(radius * 3)
    lo = np.maximum(centre - reach, 0)
    hi = np.minimum(centre + reach + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    grid = np.stack(
        np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij")
    ).astype(np.float32)
    offset = grid - centre[:, None, None, None]
    r = np.sqrt((offset**2).sum(axis=0)) + 1e-3
    shift = strength * radius**3 / (r**2 + radius**2) / r
    source = grid - offset * shift
    out = []
    for array, order in zip(arrays, orders, strict=True):
        moved = array.copy()
        if array.ndim == 4:
            for c in range(array.shape[0]):
                moved[c][box] = ndimage.map_coordinates(array[c], source, order=order)
        else:
            moved[box] = ndimage.map_coordinates(array, source, order=order)
        out.append(moved)
    return out


def draw_tumour(
    tissue: np.ndarray,
    brain: np.ndarray,
    centre: np.ndarray,
    kind: str,
    rng: np.random.Generator,
) -> None:
    """Paint one tumour of ``kind`` (glioblastoma, non_enhancing, nodule) at ``centre``."""
    radius = {
        "glioblastoma": rng.uniform(7.0, 28.0),
        "non_enhancing": rng.uniform(8.0, 28.0),
        "nodule": rng.uniform(2.5, 9.0),
    }[kind]
    oedema_reach = radius * rng.uniform(1.1, 2.6) + rng.uniform(0, 10)
    if kind == "non_enhancing":
        oedema_reach = radius * rng.uniform(1.0, 1.5)
    half = int(oedema_reach * 1.5) + 4
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(centre + half + 1, tissue.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    shape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    axes = rng.uniform(0.7, 1.3, 3)
    grid = np.ogrid[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))]
    r = np.sqrt(sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes, strict=True)))
    bumps = smooth_noise(shape, max(radius / 3, 1.5), rng)
    core = r < radius * (1 + rng.uniform(0.1, 0.35) * bumps)
    local = tissue[box]
    inside = brain[box] & (local != Tissue.OUTSIDE)
    oedema = r < oedema_reach * (1 + 0.35 * smooth_noise(shape, max(oedema_reach / 3, 2), rng))
    # Oedema follows white matter and mostly spares cortex.
    white = local == Tissue.WM
    cortex = (local == Tissue.GM) & (smooth_noise(shape, 4.0, rng) > rng.uniform(0.0, 1.5))
    oedema &= inside & (white | cortex | (local == Tissue.WM_LESION) | core)
    local[oedema & ~core] = Tissue.OEDEMA
    if kind == "non_enhancing":
        local[core & inside] = Tissue.NON_ENHANCING
        return
    thickness = rng.uniform(1.0, 6.0) if kind == "glioblastoma" else radius
    necrotic = r < (radius - thickness) * (
        1 + 0.25 * smooth_noise(shape, max(radius / 4, 1.5), rng)
    )
    rim = core & ~necrotic
    if kind == "glioblastoma" and rng.random() < 0.35:  # an incomplete rim
        gap = smooth_noise(shape, max(radius / 2, 2), rng) < rng.uniform(-1.0, 0.0)
        local[rim & gap & inside] = Tissue.NON_ENHANCING if rng.random() < 0.5 else Tissue.OEDEMA
        rim &= ~gap
    if kind == "glioblastoma" and rng.random() < 0.4:  # enhancing nodules on the rim
        for point in _pick(rim, rng, int(rng.integers(1, 4))):
            rim |= _stamp(local, point[None], rng.uniform(1.5, 4.0), core)
            necrotic &= ~rim
    local[rim & inside] = Tissue.ENHANCING
    centre_kind = Tissue.CYST if rng.random() < 0.2 else Tissue.NECROSIS
    local[necrotic & core & inside] = centre_kind


def _tumour_plan(rng: np.random.Generator) -> list[str]:
    roll = rng.random()
    if roll < 0.16:
        return []
    if roll < 0.56:
        return ["glioblastoma"]
    if roll < 0.74:
        return ["non_enhancing"]
    if roll < 0.86:
        return ["glioblastoma"] + ["nodule"] * int(rng.integers(1, 3))
    return ["nodule"] * int(rng.integers(1, 4))


# Intensities -------------------------------------------------------------------------------------


def _contrast_table(rng: np.random.Generator) -> dict[Tissue, np.ndarray]:
    """Per tissue (T1, T1c, T2, FLAIR) relative to white matter, drawn for one volume."""
    table: dict[Tissue, np.ndarray] = {}
    scramble = rng.random() < 0.1  # now and then an ordering of its own
    for tissue, ranges in _CONTRASTS.items():
        t1, enhancement, t2, flair = (rng.uniform(lo, hi) for lo, hi in ranges)
        if scramble and tissue not in (Tissue.WM,):
            t1, t2, flair = (v * rng.uniform(0.6, 1.5) for v in (t1, t2, flair))
        t1c = t1 * (1 + enhancement)
        if tissue in _ENHANCING:  # what enhances ends up brighter than white matter on T1c
            t1c = max(t1c, rng.uniform(1.1, 1.3))
        table[tissue] = np.array([t1, t1c, t2, flair], np.float32)
    # Non-enhancing tumour is darker on T1 and brighter on T2 than the oedema around it (how
    # BraTS annotators tell the core from the surrounding hyperintensity, mostly on T2). On FLAIR
    # either can be the brighter: FLAIR alone does not separate them.
    oedema, core = table[Tissue.OEDEMA], table[Tissue.NON_ENHANCING]
    for index, ratio in ((0, 0.95), (1, 0.95)):
        core[index] = min(core[index], oedema[index] * ratio)
    core[2] = max(core[2], oedema[2] * rng.uniform(1.08, 1.3))
    core[3] = oedema[3] * rng.uniform(0.85, 1.25)
    return table


def _thick_slices(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Acquire on a random axis at 2-7 mm (blur and decimate) and resample back to 1 mm."""
    axis = int(rng.choice(3, p=[0.6, 0.2, 0.2]))
    step = float(rng.uniform(2.0, 7.0))
    sigma = [0.0, 0.0, 0.0]
    sigma[axis] = step / 2.355
    blurred = ndimage.gaussian_filter(image, sigma)
    count = max(2, int(image.shape[axis] / step))
    positions = np.linspace(0, image.shape[axis] - 1, count)
    coarse = np.take(blurred, np.round(positions).astype(int), axis=axis)
    zoom = [1.0, 1.0, 1.0]
    zoom[axis] = image.shape[axis] / count
    out = ndimage.zoom(coarse, zoom, order=1)
    fix = [slice(0, n) for n in image.shape]
    out = out[tuple(fix)]
    if out.shape != image.shape:
        pad = [(0, n - m) for n, m in zip(image.shape, out.shape, strict=True)]
        out = np.pad(out, pad, mode="edge")
    result: np.ndarray = out
    return result


def _bias_field(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative field: exp of a random cubic polynomial of position."""
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    grids = np.ix_(*axes)
    strength = rng.uniform(0.0, 0.25)
    log_field = np.zeros(shape, np.float32)
    for power_z in range(4):
        for power_y in range(4 - power_z):
            for power_x in range(4 - power_z - power_y):
                if power_z + power_y + power_x == 0:
                    continue
                weight = np.float32(rng.normal(0.0, strength / 3))
                log_field += (
                    weight * grids[0] ** power_z * grids[1] ** power_y * grids[2] ** power_x
                )
    out: np.ndarray = np.exp(log_field)
    return out


def render(
    tissue: np.ndarray, background: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """Images (4, z, y, x) from the tissue labels, white matter at about 1.0 before corruption.
    ``background`` (4, z, y, x) gives the intensity of ``Tissue.REAL`` and WM/GM/CSF voxels."""
    table = _contrast_table(rng)
    images = np.zeros((4, *tissue.shape), np.float32)
    texture = 1.0 + rng.uniform(0.0, 0.08) * smooth_noise(tissue.shape, rng.uniform(1.0, 3.0), rng)
    tumour_texture = smooth_noise(tissue.shape, rng.uniform(1.0, 4.0), rng)
    for value in np.unique(tissue):
        label = Tissue(int(value))
        if label == Tissue.OUTSIDE:
            continue
        where = tissue == value
        if background is not None and label in (Tissue.WM, Tissue.GM, Tissue.CSF, Tissue.REAL):
            images[:, where] = background[:, where]
            continue
        contrast = table.get(label, table[Tissue.WM])
        if label in _MULTIPLICATIVE and background is not None:
            white = table[Tissue.WM]
            images[:, where] = background[:, where] * (contrast / white)[:, None]
        else:
            images[:, where] = contrast[:, None] * texture[where][None]
        if label in TUMOUR_LABELS:  # tumours are heterogeneous
            images[:, where] *= 1.0 + rng.uniform(0.0, 0.15) * tumour_texture[where][None]
    for c in range(4):
        channel = images[c]
        sigma = rng.uniform(0.3, 1.0) if background is None else rng.uniform(0.0, 0.6)
        if sigma > 0.05:
            channel = ndimage.gaussian_filter(channel, sigma)
        if rng.random() < 0.35:
            channel = _thick_slices(channel, rng)
        channel = channel * _bias_field(channel.shape, rng)
        channel = np.clip(channel, 0, None)
        top = float(np.percentile(channel[tissue > 0], 99.5)) or 1.0
        channel = (channel / top) ** rng.uniform(0.7, 1.4) * top
        channel = channel + rng.normal(0, rng.uniform(0.005, 0.06), channel.shape)
        images[c] = channel
    return images


def zscore(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Z-score within the mask, zero outside (as ``preprocess.normalise`` does)."""
    inside = values[mask]
    std = float(inside.std()) or 1.0
    out: np.ndarray = np.where(mask, (values - float(inside.mean())) / std, 0.0).astype(np.float32)
    return out


# The generator -----------------------------------------------------------------------------------


def synthesise(seed: int, *, background: str | None = None) -> SyntheticVolume:
    """One training volume for ``seed``. ``background`` is ``mni`` or a real brain's name; by
    default it is drawn among ``available_backgrounds()`` (real brains half of the time)."""
    rng = np.random.default_rng([seed, 20261206])
    choices = available_backgrounds()
    if background is None:
        real = [c for c in choices if c != "mni"]
        background = str(rng.choice(real)) if real and rng.random() < 0.5 else "mni"
    elif background not in choices:
        raise ValueError(f"background {background!r} is not available ({', '.join(choices)})")
    if background == "mni":
        tissue = np.array(mni_anatomy())
        images_bg: np.ndarray | None = None
    else:
        real_images, real_tissue = real_background(background)
        tissue, images_bg = np.array(real_tissue), np.array(real_images)
    if rng.random() < 0.5:  # left-right mirror
        tissue = np.ascontiguousarray(tissue[..., ::-1])
        if images_bg is not None:
            images_bg = np.ascontiguousarray(images_bg[..., ::-1])
    brain = tissue != Tissue.OUTSIDE
    add_confounders(tissue, brain, rng, real=images_bg is not None)
    plan = _tumour_plan(rng)
    for kind in plan:
        centre = _tumour_centre(brain, tissue, 20.0 if kind != "nodule" else 6.0, rng)
        if centre is None:
            continue
        if kind != "nodule" and rng.random() < 0.6:
            arrays = [tissue] + ([images_bg] if images_bg is not None else [])
            moved = _mass_effect(
                arrays,
                [0, 1][: len(arrays)],
                centre.astype(np.float32),
                rng.uniform(8.0, 22.0),
                rng.uniform(0.2, 0.6),
            )
            tissue = moved[0]
            if images_bg is not None:
                images_bg = moved[1]
            brain = tissue != Tissue.OUTSIDE
        draw_tumour(tissue, brain, centre, kind, rng)
    images = render(tissue, images_bg, rng)
    mask = brain.copy()
    wobble = int(rng.integers(-2, 3))
    if wobble > 0:
        mask = ndimage.binary_dilation(mask, iterations=wobble)
    elif wobble < 0:
        mask = ndimage.binary_erosion(mask, iterations=-wobble)
    labels = np.zeros(tissue.shape, np.uint8)
    for source, target in TUMOUR_LABELS.items():
        labels[tissue == source] = target
    labels[~mask] = 0
    return SyntheticVolume(
        seed=seed,
        background=background,
        images={s: zscore(images[i], mask) for i, s in enumerate(SEQUENCES)},
        labels=labels,
        tissue=tissue,
        mask=mask,
        kind="+".join(plan) or "no_tumour",
    )
