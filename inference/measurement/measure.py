"""Measuring a segmentation: volumes, lesions and RANO bidimensional products.

- Volumes (mL) per label (NCR, ED, ET) and region (TC = NCR + ET, WT = all), and the
  equivalent-sphere diameter of each: d = (6 V / pi)^(1/3).
- Soft (partial-volume) volumes from a probability map: the sum of each class's probability.
- Lesions: connected components of the tumour core (configurable connectivity; components
  smaller than ``min_lesion_ml`` are left out of the lesion list, not out of the volumes). Each
  has a centroid (mm), volume, enhancing volume and the RANO bidimensional measurement. The
  same for the whole T2/FLAIR abnormality (``t2_flair_lesions``: components of the whole
  tumour), on which RANO-LGG and RANO 2.0 measure a non-enhancing tumour or the non-enhancing
  component of a mixed one.
- Bidimensional measurement, computed geometrically on the label map's continuous boundary (the
  0.5 level of its bilinear interpolation, i.e. half-way between an inside and an outside voxel
  centre) rather than by counting voxels: on each axial slice the longest diameter between
  boundary points; the slice where that diameter is largest is the measured slice; there the
  longest chord perpendicular to it. Measurable = both diameters >= 10 mm (RANO 2010 and 2.0).
  Target lesions: up to ``max_targets`` measurable lesions with the largest products; their
  products add up to the sum of products.

Axial means the patient's transverse plane: images are put in LPS order first (voxels permuted,
no resampling), so axial slices are the numpy (z, y, x) array's first axis.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from inference.errors import GeometryMismatchError, InputError
from inference.labels import Region, TumorLabel
from inference.measurement.evaluate import region_mask, same_grid
from inference.response.rano import MEASURABLE_MM  # RANO's 10 mm, defined once, with the engine

CONNECTIVITY = {6: 1, 18: 2, 26: 3}
_CHORD_STEP_MM = 0.1
SMOOTHING_PX = 1.0


class LabelValueError(InputError):
    """A label map holding values that are not tumour labels."""


class ProbabilityMapError(InputError):
    """A probability map that is not one (wrong shape, grid, or sums)."""


@dataclass(frozen=True)
class MeasureSettings:
    connectivity: int = 26
    min_lesion_ml: float = 0.05
    max_targets: int = 3

    def __post_init__(self) -> None:
        if self.connectivity not in CONNECTIVITY:
            raise InputError(f"connectivity must be 6, 18 or 26, not {self.connectivity}")


@dataclass
class Bidimensional:
    longest_mm: float
    perpendicular_mm: float
    slice_index: int  # axial slice (LPS order) where it was measured
    slice_position_mm: float  # its S coordinate
    endpoints_mm: list[list[float]] = field(default_factory=list)  # longest diameter, (x, y, z)
    # the perpendicular chord on the measured slice, (x, y, z); its length before the
    # through-plane correction that ``perpendicular_mm`` carries
    perpendicular_endpoints_mm: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The perpendicular is at most the longest diameter by definition; a chord measured a
        # little longer (sampling, the through-plane refinement) is clamped here, so the product
        # and the stored perpendicular always agree.
        self.perpendicular_mm = min(self.perpendicular_mm, self.longest_mm)

    @property
    def product_mm2(self) -> float:
        return self.longest_mm * self.perpendicular_mm

    @property
    def measurable(self) -> bool:
        return self.longest_mm >= MEASURABLE_MM and self.perpendicular_mm >= MEASURABLE_MM


@dataclass
class Lesion:
    id: int
    centroid_mm: list[float]
    volume_ml: float
    et_volume_ml: float
    ncr_volume_ml: float
    bidimensional: Bidimensional
    target: bool = False

    def as_dict(self) -> dict[str, Any]:
        bd = self.bidimensional
        return {
            "id": self.id,
            "centroid_mm": [round(c, 3) for c in self.centroid_mm],
            "volume_ml": round(self.volume_ml, 4),
            "et_volume_ml": round(self.et_volume_ml, 4),
            "ncr_volume_ml": round(self.ncr_volume_ml, 4),
            "enhancing": self.et_volume_ml > 0,
            "longest_mm": round(bd.longest_mm, 3),
            "perpendicular_mm": round(bd.perpendicular_mm, 3),
            "product_mm2": round(bd.product_mm2, 2),
            "measurable": bd.measurable,
            "target": self.target,
            "slice_index": bd.slice_index,
            "slice_position_mm": round(bd.slice_position_mm, 3),
            "longest_endpoints_mm": [[round(v, 3) for v in p] for p in bd.endpoints_mm],
            "perpendicular_endpoints_mm": [
                [round(v, 3) for v in p] for p in bd.perpendicular_endpoints_mm
            ],
        }


@dataclass
class Measurements:
    volumes_ml: dict[str, float]
    equivalent_diameter_mm: dict[str, float]
    lesions: list[Lesion]
    soft_volumes_ml: dict[str, float] | None
    settings: MeasureSettings
    small_components_left_out: int
    spacing_mm: tuple[float, ...]
    # lesion ids on the (LPS-ordered) grid of the label map: the input of lesion tracking
    lesion_map: sitk.Image | None = None
    t2_flair_lesions: list[Lesion] = field(default_factory=list)
    t2_flair_lesion_map: sitk.Image | None = None

    @property
    def t2_flair_sum_of_products_mm2(self) -> float:
        return sum(x.bidimensional.product_mm2 for x in self.t2_flair_lesions if x.target)

    @property
    def sum_of_products_mm2(self) -> float:
        return sum(lesion.bidimensional.product_mm2 for lesion in self.lesions if lesion.target)

    def as_dict(self) -> dict[str, Any]:
        return {
            "volumes_ml": {k: round(v, 4) for k, v in self.volumes_ml.items()},
            "soft_volumes_ml": None
            if self.soft_volumes_ml is None
            else {k: round(v, 4) for k, v in self.soft_volumes_ml.items()},
            "equivalent_diameter_mm": {
                k: round(v, 3) for k, v in self.equivalent_diameter_mm.items()
            },
            "lesions": [lesion.as_dict() for lesion in self.lesions],
            "lesion_count": len(self.lesions),
            "measurable_count": sum(1 for x in self.lesions if x.bidimensional.measurable),
            "sum_of_products_mm2": round(self.sum_of_products_mm2, 2),
            "t2_flair_lesions": [lesion.as_dict() for lesion in self.t2_flair_lesions],
            "t2_flair_sum_of_products_mm2": round(self.t2_flair_sum_of_products_mm2, 2),
            "small_components_left_out": self.small_components_left_out,
            "spacing_mm": list(self.spacing_mm),
            "settings": asdict(self.settings),
        }


def equivalent_diameter_mm(volume_ml: float) -> float:
    """Diameter of the sphere with this volume.

    >>> round(equivalent_diameter_mm(4 / 3 * math.pi * 10**3 / 1000), 6)
    20.0
    """
    return float((6.0 * volume_ml * 1000.0 / math.pi) ** (1.0 / 3.0))


def check_labels(labels: sitk.Image, name: str = "label map") -> np.ndarray:
    """The label array (z, y, x), after checking it holds tumour labels only."""
    values = sitk.GetArrayFromImage(labels)
    if values.size == 0:
        raise LabelValueError(f"{name}: the label map is empty (no voxels)")
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)):
            raise LabelValueError(f"{name}: the label map holds NaN or infinite values")
        if not np.allclose(values, np.rint(values)):
            raise LabelValueError(f"{name}: the label map holds non-integer values")
        values = np.rint(values)
    found = {int(v) for v in np.unique(values)}
    unexpected = sorted(found - {0, 1, 2, 3, 4})
    if unexpected:
        raise LabelValueError(
            f"{name}: labels {unexpected} are outside 0-4 (0 background, 1 NCR, 2 ED, 3 ET; "
            "BraTS 2021's 4 is read as 3)"
        )
    if 4 in found and 3 in found:
        raise LabelValueError(
            f"{name}: holds both 3 and 4; for BraTS 2015 labels read the file with "
            "inference.imaging.io.read_label_map, which maps them"
        )
    out: np.ndarray = values.astype(np.uint8)
    out[out == 4] = TumorLabel.ET
    return out


def soft_volumes(
    probabilities: sitk.Image, labels: sitk.Image, *, tolerance: float = 1e-2
) -> dict[str, float]:
    """Partial-volume volumes (mL) from a 4-class probability map on the label map's grid."""
    if probabilities.GetDimension() == 4:
        size = probabilities.GetSize()
        channels = [
            sitk.Extract(probabilities, [*size[:3], 0], [0, 0, 0, c]) for c in range(size[3])
        ]
        probabilities = sitk.Compose(channels)
    if probabilities.GetNumberOfComponentsPerPixel() != len(TumorLabel):
        raise ProbabilityMapError(
            f"probability map has {probabilities.GetNumberOfComponentsPerPixel()} channels; "
            f"{len(TumorLabel)} expected (background, NCR, ED, ET)"
        )
    if not same_grid(probabilities, labels):
        raise GeometryMismatchError(
            "probability map and label map are not on the same grid "
            f"(size {probabilities.GetSize()} vs {labels.GetSize()})"
        )
    # Checked and summed as stored (float32), accumulated in float64: a float64 copy of a
    # four-channel map costs a second and a quarter of a gigabyte.
    values = sitk.GetArrayViewFromImage(probabilities)  # (z, y, x, c)
    if not np.all(np.isfinite(values)) or values.min() < -tolerance or values.max() > 1 + tolerance:
        raise ProbabilityMapError("probability map holds values outside 0-1 (or NaN)")
    sums = values.sum(axis=-1, dtype=np.float64)
    off = np.abs(sums - 1.0) > tolerance
    if off.any():
        raise ProbabilityMapError(
            f"probabilities do not sum to 1 in {int(off.sum()):,} voxels (worst sum "
            f"{float(sums.flat[np.argmax(np.abs(sums - 1.0))]):.3f})"
        )
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    per_label = {
        label.name: float(values[..., label].sum(dtype=np.float64)) * voxel_ml
        for label in TumorLabel
    }
    return {
        "NCR": per_label["NCR"],
        "ED": per_label["ED"],
        "ET": per_label["ET"],
        "TC": per_label["NCR"] + per_label["ET"],
        "WT": per_label["NCR"] + per_label["ED"] + per_label["ET"],
    }


