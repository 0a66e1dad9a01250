"""The MNI152 (ICBM 2009a symmetric) template and tissue maps that ship inside the nilearn wheel.

Nothing is downloaded: the files are read from the installed package, located without importing
nilearn (which would pull in scikit-learn and pandas for nothing).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import SimpleITK as sitk

_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
# nilearn's own brain mask is the T1 template above 0.2 (of 1.0); we use the same definition.
BRAIN_THRESHOLD = 0.2


def data_folder() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the MNI152 template comes from the nilearn package, which is not installed "
            "(pip install nilearn)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


@functools.cache
def _load(name: str) -> sitk.Image:
    path = data_folder() / _FILES[name]
    image = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32) / 255.0
    return sitk.DICOMOrient(image, "LPS")


def template_t1() -> sitk.Image:
    """T1-weighted template, brain only (skull removed), scaled to [0, 1], 1 mm, LPS."""
    return sitk.Image(_load("t1"))


def tissue_map(name: str) -> sitk.Image:
    """Grey-matter (``gm``) or white-matter (``wm``) probability, [0, 1]."""
    return sitk.Image(_load(name))


def template_brain_mask() -> sitk.Image:
    return sitk.Cast(_load("t1") > BRAIN_THRESHOLD, sitk.sitkUInt8)
