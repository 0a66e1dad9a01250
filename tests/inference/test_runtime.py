"""The shipped segmenter run by ONNX Runtime gives Keras' segmentation (SYNTHETIC PHANTOM): the
export is built by the code, checked on a probe batch, cached under the weights' checksum, and a
damaged cached file is rebuilt, never used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference.errors import InputError
from inference.labels import Region, Sequence
from inference.measurement.evaluate import evaluate
from inference.segmentation import runtime
from inference.segmentation.segment import Segmenter

pytestmark = pytest.mark.slow


def _phantom_prepared(tmp_path: Path) -> tuple[dict[Sequence, sitk.Image], sitk.Image]:
    """A skull-free phantom visit, z-scored within its head, 24 slices through its tumour: what
    ``prepare_visit`` hands the segmenter, without the seconds it takes."""
    import dataclasses

    from inference.segmentation.phantoms import Scenario, make_patient, write_patient

    patient = dataclasses.replace(
        make_patient(930011, visits=1, scenario=Scenario.STABLE), skull=False
    )
    (folder,) = write_patient(patient, tmp_path / "phantom")
    names = {Sequence.T1: "t1n", Sequence.T1C: "t1c", Sequence.T2: "t2w", Sequence.FLAIR: "t2f"}
    raw = {
        s: sitk.ReadImage(str(next(folder.glob(f"*-{n}.nii.gz"))), sitk.sitkFloat32)
        for s, n in names.items()
    }
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(next(folder.glob("*-seg.nii.gz")))))
    head = sitk.GetArrayFromImage(raw[Sequence.T1C]) > 0
    centre = int(np.argwhere(seg > 0)[:, 0].mean())
    head[: centre - 12] = False
    head[centre + 12 :] = False
    images = {}
    for sequence, image in raw.items():
        values = sitk.GetArrayFromImage(image)
        inside = values[head]
        scaled = np.where(head, (values - inside.mean()) / inside.std(), 0).astype(np.float32)
        images[sequence] = sitk.GetImageFromArray(scaled)
        images[sequence].CopyInformation(image)
    mask = sitk.GetImageFromArray(head.astype(np.uint8))
    mask.CopyInformation(raw[Sequence.T1C])
    return images, mask


def test_onnx_runtime_segments_as_keras_does(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    keras_segmenter = Segmenter(runtime="keras")
    onnx_segmenter = Segmenter(runtime="onnx", cache=cache)  # exports: no file yet
    assert onnx_segmenter.model is not None  # the Keras model was built to export it
    (built,) = cache.glob("*.onnx")
    record = json.loads(built.with_suffix(".json").read_text())
    assert record["weights_sha256"] == keras_segmenter.identity["weights_sha256"]
    assert record["probe_max_abs_difference"] <= runtime.PROBE_TOLERANCE

    images, mask = _phantom_prepared(tmp_path)
    expected = keras_segmenter.segment(images, mask, flips=True)
    cached = Segmenter(runtime="onnx", cache=cache)
    assert cached.model is None  # loaded from the cache, Keras not needed
    got = cached.segment(images, mask, flips=True)
    assert int(sitk.GetArrayViewFromImage(expected.labels).astype(bool).sum()) > 1000
    scores = evaluate(got.labels, expected.labels, distances=False)
    for region in Region:
        assert scores[region].dice >= 0.999, (region, scores[region])
    difference = np.abs(
        sitk.GetArrayViewFromImage(got.probabilities)
        - sitk.GetArrayViewFromImage(expected.probabilities)
    ).max()
    assert difference <= 1e-4
    assert cached.warm_up() >= 0.0


def test_a_damaged_cached_export_is_rebuilt_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = Segmenter(runtime="onnx", cache=cache)
    sha = str(first.identity["weights_sha256"])
    path, record = runtime.onnx_paths(cache, sha)
    assert runtime.cached_onnx(cache, sha) == path
    with path.open("r+b") as handle:  # one byte changed
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert runtime.cached_onnx(cache, sha) is None
    assert runtime.cached_onnx(cache, "f" * 64) is None  # other weights: nothing cached
    again = Segmenter(runtime="onnx", cache=cache)
    assert again.model is not None  # rebuilt
    assert runtime.cached_onnx(cache, sha) == path
    assert json.loads(record.read_text())["weights_sha256"] == sha


def test_runtime_names(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="segmenter runtime 'fast': expected one of auto"):
        runtime.resolve("fast")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert runtime.resolve("auto") == "keras"  # JAX is for GPUs: Keras runs there
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert runtime.resolve("auto") == "onnx"
    assert runtime.resolve("keras") == "keras"