def _boundary_points(field: np.ndarray) -> np.ndarray:
    """Points (row, col) where ``field`` crosses 0.5 between 4-neighbour pixel centres (linear)."""
    padded = np.pad(field, 1)
    points = []
    for axis in (0, 1):
        a = padded
        b = np.roll(padded, -1, axis=axis)
        rows, cols = np.nonzero((a - 0.5) * (b - 0.5) < 0)
        fa, fb = a[rows, cols], b[rows, cols]
        fraction = (0.5 - fa) / (fb - fa)
        step = (fraction, 0.0) if axis == 0 else (0.0, fraction)
        points.append(np.stack([rows - 1 + step[0], cols - 1 + step[1]], axis=1))
    return np.concatenate(points).astype(float)


def _boundary_field(plane: np.ndarray, sigma_px: float) -> np.ndarray:
    """The mask slightly smoothed: its 0.5 level is a smooth boundary through the voxel edges
    (sigma 1 voxel cuts the product error on ellipses from 2.3 % to 0.2 %; tests check it).
    A cross-section of a voxel or two, which smoothing would erase, keeps its raw edges."""
    field: np.ndarray = ndimage.gaussian_filter(plane.astype(np.float32), sigma_px)
    if field.max() < 0.5:
        return plane.astype(np.float32)
    return field


