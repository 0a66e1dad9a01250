"""The seven preparation steps on tiny synthetic images with known answers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference.errors import MissingSequenceError
from inference.imaging.io import Visit
from inference.imaging.preprocess import (
    coregister_sequences,
    correct_bias,
    denoise,
    dice,
    is_skull_stripped,
    isotropic,
    normalise,
    prepare_visit,
    read_prepared,
    reorient,
    write_prepared,
)
from inference.imaging.register import mask_points, target_registration_error
from inference.imaging.validate import physical_bounds
from inference.labels import Sequence

from .images import head, image_from_array, physical_grid


def _sphere(
    radius_mm: float,
    *,
    size: int = 48,
    spacing: float = 1.0,
    inside: float = 100.0,
    outside: float = 20.0,
    noise: float = 0.0,
    seed: int = 0,
) -> tuple[sitk.Image, np.ndarray]:
    blank = image_from_array(
        np.zeros((size,) * 3, np.float32),
        spacing=(spacing,) * 3,
        origin=(-(size - 1) * spacing / 2,) * 3,
    )
    x, y, z = physical_grid(blank)
    r = np.sqrt(x**2 + y**2 + z**2)
    values = np.where(r <= radius_mm, inside, outside).astype(np.float32)
    values += np.random.default_rng(seed).normal(0, noise, values.shape).astype(np.float32)
    return image_from_array(values, spacing=(spacing,) * 3, origin=blank.GetOrigin()), r


def test_reorient_keeps_every_voxel_at_its_physical_place() -> None:
    values = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    las = image_from_array(values, direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    images, record = reorient({Sequence.T1: las})
    out = images[Sequence.T1]
    assert out.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert record.metrics["t1"]["was"] == "RPS"
    for index in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
        point = las.TransformIndexToPhysicalPoint(index)
        assert out[out.TransformPhysicalPointToIndex(point)] == las[index]


def test_the_isotropic_grid_covers_the_same_box() -> None:
    image = head(size=(40, 30, 12), spacing=(0.9, 0.9, 5.5))
    grid = isotropic(image, 1.0)
    assert grid.GetSpacing() == (1.0, 1.0, 1.0)
    low, high = physical_bounds(image)
    grid_low, grid_high = physical_bounds(grid)
    np.testing.assert_allclose(grid_low, low, atol=1e-6)
    assert np.all(grid_high >= high - 1e-6)
    assert np.all(grid_high - high < 1.0)


def test_coregistration_recovers_a_known_shift_between_sequences() -> None:
    t1c = head(size=(64, 60, 48), spacing=(1.0, 1.0, 1.0), seed=1)
    shift = sitk.TranslationTransform(3, (2.0, -3.0, 1.5))
    flair = sitk.Resample(
        head(size=(64, 60, 48), spacing=(1.0, 1.0, 1.0), seed=2) * 0.7,
        t1c,
        shift.GetInverse(),
        sitk.sitkLinear,
        7.0,
    )
    transforms, record = coregister_sequences({Sequence.T1C: t1c, Sequence.FLAIR: flair})
    tre = target_registration_error(
        transforms[Sequence.FLAIR], shift, mask_points(t1c > 50, step=2)
    )
    assert tre.mean() < 0.5
    assert record.metrics["flair"]["translation_mm"] == pytest.approx(
        np.linalg.norm([2.0, -3.0, 1.5]), abs=0.5
    )


def _brain_sized_ellipsoid(background_noise: float) -> sitk.Image:
    blank = image_from_array(
        np.zeros((64, 64, 64), np.float32), spacing=(3.0, 3.0, 3.0), origin=(-94.5,) * 3
    )
    x, y, z = physical_grid(blank)
    inside = (x / 70) ** 2 + (y / 60) ** 2 + (z / 55) ** 2 <= 1  # about 970 mL
    rng = np.random.default_rng(0)
    values = np.where(
        inside,
        100.0 + rng.normal(0, 5, inside.shape),
        np.abs(rng.normal(0, background_noise, inside.shape)),
    )
    return image_from_array(values.astype(np.float32), spacing=(3.0,) * 3, origin=(-94.5,) * 3)


def test_it_tells_a_skull_stripped_scan_from_a_raw_one() -> None:
    stripped, evidence = is_skull_stripped(_brain_sized_ellipsoid(background_noise=0.0))
    assert stripped, evidence
    assert 900 < evidence["foreground_ml"] < 1050
    raw, _ = is_skull_stripped(_brain_sized_ellipsoid(background_noise=4.0))
    assert not raw


def test_bias_correction_flattens_a_known_field() -> None:
    image, r = _sphere(40.0, size=96, inside=100.0, outside=0.0)
    x, _, _ = physical_grid(image)
    field = np.exp(0.25 * x / 40.0).astype(np.float32)
    biased = image_from_array(
        sitk.GetArrayFromImage(image) * field, spacing=image.GetSpacing(), origin=image.GetOrigin()
    )
    mask = image_from_array(
        (r <= 38).astype(np.uint8), spacing=image.GetSpacing(), origin=image.GetOrigin()
    )
    inside = r <= 38

    def variation(img: sitk.Image) -> float:
        values = sitk.GetArrayViewFromImage(img)[inside]
        return float(values.std() / values.mean())

    images, record = correct_bias({Sequence.T1: biased}, mask)
    corrected = images[Sequence.T1]
    assert variation(biased) > 0.1
    assert variation(corrected) < 0.5 * variation(biased)
    assert record.metrics["t1"]["field_max"] > record.metrics["t1"]["field_min"]


def test_bias_correction_skips_already_normalised_images() -> None:
    image, r = _sphere(20.0, inside=1.0, outside=-1.0)
    mask = image_from_array(
        (r <= 22).astype(np.uint8), spacing=image.GetSpacing(), origin=image.GetOrigin()
    )
    out, record = correct_bias({Sequence.FLAIR: image}, mask)
    assert out[Sequence.FLAIR] is image
    assert "skipped" in record.metrics["flair"]


def test_denoising_smooths_noise_without_moving_a_tumour_boundary() -> None:
    clean, r = _sphere(12.0, size=48, inside=100.0, outside=20.0)
    noisy, _ = _sphere(12.0, size=48, inside=100.0, outside=20.0, noise=8.0, seed=3)
    mask = image_from_array(
        np.ones((48, 48, 48), np.uint8), spacing=noisy.GetSpacing(), origin=noisy.GetOrigin()
    )
    smoothed = denoise({Sequence.T1C: noisy}, mask)[0][Sequence.T1C]
    interior = r < 8
    before = sitk.GetArrayViewFromImage(noisy)[interior].std()
    after = sitk.GetArrayViewFromImage(smoothed)[interior].std()
    assert after < 0.65 * before
    # The boundary is where the profile crosses half-way (60): its volume must not move.
    voxel_ml = 1e-3

    def volume_ml(img: sitk.Image) -> float:
        return float((sitk.GetArrayViewFromImage(img) > 60).sum()) * voxel_ml

    truth = 4 / 3 * np.pi * 12.0**3 / 1000
    assert volume_ml(clean) == pytest.approx(truth, rel=0.03)
    assert volume_ml(smoothed) == pytest.approx(volume_ml(clean), rel=0.01)
    # and the boundary stays sharp: the 20-80 % rise spans less than 3 mm
    profile = sitk.GetArrayViewFromImage(smoothed)[24, 24, :]
    rising = np.nonzero((profile > 36) & (profile < 84))[0]
    assert len(rising) <= 6


def test_normalisation_is_a_z_score_inside_the_mask() -> None:
    image, r = _sphere(15.0, noise=5.0)
    mask = image_from_array(
        (r <= 15).astype(np.uint8), spacing=image.GetSpacing(), origin=image.GetOrigin()
    )
    out = normalise({Sequence.T2: image}, mask)[0][Sequence.T2]
    values = sitk.GetArrayViewFromImage(out)
    assert values[r <= 15].mean() == pytest.approx(0.0, abs=1e-4)
    assert values[r <= 15].std() == pytest.approx(1.0, abs=1e-3)
    assert np.all(values[r > 15] == 0)


def _stripped_visit(tmp_path: Path) -> Visit:
    base = _brain_sized_ellipsoid(background_noise=0.0)
    brain = sitk.GetArrayViewFromImage(base) > 50
    images = {
        Sequence.T1: base,
        Sequence.T1C: base * 1.2,
        Sequence.T2: sitk.Mask(
            sitk.InvertIntensity(base, 200.0), sitk.Cast(base > 50, sitk.sitkUInt8)
        ),
        Sequence.FLAIR: base * 0.8,
    }
    labels = np.zeros(brain.shape, np.uint8)
    labels[30:34, 30:34, 30:36] = 2
    labels[31:33, 31:33, 31:34] = 3
    seg = image_from_array(labels, spacing=base.GetSpacing(), origin=base.GetOrigin())
    return Visit(
        folder=tmp_path / "case",
        images=images,
        sources={s: f"{s.value}.nii.gz" for s in images},
        segmentation=seg,
        brain_mask=sitk.Cast(base > 50, sitk.sitkUInt8),
    )


def test_prepare_runs_seven_steps_and_writes_one_grid(tmp_path: Path) -> None:
    prepared = prepare_visit(_stripped_visit(tmp_path))
    names = [step["name"] for step in prepared.qc["steps"]]
    assert names == [
        "reorient",
        "coregister_sequences",
        "resample",
        "brain_mask",
        "bias_correction",
        "denoise",
        "normalise",
    ]
    assert all(step["seconds"] >= 0 for step in prepared.qc["steps"])
    mask_step = prepared.qc["steps"][3]["metrics"]
    assert mask_step["skull_stripped_input"] is True
    assert mask_step["reference_dice"] > 0.97
    assert prepared.segmentation is not None
    assert set(np.unique(sitk.GetArrayViewFromImage(prepared.segmentation))) == {0, 2, 3}
    out = write_prepared(prepared, tmp_path / "out")
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "brain_mask.nii.gz",
        "flair.nii.gz",
        "qc.json",
        "seg.nii.gz",
        "t1.nii.gz",
        "t1c.nii.gz",
        "t2.nii.gz",
    ]
    grids = {
        (sitk.ReadImage(str(out / n)).GetSize(), sitk.ReadImage(str(out / n)).GetSpacing())
        for n in written
        if n.endswith(".gz")
    }
    assert len(grids) == 1
    assert next(iter(grids))[1] == (1.0, 1.0, 1.0)
    assert dice(prepared.brain_mask, prepared.brain_mask) == 1.0


def _without(visit: Visit, *sequences: Sequence) -> Visit:
    images = {s: image for s, image in visit.images.items() if s not in sequences}
    return dataclasses.replace(
        visit, images=images, sources={s: f"{s.value}.nii.gz" for s in images}
    )


def test_a_visit_with_t1c_and_flair_only_is_prepared_and_written_with_those_two(
    tmp_path: Path,
) -> None:
    prepared = prepare_visit(_without(_stripped_visit(tmp_path), Sequence.T1, Sequence.T2))
    assert set(prepared.images) == {Sequence.T1C, Sequence.FLAIR}
    assert prepared.qc["sequences"] == {
        "present": ["t1c", "flair"],
        "missing": ["t1", "t2"],
        "reference": "t1c",
    }
    coregistered = prepared.qc["steps"][1]
    assert coregistered["parameters"]["reference"] == "t1c"
    assert set(coregistered["metrics"]) == {"flair"}
    out = write_prepared(prepared, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == [
        "brain_mask.nii.gz",
        "flair.nii.gz",
        "qc.json",
        "seg.nii.gz",
        "t1c.nii.gz",
    ]
    images, mask, qc = read_prepared(out)
    assert set(images) == {Sequence.T1C, Sequence.FLAIR}
    assert qc["sequences"]["present"] == ["t1c", "flair"]
    assert images[Sequence.FLAIR].GetSize() == mask.GetSize()
    only, _, _ = read_prepared(out, reference_only=True)
    assert set(only) == {Sequence.T1C}
    assert np.array_equal(
        sitk.GetArrayViewFromImage(only[Sequence.T1C]),
        sitk.GetArrayViewFromImage(images[Sequence.T1C]),
    )
    (out / "flair.nii.gz").unlink()  # qc.json lists it: its absence is an error
    for reference_only in (False, True):
        with pytest.raises(MissingSequenceError, match=r"prepared visit lacks flair\.nii\.gz"):
            read_prepared(out, reference_only=reference_only)


def test_a_visit_without_t1c_is_prepared_on_the_flair_grid(tmp_path: Path) -> None:
    visit = _without(_stripped_visit(tmp_path), Sequence.T1, Sequence.T1C)
    # FLAIR acquired over a smaller box than T2: the prepared grid is the FLAIR's.
    flair = visit.images[Sequence.FLAIR][4:60, 6:60, 8:60]
    visit.images[Sequence.FLAIR] = flair
    prepared = prepare_visit(visit)
    assert set(prepared.images) == {Sequence.T2, Sequence.FLAIR}
    assert prepared.qc["sequences"]["reference"] == "flair"
    assert prepared.brain_mask.GetSize() == (168, 162, 156)
    assert prepared.brain_mask.GetOrigin() == pytest.approx(flair.GetOrigin(), abs=1.01)
    assert prepared.segmentation is not None
    assert prepared.segmentation.GetSize() == (168, 162, 156)
    mask_step = prepared.qc["steps"][3]
    assert mask_step["parameters"]["reference"] == "flair"
    assert mask_step["metrics"]["skull_stripped_input"] is True


def test_a_visit_without_t1c_or_flair_is_not_prepared(tmp_path: Path) -> None:
    visit = _without(_stripped_visit(tmp_path), Sequence.T1C, Sequence.FLAIR)
    with pytest.raises(MissingSequenceError, match="cannot segment without T1 post-contrast or"):
        prepare_visit(visit)


def test_an_implausible_template_fit_is_recognised() -> None:
    from inference.imaging import atlas
    from inference.imaging.preprocess import _template_fit_check

    template_mask = atlas.template_brain_mask()
    head = sitk.Cast(
        sitk.BinaryDilate(isotropic(template_mask, 2.0) > 0.5, [4, 4, 4]), sitk.sitkUInt8
    )
    centre = head.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in head.GetSize()])
    good = sitk.AffineTransform(3)
    good.SetCenter(centre)
    assert _template_fit_check(good, template_mask, head)["plausible"]
    blown_up = sitk.AffineTransform(3)
    blown_up.SetCenter(centre)
    blown_up.SetMatrix([1.15, 0, 0, 0, 1.15, 0, 0, 0, 1.15])  # volume ratio 1.52
    check = _template_fit_check(blown_up, template_mask, head)
    assert not check["plausible"]
    assert check["volume_ratio"] == pytest.approx(1.15**3, abs=1e-3)
    shifted = sitk.AffineTransform(3)
    shifted.SetCenter(centre)
    shifted.SetTranslation((0.0, 0.0, 60.0))  # the brain pushed down into the neck
    assert not _template_fit_check(shifted, template_mask, head)["plausible"]
