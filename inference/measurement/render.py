"""Slice images for people: the prepared visit, its segmentation and its tumour probability on one
1 mm LPS grid, windowed to 8 bits once, cut along the three planes in radiological convention and
encoded as PNG.

Display volumes are resampled onto the prepared grid: label maps nearest-neighbour, intensities
and probabilities linearly. A prior visit is brought onto the same grid through the registration
(which maps the prior's physical space to this visit's), so the two sit side by side slice for
slice.

Radiological convention (LPS arrays are indexed [z, y, x] = [inferior->superior,
anterior->posterior, right->left]): axial slices show anterior at the top and the patient's right
on the left of the screen; coronal and sagittal slices show superior at the top; sagittal slices
show anterior on the left.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from inference.errors import InputError
from inference.labels import REGION_LABELS, Region, TumorLabel
from inference.measurement.evaluate import bounding_box, same_grid

# A display-only value: tumour whose sub-regions the visit's sequences cannot tell apart (FLAIR
# without T1 post-contrast supports the whole tumour only). Never stored in a label map.
WHOLE_TUMOUR = 9
# Okabe-Ito colours, distinguishable with the common colour-vision deficiencies.
LABEL_COLOURS: dict[int, tuple[int, int, int]] = {
    int(TumorLabel.NCR): (0x00, 0x72, 0xB2),  # blue
    int(TumorLabel.ED): (0xF0, 0xE4, 0x42),  # yellow
    int(TumorLabel.ET): (0xD5, 0x5E, 0x00),  # vermillion
    WHOLE_TUMOUR: (0x00, 0x9E, 0x73),  # bluish green
}
LABEL_NAMES: dict[int, str] = {
    int(TumorLabel.NCR): "necrotic core (NCR)",
    int(TumorLabel.ED): "oedema (ED)",
    int(TumorLabel.ET): "enhancing tumour (ET)",
    WHOLE_TUMOUR: "tumour, sub-regions not measured (no T1 post-contrast)",
}
TUMOUR_LABELS = (int(TumorLabel.NCR), int(TumorLabel.ED), int(TumorLabel.ET))


def legend(values: Iterable[int]) -> list[dict[str, str]]:
    """Legend entries (name, CSS hex colour) for displayed label values, in value order."""
    return [
        {"name": LABEL_NAMES[v], "colour": "#{:02x}{:02x}{:02x}".format(*LABEL_COLOURS[v])}
        for v in sorted(set(values))
    ]


# A perceptually uniform heat scale (viridis anchors), readable without red-green vision.
_HEAT_ANCHORS = np.array(
    [
        [68, 1, 84],
        [59, 82, 139],
        [33, 145, 140],
        [94, 201, 98],
        [253, 231, 37],
    ],
    dtype=np.float64,
)
HEAT_FLOOR = 0.05  # probabilities below this are left transparent
MARGIN_VOXELS = 4


class Plane(StrEnum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


def _heat_table() -> np.ndarray:
    positions = np.linspace(0, 1, len(_HEAT_ANCHORS))
    grid = np.linspace(0, 1, 256)
    return np.stack(
        [np.interp(grid, positions, _HEAT_ANCHORS[:, c]) for c in range(3)], axis=1
    ).astype(np.uint8)


HEAT_TABLE = _heat_table()


@dataclass
class DisplayVolumes:
    """uint8 volumes [z, y, x] on one grid: greys 0-255, labels as BraTS values, tumour
    probability 0-255; ``meta`` holds the grid, windows and key slices."""

    layers: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        first = next(iter(self.layers.values()))
        z, y, x = first.shape
        return (int(z), int(y), int(x))


def resample_onto(
    image: sitk.Image,
    reference: sitk.Image,
    transform: sitk.Transform | None = None,
    *,
    labels: bool = False,
) -> sitk.Image:
    """``image`` on ``reference``'s grid; ``transform`` maps reference points to image points.
    An image already on that grid, with no transform, is taken as it is (interpolating at its
    own voxels returns them), with the grid's geometry to the last bit."""
    if transform is None and same_grid(image, reference, tolerance=1e-6):
        on_grid = sitk.Image(image)
        on_grid.CopyInformation(reference)
        return on_grid
    return sitk.Resample(
        image,
        reference,
        transform or sitk.Transform(),
        sitk.sitkNearestNeighbor if labels else sitk.sitkLinear,
        0,
        image.GetPixelID(),
    )


