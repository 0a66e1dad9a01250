"""The images one process read or wrote last, so that the next stage of the same visit in the
same worker does not read and check its files again.

A visit's stages hand each other files: prepare writes the prepared images that segment reads,
segment writes the label and probability maps that measure reads, and the raw images, read to
prepare the visit, are read again to register it. In a worker that runs them one after the
other, every such read found the image it had just held in memory. The cache keeps those images,
up to a byte budget (least recently used first out), keyed by the file's identity on disk
(device, inode, size, modification and change times): a file replaced (our writes rename a new
file into place), rewritten or deleted is not found, and is read from disk as before.

What a hit returns is what reading the file returns: an image written here is kept with the
geometry and header entries ITK reads back from the file it wrote (pixel values round-trip
exactly: NIfTI stores them as they are), and only if they pass the checks a read makes of them
(finite values). A hit is a copy that shares the pixel buffer until either side changes it
(SimpleITK copies on write), so a caller can never alter what the next one gets.

Off (budget 0) unless ``configure`` turns it on: a worker does (``TRACKER_IMAGE_CACHE_MB``);
a web process, which reads uploads once, does not.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

_FLOAT_TYPES = {
    sitk.sitkFloat32,
    sitk.sitkFloat64,
    sitk.sitkVectorFloat32,
    sitk.sitkVectorFloat64,
}


@dataclass(frozen=True)
class _Entry:
    image: sitk.Image
    values_checked: bool  # the file's raw voxel values are known to be finite
    size: int


Key = tuple[int, int, int, int, int]


def _key(path: Path) -> Key | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _nbytes(image: sitk.Image) -> int:
    return (
        int(np.prod(image.GetSize(), dtype=np.int64))
        * int(image.GetNumberOfComponentsPerPixel())
        * int(image.GetSizeOfPixelComponent())
    )


def is_float(image: sitk.Image) -> bool:
    return image.GetPixelID() in _FLOAT_TYPES


class ImageCache:
    def __init__(self, max_bytes: int = 0) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def configure(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = max(0, int(max_bytes))
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._held = 0

    @property
    def held_bytes(self) -> int:
        return self._held

    def get(self, path: Path, *, values_checked: bool) -> sitk.Image | None:
        """The image read from ``path``, if held and unchanged on disk; ``values_checked``
        asks for an image whose file is known to hold finite values (a float image read
        without that check does not answer)."""
        if self.max_bytes <= 0:
            return None
        key = _key(path)
        with self._lock:
            entry = self._entries.get(key) if key is not None else None
            if entry is None or (values_checked and not entry.values_checked):
                self.misses += 1
                return None
            self._entries.move_to_end(key)  # type: ignore[arg-type]
            self.hits += 1
            return sitk.Image(entry.image)

    def put_read(self, path: Path, image: sitk.Image, *, values_checked: bool) -> None:
        """Keep an image as it was just read from ``path``."""
        self._put(_key(path), image, values_checked or not is_float(image))

    def put_written(self, path: Path, image: sitk.Image) -> None:
        """Keep an image just written to ``path``, as reading it back would return it: with
        the geometry and header entries of the written file. Not kept if the file would read
        back differently (another dimension or pixel type) or a read would refuse its values."""
        if self.max_bytes <= 0 or _nbytes(image) > self.max_bytes:
            return
        if is_float(image) and not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
            return
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return
        if (
            reader.GetDimension() != image.GetDimension()
            or reader.GetSize() != image.GetSize()
            or reader.GetPixelID() != image.GetPixelID()
            or reader.GetNumberOfComponents() != image.GetNumberOfComponentsPerPixel()
        ):
            return
        kept = sitk.Image(image)
        kept.SetOrigin(reader.GetOrigin())
        kept.SetSpacing(reader.GetSpacing())
        kept.SetDirection(reader.GetDirection())
        for name in kept.GetMetaDataKeys():
            kept.EraseMetaData(name)
        for name in reader.GetMetaDataKeys():
            kept.SetMetaData(name, reader.GetMetaData(name))
        self._put(_key(path), kept, True)

    def _put(self, key: Key | None, image: sitk.Image, values_checked: bool) -> None:
        size = _nbytes(image)
        if key is None or self.max_bytes <= 0 or size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._held -= old.size
            self._entries[key] = _Entry(sitk.Image(image), values_checked, size)
            self._held += size
            self._evict()

    def _evict(self) -> None:
        while self._entries and self._held > self.max_bytes:
            _, entry = self._entries.popitem(last=False)
            self._held -= entry.size


images = ImageCache()


def configure(max_mb: float) -> None:
    """Hold up to ``max_mb`` MiB of images in this process (0 turns the cache off)."""
    images.configure(int(max_mb * 2**20))
