"""Tiny synthetic images for unit tests: anisotropic spacing, non-zero origin, known shapes."""

from __future__ import annotations

from collections.abc import Sequence as SequenceOf

import numpy as np
import SimpleITK as sitk

from inference.labels import Sequence

SPACING = (1.0, 1.2, 2.0)
ORIGIN = (-40.0, 25.0, 10.0)


def image_from_array(
    array: np.ndarray,
    *,
    spacing: SequenceOf[float] = SPACING,
    origin: SequenceOf[float] = ORIGIN,
    direction: SequenceOf[float] | None = None,
) -> sitk.Image:
    """A SimpleITK image from a (z, y, x) array."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    if direction is not None:
        image.SetDirection(tuple(direction))
    return image


def physical_grid(image: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z physical coordinates (mm) of every voxel, each shaped like the (z, y, x) array."""
    size = image.GetSize()
    k, j, i = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    index = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    points = np.array(image.GetOrigin()) + (index * np.array(image.GetSpacing())) @ direction.T
    shape = (size[2], size[1], size[0])
    return points[:, 0].reshape(shape), points[:, 1].reshape(shape), points[:, 2].reshape(shape)


def head(
    size: tuple[int, int, int] = (48, 40, 24),
    *,
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    spacing: SequenceOf[float] = SPACING,
    origin: SequenceOf[float] | None = None,
    contrast: float = 1.0,
    seed: int = 0,
    noise: float = 0.02,
) -> sitk.Image:
    """An ellipsoidal 'head' with an off-centre bright blob and a dark 'ventricle': asymmetric, so
    rotations and shifts are recoverable. ``size`` is (x, y, z) in voxels."""
    if origin is None:
        origin = tuple(-(n - 1) * s / 2 for n, s in zip(size, spacing, strict=True))
    blank = image_from_array(np.zeros(size[::-1], np.float32), spacing=spacing, origin=origin)
    x, y, z = physical_grid(blank)
    x, y, z = x - centre_mm[0], y - centre_mm[1], z - centre_mm[2]
    r = np.sqrt((x / 18) ** 2 + (y / 15) ** 2 + (z / 14) ** 2)
    values = np.where(r < 1, 100.0, 10.0)
    values += np.where((x - 7) ** 2 + (y + 4) ** 2 + (z - 3) ** 2 < 25, 80.0 * contrast, 0.0)
    values -= np.where((x + 5) ** 2 / 16 + (y - 5) ** 2 / 9 + z**2 / 36 < 1, 60.0, 0.0)
    values = values + np.random.default_rng(seed).normal(0, noise * 100, values.shape)
    return image_from_array(values.astype(np.float32), spacing=spacing, origin=origin)


def visit_images(**kwargs: object) -> dict[Sequence, sitk.Image]:
    """Four 'sequences' of one head with different contrasts."""
    base = head(**kwargs)  # type: ignore[arg-type]
    return {
        Sequence.T1: base,
        Sequence.T1C: base * 1.3,
        Sequence.T2: sitk.InvertIntensity(base, 200.0),
        Sequence.FLAIR: base * 0.7 + 5.0,
    }
