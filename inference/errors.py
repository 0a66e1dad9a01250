"""Typed errors for bad input.

Each carries a one-line message meant for the person who supplied the file; the command line
prints that message and exits 2, the service returns it in a 400 response. Anything that is not an
``InputError`` is a bug in this code, not in the input.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Input the pipeline cannot use. ``message`` names the problem and the file."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else Path(path)

    def __str__(self) -> str:
        return self.message


class UnreadableFileError(InputError):
    """The file is missing, not an image, corrupt, or may not be read."""


class TruncatedFileError(UnreadableFileError):
    """The file ends before its data does (an interrupted copy or upload)."""


class FileTooLargeError(InputError):
    """The file or image is larger than the configured limit."""


class NotThreeDimensionalError(InputError):
    """A 2-D image, a 4-D series with several volumes, or a multi-component image."""


class NonFiniteVoxelsError(InputError):
    """NaN or infinite voxel values."""


class ConstantImageError(InputError):
    """Every voxel has the same value: nothing to see."""


class SpacingOutOfRangeError(InputError):
    """Voxel spacing outside what an MRI of a head can have."""


class MissingSequenceError(InputError):
    """A sequence the step needs is not in the visit."""


class DuplicateSequenceError(InputError):
    """Two files claim to be the same sequence."""


class FieldOfViewMismatchError(InputError):
    """The sequences of one visit do not cover the same part of space."""


class GeometryMismatchError(InputError):
    """A label map does not share its image's grid."""


class VisitInputError(InputError):
    """Several files of one visit are unusable; ``problems`` holds one error per file."""

    def __init__(self, problems: list[InputError]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems
