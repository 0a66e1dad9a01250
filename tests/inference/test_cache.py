"""The image cache between a visit's stages: a hit returns what reading the file returns, and
a file replaced, deleted or refused is never answered from memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from inference.errors import FileTooLargeError, NonFiniteVoxelsError, UnreadableFileError
from inference.imaging import cache
from inference.imaging.io import (
    read_image,
    read_label_map,
    read_probability_map,
    write_image,
)
from inference.imaging.validate import ImageLimits

# an oblique, off-grid head: NIfTI keeps geometry in single precision, so what a file reads
# back as differs from the image that was written
TILT = 0.3
DIRECTION = (np.cos(TILT), -np.sin(TILT), 0.0, np.sin(TILT), np.cos(TILT), 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(autouse=True)
def cache_on() -> Iterator[cache.ImageCache]:
    cache.images.clear()
    cache.configure(64)
    yield cache.images
    cache.configure(0)
    cache.images.clear()


def _image(array: np.ndarray, *, vector: bool = False) -> sitk.Image:
    image = sitk.GetImageFromArray(array, isVector=vector)
    image.SetOrigin((-90.123456789, 12.3456789, 7.000001))
    image.SetSpacing((0.9375, 0.9375, 1.2000001))
    image.SetDirection(DIRECTION)
    return image


def _header(image: sitk.Image) -> dict[str, str]:
    # a full read of a vector image adds ITK's own bookkeeping entries, a header read does not
    return {
        k: image.GetMetaData(k)
        for k in image.GetMetaDataKeys()
        if not k.startswith("ITK_original_")
    }


def _same(a: sitk.Image, b: sitk.Image) -> None:
    # headers first: SimpleITK drops a vector image's header entries once its pixels are viewed
    assert _header(a) == _header(b)
    assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    assert a.GetPixelID() == b.GetPixelID()
    assert a.GetNumberOfComponentsPerPixel() == b.GetNumberOfComponentsPerPixel()
    assert (a.GetOrigin(), a.GetSpacing(), a.GetDirection()) == (
        b.GetOrigin(),
        b.GetSpacing(),
        b.GetDirection(),
    )


RNG = np.random.default_rng(0)
WRITTEN = {
    "prepared image": (_image(RNG.random((12, 14, 16)).astype(np.float32)), read_image),
    "label map": (
        _image(RNG.integers(0, 4, (12, 14, 16)).astype(np.uint8)),
        lambda path: read_label_map(path)[0],
    ),
    "probability map": (
        _image(RNG.random((12, 14, 16, 4)).astype(np.float32), vector=True),
        read_probability_map,
    ),
}


@pytest.mark.parametrize("kind", list(WRITTEN))
def test_a_written_image_reads_back_from_memory_as_from_its_file(
    tmp_path: Path, kind: str, cache_on: cache.ImageCache
) -> None:
    image, read = WRITTEN[kind]
    path = write_image(image, tmp_path / "x.nii.gz")
    hits = cache_on.hits
    from_memory = read(path)
    assert cache_on.hits == hits + 1
    cache_on.clear()
    from_file = read(path)
    assert cache_on.hits == hits + 1
    _same(from_memory, from_file)
    # and the file's geometry, not the written image's: they differ in single precision
    assert from_file.GetOrigin() != image.GetOrigin()


def test_an_image_read_twice_is_read_from_disk_once(
    tmp_path: Path, cache_on: cache.ImageCache
) -> None:
    path = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(RNG.random((8, 9, 10)).astype(np.float32), np.eye(4)), path)
    first = read_image(path)
    misses, hits = cache_on.misses, cache_on.hits
    _same(read_image(path), first)
    assert (cache_on.misses, cache_on.hits) == (misses, hits + 1)


def test_a_replaced_or_deleted_file_is_not_answered_from_memory(tmp_path: Path) -> None:
    path = write_image(
        _image(np.full((6, 7, 8), 1.0, np.float32) + RNG.random((6, 7, 8))), tmp_path / "x.nii.gz"
    )
    newer = _image(np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8))
    sitk.WriteImage(newer, str(path))  # another writer, in place
    assert np.array_equal(
        sitk.GetArrayViewFromImage(read_image(path)), sitk.GetArrayViewFromImage(newer)
    )
    path.unlink()
    with pytest.raises(UnreadableFileError, match=r"x\.nii\.gz: file not found"):
        read_image(path)


def test_a_hit_is_a_copy_its_reader_may_change(tmp_path: Path) -> None:
    path = write_image(_image(RNG.random((6, 7, 8)).astype(np.float32)), tmp_path / "x.nii.gz")
    first = read_image(path)
    first.SetOrigin((0.0, 0.0, 0.0))
    first[1, 1, 1] = 99.0
    second = read_image(path)
    assert second.GetOrigin() != (0.0, 0.0, 0.0)
    assert second[1, 1, 1] != 99.0


def test_an_image_a_read_would_refuse_is_refused_all_the_same(tmp_path: Path) -> None:
    values = RNG.random((6, 7, 8)).astype(np.float32)
    values[2, 3, 4] = np.nan
    path = write_image(_image(values), tmp_path / "x.nii.gz")
    with pytest.raises(NonFiniteVoxelsError, match=r"x\.nii\.gz: 1 NaN"):
        read_image(path)
    # read first without the raw check (ITK turns NaN into 0): a checked read still refuses it
    other = tmp_path / "y.nii.gz"
    nib.save(nib.Nifti1Image(values, np.eye(4)), other)
    read_probability_map(other)
    with pytest.raises(NonFiniteVoxelsError, match=r"y\.nii\.gz: 1 NaN"):
        read_image(other)


def test_the_limits_of_each_read_apply_to_a_hit(tmp_path: Path) -> None:
    path = write_image(_image(RNG.random((6, 7, 8)).astype(np.float32)), tmp_path / "x.nii.gz")
    read_image(path)
    with pytest.raises(FileTooLargeError, match=r"x\.nii\.gz: image of .* voxels"):
        read_image(path, limits=ImageLimits(max_voxels=100))
    maps = write_image(
        _image(RNG.random((6, 7, 8, 4)).astype(np.float32), vector=True), tmp_path / "p.nii.gz"
    )
    read_probability_map(maps)
    with pytest.raises(FileTooLargeError, match=r"p\.nii\.gz: image of 8 x 7 x 6 = 336 voxels"):
        read_probability_map(maps, limits=ImageLimits(max_voxels=100))


def test_the_budget_keeps_the_latest_images(tmp_path: Path, cache_on: cache.ImageCache) -> None:
    cache.configure(1)  # 1 MiB: four images of 256 KiB fit, a fifth pushes the first out
    paths = [
        write_image(_image(RNG.random((64, 32, 32)).astype(np.float32)), tmp_path / f"{i}.nii.gz")
        for i in range(5)
    ]
    assert cache_on.held_bytes <= 2**20
    hits = cache_on.hits
    read_image(paths[4])
    read_image(paths[0])
    assert cache_on.hits == hits + 1
    cache.configure(0)
    assert cache_on.held_bytes == 0
    read_image(paths[4])
    assert cache_on.hits == hits + 1