def _longest_diameter(points_mm: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Largest distance between two points (via the convex hull), and the two points."""
    if len(points_mm) >= 4:
        with contextlib.suppress(QhullError):  # collinear points: use them all
            points_mm = points_mm[ConvexHull(points_mm).vertices]
    distances = np.linalg.norm(points_mm[:, None, :] - points_mm[None, :, :], axis=-1)
    i, j = np.unravel_index(np.argmax(distances), distances.shape)
    return float(distances[i, j]), points_mm[i], points_mm[j]


def _perpendicular_chord(
    plane: np.ndarray, spacing_rc: tuple[float, float], start: np.ndarray, end: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Longest chord of the region perpendicular to the segment start -> end (mm), and its two
    ends (row, column in mm).

    Lines perpendicular to the longest diameter are sampled every 0.1 mm along it; on each, the
    region is where the bilinear interpolation of the mask is >= 0.5, and the chord is the span
    from its first to its last crossing (crossings refined linearly).
    """
    axis = (end - start) / np.linalg.norm(end - start)
    normal = np.array([-axis[1], axis[0]])
    length = float(np.linalg.norm(end - start))
    reach = length  # no chord is longer than the longest diameter
    along = np.arange(0.0, length + _CHORD_STEP_MM, _CHORD_STEP_MM)
    across = np.arange(-reach, reach + _CHORD_STEP_MM, _CHORD_STEP_MM)
    points = (
        start[None, None, :]
        + along[:, None, None] * axis[None, None, :]
        + across[None, :, None] * normal[None, None, :]
    )  # (along, across, 2) in mm (row, col)
    coordinates = [points[..., 0] / spacing_rc[0], points[..., 1] / spacing_rc[1]]
    field = ndimage.map_coordinates(plane, coordinates, order=1, cval=0.0)
    inside = field >= 0.5
    best, ends = 0.0, (start, start)
    for position, row, flags in zip(along, field, inside, strict=True):
        hits = np.nonzero(flags)[0]
        if hits.size == 0:
            continue
        first, last = hits[0], hits[-1]
        low = _crossing(across, row, first - 1, first)
        high = _crossing(across, row, last, last + 1)
        if high - low > best:
            centre = start + position * axis
            best, ends = high - low, (centre + low * normal, centre + high * normal)
    return best, ends[0], ends[1]


def _crossing(positions: np.ndarray, values: np.ndarray, i: int, j: int) -> float:
    """Where the linear interpolation between samples i and j crosses 0.5."""
    if i < 0:
        return float(positions[j])
    if j >= len(values):
        return float(positions[i])
    vi, vj = float(values[i]), float(values[j])
    if vi == vj:
        return float((positions[i] + positions[j]) / 2)
    fraction = (0.5 - vi) / (vj - vi)
    return float(positions[i] + fraction * (positions[j] - positions[i]))


def bidimensional(mask: np.ndarray, image: sitk.Image) -> Bidimensional:
    """RANO bidimensional measurement of one lesion (``mask`` in LPS (z, y, x) order).

    The slice with the longest diameter is the measured one; its diameters are then brought to
    the lesion's largest cross-section between slices (``_through_plane_scale``), so that thick
    or thin slices give the same size of the same lesion."""
    spacing_x, spacing_y, spacing_z = image.GetSpacing()
    spacing_rc = (spacing_y, spacing_x)  # rows are y, columns are x
    lengths: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}
    for index in np.nonzero(mask.any(axis=(1, 2)))[0]:
        field = _boundary_field(mask[index], SMOOTHING_PX)
        points = _boundary_points(field) * np.array(spacing_rc)
        lengths[int(index)] = _longest_diameter(points)
    z = max(lengths, key=lambda k: (lengths[k][0], -k))
    length, a, b = lengths[z]
    perpendicular, c, d = _perpendicular_chord(
        _boundary_field(mask[z], SMOOTHING_PX), spacing_rc, a, b
    )
    scale = _through_plane_scale({k: v[0] for k, v in lengths.items()}, z, spacing_z)

    def physical(point: np.ndarray) -> list[float]:
        index = [point[1] / spacing_x, point[0] / spacing_y, z]
        return list(image.TransformContinuousIndexToPhysicalPoint(index))

    position = image.TransformContinuousIndexToPhysicalPoint([0.0, 0.0, float(z)])[2]
    return Bidimensional(
        length * scale,
        perpendicular * scale,
        z,
        float(position),
        [physical(a), physical(b)],
        [physical(c), physical(d)],
    )