def window(values: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """0.5-99.5th percentile window (inside ``mask`` where given) to 0-255."""
    inside = values[mask] if mask is not None and mask.any() else values[np.isfinite(values)]
    if inside.size == 0:
        return np.zeros(values.shape, np.uint8), [0.0, 1.0]
    low, high = np.percentile(inside, [0.5, 99.5])
    if high <= low:
        high = low + 1.0
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0
    return np.nan_to_num(scaled).astype(np.uint8), [float(low), float(high)]


def tumour_probability(probabilities: sitk.Image) -> sitk.Image:
    """1 - P(background) of a class-probability vector image (component 0 is background)."""
    background = sitk.VectorIndexSelectionCast(probabilities, 0, sitk.sitkFloat32)
    return sitk.Clamp(1.0 - background, sitk.sitkFloat32, 0.0, 1.0)


def display_labels(supported_regions: Iterable[str] | None) -> dict[int, int]:
    """What each stored tumour label is shown as, given the regions the visit's sequences
    support (``inference.segmentation.segment.sequence_support``): a label only a missing sequence
    could tell apart is never shown as if measured. Without T1 post-contrast (FLAIR only) every
    tumour label is one whole-tumour colour; without FLAIR, oedema is not shown; 0 hides."""
    if supported_regions is None:
        return {value: value for value in TUMOUR_LABELS}
    supported = {Region(r) for r in supported_regions}
    if not supported & {Region.TC, Region.ET}:
        shown = WHOLE_TUMOUR if Region.WT in supported else 0
        return dict.fromkeys(TUMOUR_LABELS, shown)
    mapping = {}
    for value in TUMOUR_LABELS:
        regions = [r for r in Region if value in {int(v) for v in REGION_LABELS[r]}]
        # The smallest region holding the label decides (ET for ET, TC for NCR, WT for ED).
        smallest = min(regions, key=lambda r: len(REGION_LABELS[r]))
        mapping[value] = value if smallest in supported else 0
    return mapping


def apply_display_labels(labels: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """``labels`` with each value replaced as ``mapping`` says (values not in it unchanged)."""
    table = np.arange(256, dtype=np.uint8)
    for value, shown in mapping.items():
        table[value] = shown
    out: np.ndarray = table[labels.astype(np.uint8)]
    return out


def key_slices(labels: np.ndarray) -> dict[str, int]:
    """Slices through the tumour's centre (of the enhancing part where there is one), else the
    middle of the volume."""
    enhancing = labels == int(TumorLabel.ET)
    tumour = enhancing if enhancing.any() else labels > 0
    if tumour.any():
        z, y, x = (round(float(c)) for c in np.argwhere(tumour).mean(axis=0))
    else:
        z, y, x = (s // 2 for s in labels.shape)
    return {Plane.AXIAL.value: z, Plane.CORONAL.value: y, Plane.SAGITTAL.value: x}


def display_volumes(
    images: Mapping[Any, sitk.Image],
    brain_mask: sitk.Image,
    labels: sitk.Image,
    probabilities: sitk.Image | None = None,
    *,
    supported_regions: Iterable[str] | None = None,
    lesions: Iterable[Mapping[str, Any]] = (),
) -> DisplayVolumes:
    """Window the prepared sequences and bring labels and tumour probability onto their grid,
    cropped to the brain (plus a margin). ``images`` maps sequences (``.value`` t1, t1c, t2,
    flair) to prepared images on ``brain_mask``'s grid. Labels are shown as the visit's
    ``supported_regions`` allow (``display_labels``). ``lesions`` are the measurement's
    (``Measurements.as_dict()["lesions"]``): the target ones are placed on the display grid
    with their RANO diameters, and the views open on the largest one's measured slice."""
    mapping = display_labels(supported_regions)
    mask = sitk.GetArrayFromImage(brain_mask) > 0
    box = bounding_box(mask, MARGIN_VOXELS)
    layers: dict[str, np.ndarray] = {}
    windows: dict[str, list[float]] = {}
    for sequence, image in images.items():
        name = getattr(sequence, "value", str(sequence))
        values = sitk.GetArrayFromImage(resample_onto(image, brain_mask)).astype(np.float32)
        layers[name], windows[name] = window(values[box], mask[box])
    label_values = sitk.GetArrayFromImage(resample_onto(labels, brain_mask, labels=True))
    layers["labels"] = np.ascontiguousarray(apply_display_labels(label_values[box], mapping))
    if probabilities is not None:
        heat = sitk.GetArrayFromImage(resample_onto(tumour_probability(probabilities), brain_mask))
        layers["tumour"] = np.clip(heat[box] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    origin_index = [box[2].start or 0, box[1].start or 0, box[0].start or 0]
    meta = {
        "grid": {
            "shape_zyx": list(layers["labels"].shape),
            "spacing_mm": list(brain_mask.GetSpacing()),
            "origin_mm": list(brain_mask.TransformIndexToPhysicalPoint(origin_index)),
            "direction": list(brain_mask.GetDirection()),
        },
        "windows": windows,
        "key_slices": key_slices(layers["labels"]),
        "labels_shown": sorted({v for v in mapping.values() if v}),
    }
    targets = target_lesions(meta, lesions)
    meta["lesions"] = targets
    if targets:
        meta["key_slices"] = dict(targets[0]["slices"])
    return DisplayVolumes(layers, meta)


def target_lesions(
    meta: Mapping[str, Any], lesions: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The target lesions on the display grid, largest product first: the slices through the
    middle of the longest diameter (on its measured axial slice) and both diameters' ends as
    continuous (z, y, x) display indices, to draw them."""
    grid = reference_grid(meta)
    z_count, y_count, x_count = meta["grid"]["shape_zyx"]
    out = []
    for lesion in sorted(lesions, key=lambda x: -float(x.get("product_mm2") or 0)):
        ends = lesion.get("longest_endpoints_mm") or []
        if not lesion.get("target") or len(ends) != 2:
            continue

        def zyx(point: Any) -> list[float]:
            x, y, z = grid.TransformPhysicalPointToContinuousIndex([float(v) for v in point])
            return [round(z, 2), round(y, 2), round(x, 2)]

        longest = [zyx(p) for p in ends]
        middle = [(a + b) / 2 for a, b in zip(*longest, strict=True)]
        limits = (z_count, y_count, x_count)
        z, y, x = (min(max(round(v), 0), n - 1) for v, n in zip(middle, limits, strict=True))
        perpendicular = lesion.get("perpendicular_endpoints_mm") or []
        out.append(
            {
                "number": lesion.get("id"),
                "longest_mm": lesion.get("longest_mm"),
                "perpendicular_mm": lesion.get("perpendicular_mm"),
                "product_mm2": lesion.get("product_mm2"),
                "slices": {Plane.AXIAL.value: z, Plane.CORONAL.value: y, Plane.SAGITTAL.value: x},
                "longest_zyx": longest,
                "perpendicular_zyx": [zyx(p) for p in perpendicular]
                if len(perpendicular) == 2
                else [],
            }
        )
    return out


def reference_grid(meta: Mapping[str, Any]) -> sitk.Image:
    """An empty image on a display grid (to resample another visit onto it)."""
    grid = meta["grid"]
    z, y, x = grid["shape_zyx"]
    image = sitk.Image([int(x), int(y), int(z)], sitk.sitkUInt8)
    image.SetSpacing(grid["spacing_mm"])
    image.SetOrigin(grid["origin_mm"])
    image.SetDirection(grid["direction"])
    return image


def prior_layers(
    meta: Mapping[str, Any],
    prior_image: sitk.Image,
    prior_mask: sitk.Image,
    prior_labels: sitk.Image,
    prior_to_this: sitk.Transform,
    *,
    supported_regions: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """The prior visit's T1c (or the image given) and labels on this visit's display grid, as
    layers ``prior-t1c`` and ``prior-labels``. ``prior_to_this`` maps the
    prior's physical space onto this visit's (the stored registration), so resampling uses its
    inverse (this grid's points -> the prior's). Labels as the prior's own
    ``supported_regions`` allow."""
    grid = reference_grid(meta)
    inverse = prior_to_this.GetInverse()
    values = sitk.GetArrayFromImage(resample_onto(prior_image, grid, inverse)).astype(np.float32)
    inside = sitk.GetArrayFromImage(resample_onto(prior_mask, grid, inverse, labels=True)) > 0
    grey, _ = window(values, inside)
    labels = sitk.GetArrayFromImage(resample_onto(prior_labels, grid, inverse, labels=True))
    shown = apply_display_labels(labels, display_labels(supported_regions))
    return {"prior-t1c": grey, "prior-labels": shown}


def registered_axial_slice(
    meta: Mapping[str, Any],
    index: int,
    *,
    image: sitk.Image,
    mask: sitk.Image,
    labels: sitk.Image,
    to_this: sitk.Transform,
    supported_regions: Iterable[str] | None = None,
    opacity: float = 0.5,
) -> np.ndarray:
    """Another visit's grey image (windowed inside its brain on this slice) with its
    segmentation blended in, on axial slice ``index`` of this display grid: the same place in
    the patient at that visit. ``to_this`` maps the other visit's physical space onto this
    one's (a stored registration, or a chain of them). Only the one slice is resampled."""
    z_count, y_count, x_count = meta["grid"]["shape_zyx"]
    if not 0 <= index < z_count:
        raise InputError(f"axial slice {index} is outside 0-{z_count - 1}")
    corner = reference_grid(meta).TransformIndexToPhysicalPoint([0, 0, int(index)])
    one = {"grid": dict(meta["grid"], shape_zyx=[1, y_count, x_count], origin_mm=list(corner))}
    layers = prior_layers(one, image, mask, labels, to_this, supported_regions=supported_regions)
    base = grey_rgba(cut(layers["prior-t1c"], Plane.AXIAL, 0))
    return composite(base, (labels_rgba(cut(layers["prior-labels"], Plane.AXIAL, 0)), opacity))


# --- storage ---------------------------------------------------------------------------------


def write_display(volumes: DisplayVolumes, folder: Path | str) -> Path:
    """``<layer>.npy`` (uint8, memory-mappable) and ``display.json``, written whole."""
    from inference.imaging.io import output_folder, write_text  # noqa: PLC0415

    with output_folder(folder) as staging:
        for name, array in volumes.layers.items():
            np.save(staging / f"{name}.npy", np.ascontiguousarray(array, dtype=np.uint8))
        write_text(json.dumps(volumes.meta, indent=1) + "\n", staging / "display.json")
    return Path(folder)


def read_meta(folder: Path | str) -> dict[str, Any]:
    path = Path(folder) / "display.json"
    if not path.is_file():
        raise InputError(f"{path.parent.name}: no display images for this run")
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


def read_layer(folder: Path | str, name: str) -> np.ndarray:
    """One layer, memory-mapped (cutting a slice reads only that slice)."""
    path = Path(folder) / f"{name}.npy"
    if not path.is_file():
        raise InputError(f"{name}: no such display layer")
    array: np.ndarray = np.load(path, mmap_mode="r")
    return array


# --- slices and pictures ---------------------------------------------------------------------


def slice_count(shape: tuple[int, ...], plane: Plane | str) -> int:
    z, y, x = shape
    return {Plane.AXIAL: z, Plane.CORONAL: y, Plane.SAGITTAL: x}[Plane(plane)]


def cut(volume: np.ndarray, plane: Plane | str, index: int) -> np.ndarray:
    """A 2-D slice in radiological display orientation (see the module docstring)."""
    plane = Plane(plane)
    count = slice_count(volume.shape, plane)
    if not 0 <= index < count:
        raise InputError(f"{plane.value} slice {index} is outside 0-{count - 1}")
    if plane is Plane.AXIAL:
        piece = volume[index]
    elif plane is Plane.CORONAL:
        piece = volume[::-1, index, :]
    else:
        piece = volume[::-1, :, index]
    return np.ascontiguousarray(piece)


def grey_rgba(piece: np.ndarray) -> np.ndarray:
    rgba = np.empty((*piece.shape, 4), np.uint8)
    rgba[..., 0] = rgba[..., 1] = rgba[..., 2] = piece
    rgba[..., 3] = 255
    return rgba


def labels_rgba(piece: np.ndarray, *, alpha: int = 255) -> np.ndarray:
    """Label colours, transparent where there is no tumour."""
    rgba = np.zeros((*piece.shape, 4), np.uint8)
    for value, colour in LABEL_COLOURS.items():
        where = piece == value
        rgba[where, :3] = colour
        rgba[where, 3] = alpha
    return rgba


def heat_rgba(piece: np.ndarray, *, alpha: int = 255) -> np.ndarray:
    """Tumour probability (0-255) as a heat scale, transparent below ``HEAT_FLOOR``."""
    rgba = np.zeros((*piece.shape, 4), np.uint8)
    rgba[..., :3] = HEAT_TABLE[piece]
    rgba[..., 3] = np.where(piece >= HEAT_FLOOR * 255, alpha, 0).astype(np.uint8)
    return rgba


def composite(base: np.ndarray, *overlays: tuple[np.ndarray, float]) -> np.ndarray:
    """RGBA layers alpha-blended onto an RGBA base, each with an extra opacity."""
    out = base[..., :3].astype(np.float32)
    for layer, opacity in overlays:
        weight = layer[..., 3:4].astype(np.float32) / 255.0 * opacity
        out = out * (1 - weight) + layer[..., :3].astype(np.float32) * weight
    rgba = np.empty(base.shape, np.uint8)
    rgba[..., :3] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    rgba[..., 3] = 255
    return rgba


def png(rgba: np.ndarray, *, scale: int = 1) -> bytes:
    """PNG bytes of an RGBA (or grey) array, enlarged ``scale`` times (nearest)."""
    from PIL import Image  # noqa: PLC0415

    if scale > 1:
        rgba = np.repeat(np.repeat(rgba, scale, axis=0), scale, axis=1)
    mode = "RGBA" if rgba.ndim == 3 else "L"
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), mode=mode).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def layer_png(folder: Path | str, layer: str, plane: Plane | str, index: int) -> bytes:
    """The PNG a viewer asks for: a grey sequence, the label overlay or the heat overlay."""
    volume = read_layer(folder, layer)
    piece = cut(volume, plane, index)
    if layer in {"labels", "prior-labels"}:
        return png(labels_rgba(piece))
    if layer == "tumour":
        return png(heat_rgba(piece))
    return png(grey_rgba(piece))


def key_slice_png(
    folder: Path | str, *, plane: Plane | str = Plane.AXIAL, opacity: float = 0.5, scale: int = 2
) -> bytes:
    """T1c (FLAIR in a visit without it) with the segmentation blended in, on the largest
    target lesion's measured slice with its two RANO diameters drawn (longest yellow,
    perpendicular cyan), else through the tumour's centre (for reports)."""
    meta = read_meta(folder)
    index = int(meta["key_slices"][Plane(plane).value])
    sequence = "t1c" if "t1c" in meta.get("windows", {"t1c": None}) else "flair"
    base = grey_rgba(cut(read_layer(folder, sequence), plane, index))
    labels = labels_rgba(cut(read_layer(folder, "labels"), plane, index))
    picture = composite(base, (labels, opacity))
    lesions = meta.get("lesions") or []
    if Plane(plane) is not Plane.AXIAL or not lesions:
        return png(picture, scale=scale)
    return png(_with_diameters(picture, lesions[0], scale), scale=1)


def _with_diameters(picture: np.ndarray, lesion: Mapping[str, Any], scale: int) -> np.ndarray:
    """The axial picture enlarged ``scale`` times with the lesion's diameters drawn on it (an
    axial cut's rows are y and its columns x, so a (z, y, x) index maps to (x, y) pixels)."""
    from PIL import Image, ImageDraw  # noqa: PLC0415

    big = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
    image = Image.fromarray(np.ascontiguousarray(big), mode="RGBA")
    draw = ImageDraw.Draw(image)
    for ends, colour in (
        (lesion.get("longest_zyx") or [], (255, 221, 0, 255)),
        (lesion.get("perpendicular_zyx") or [], (0, 229, 255, 255)),
    ):
        if len(ends) == 2:
            points = [((x + 0.5) * scale, (y + 0.5) * scale) for _, y, x in ends]
            draw.line(points, fill=colour, width=max(1, scale))
    return np.asarray(image)