def _through_plane_scale(lengths: dict[int, float], best: int, spacing_z: float) -> float:
    """How much larger the lesion's largest axial cross-section is than the measured slice's.

    The cross-sections of an ellipsoid by parallel planes are similar ellipses whose squared
    size is a parabola in z, peaking between slices unless the equator falls on one; on slices
    5 mm apart the slice nearest the equator is on average 3 % smaller in product (up to 10 %
    for a small lesion). A parabola fitted to the squared longest diameter of the slices round
    the measured one (2 either side on thin slices, 1 on slices over 2 mm) gives the peak; the
    measured diameters are scaled up to it (never down: a diameter is never reported shorter
    than the one drawn on the measured slice). No correction (1.0) without a slice on both
    sides (a lesion on one or two thick slices keeps the sampling loss: about -2.5 % in product
    under 18 mm on 5 mm slices) or when the profile is not a peak; the peak is looked for
    within half a slice of the measured one.
    """
    reach = 1 if spacing_z > 2.0 else 2
    window = [k for k in range(best - reach, best + reach + 1) if lengths.get(k, 0.0) > 0]
    if best - 1 not in window or best + 1 not in window:
        return 1.0
    z = np.array([(k - best) * spacing_z for k in window])
    y = np.array([lengths[k] ** 2 for k in window])
    curvature, slope, height = np.polyfit(z, y, 2)
    if curvature >= 0:
        return 1.0
    peak_z = float(np.clip(-slope / (2 * curvature), -spacing_z / 2, spacing_z / 2))
    peak = curvature * peak_z**2 + slope * peak_z + height
    return float(np.sqrt(max(peak, lengths[best] ** 2)) / lengths[best])


def measure(
    labels: sitk.Image,
    *,
    probabilities: sitk.Image | None = None,
    settings: MeasureSettings | None = None,
) -> Measurements:
    """Volumes, lesions and bidimensional products of a label map (internal BraTS 2023 labels).

    An all-background map is a valid measurement (no tumour labelled: a complete response), not
    an error.
    """
    settings = settings or MeasureSettings()
    check_labels(labels)
    soft = soft_volumes(probabilities, labels) if probabilities is not None else None
    labels = sitk.DICOMOrient(labels, "LPS")
    values = check_labels(labels)
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    volumes = {
        "NCR": float((values == TumorLabel.NCR).sum()) * voxel_ml,
        "ED": float((values == TumorLabel.ED).sum()) * voxel_ml,
        "ET": float((values == TumorLabel.ET).sum()) * voxel_ml,
        "TC": float(region_mask(values, Region.TC).sum()) * voxel_ml,
        "WT": float(region_mask(values, Region.WT).sum()) * voxel_ml,
    }
    diameters = {name: equivalent_diameter_mm(v) for name, v in volumes.items()}
    lesions, lesion_map, left_out = _lesions(values, Region.TC, labels, settings)
    t2_lesions, t2_map, _ = _lesions(values, Region.WT, labels, settings)
    return Measurements(
        volumes_ml=volumes,
        equivalent_diameter_mm=diameters,
        lesions=lesions,
        soft_volumes_ml=soft,
        settings=settings,
        small_components_left_out=left_out,
        spacing_mm=tuple(labels.GetSpacing()),
        lesion_map=lesion_map,
        t2_flair_lesions=t2_lesions,
        t2_flair_lesion_map=t2_map,
    )


def _lesions(
    values: np.ndarray, region: Region, labels: sitk.Image, settings: MeasureSettings
) -> tuple[list[Lesion], sitk.Image, int]:
    """The region's connected components as lesions, largest first and numbered 1.., their map,
    and how many were too small to list; targets are the measurable ones with the largest
    products, up to ``max_targets``."""
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    structure = ndimage.generate_binary_structure(3, CONNECTIVITY[settings.connectivity])
    components, _ = ndimage.label(region_mask(values, region), structure=structure)
    lesions = []
    left_out = 0
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        lesion_mask = components[box] == index
        volume = float(lesion_mask.sum()) * voxel_ml
        if volume < settings.min_lesion_ml:
            left_out += 1
            continue
        full = np.zeros(values.shape, dtype=bool)
        full[box] = lesion_mask
        centre = ndimage.center_of_mass(full)
        centroid = labels.TransformContinuousIndexToPhysicalPoint(
            [float(centre[2]), float(centre[1]), float(centre[0])]
        )
        lesions.append(
            Lesion(
                id=index,
                centroid_mm=list(centroid),
                volume_ml=volume,
                et_volume_ml=float((values[full] == TumorLabel.ET).sum()) * voxel_ml,
                ncr_volume_ml=float((values[full] == TumorLabel.NCR).sum()) * voxel_ml,
                bidimensional=bidimensional(full, labels),
            )
        )
    lesions.sort(key=lambda x: x.volume_ml, reverse=True)
    renumbered = np.zeros(values.shape, dtype=np.uint16)
    for number, lesion in enumerate(lesions, start=1):
        renumbered[components == lesion.id] = number
        lesion.id = number
    measurable = [x for x in lesions if x.bidimensional.measurable]
    measurable.sort(key=lambda x: x.bidimensional.product_mm2, reverse=True)
    for lesion in measurable[: settings.max_targets]:
        lesion.target = True
    return lesions, _image_like(renumbered, labels), left_out


def _image_like(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(like)
    return image
