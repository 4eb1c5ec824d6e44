"""The colour rule: which YUV matrix, range and chroma siting a frame means, in one place.

Every reader of YUV (the filter's CPU and CUDA paths, training's video reader, the
benchmark) asks here:

- ``MATRICES``: the supported matrices, by ``_Matrix`` number, with their names for
  ``matrix=`` and their (Kr, Kb) luma coefficients;
- ``default_matrix``: an unspecified matrix means BT.709 at 1280×720 and above
  (either side), BT.601 below;
- ``frame_colour``: matrix, range and siting of a frame from its props (``_Matrix``,
  ``_Range``, ``_ChromaLocation``), an override and the defaults: limited range, left
  siting; sitings other than left and centre count as left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import vapoursynth as vs

core = vs.core


@dataclass(frozen=True)
class Matrix:
    number: int  # the _Matrix value
    names: tuple[str, ...]  # what ``matrix=`` accepts besides the number
    kr: float
    kb: float


MATRICES: dict[int, Matrix] = {m.number: m for m in (
    Matrix(1, ("709",), 0.2126, 0.0722),
    Matrix(6, ("601", "170m"), 0.299, 0.114),
    Matrix(5, ("470bg",), 0.299, 0.114),
    Matrix(9, ("2020ncl",), 0.2627, 0.0593),
    Matrix(4, ("fcc",), 0.30, 0.11),
    Matrix(7, ("240m",), 0.212, 0.087),
)}
MATRIX_NAMES: dict[str, int] = {name: m.number for m in MATRICES.values() for name in m.names}


def matrix_number(value: object) -> int:
    """A ``matrix=`` value (a name of ``MATRIX_NAMES`` or a ``_Matrix`` number) → its number; ValueError else."""
    if isinstance(value, str) and value in MATRIX_NAMES:
        return MATRIX_NAMES[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in MATRICES:
        return value
    raise ValueError(f"'matrix' must be one of {', '.join(MATRIX_NAMES)} (or its _Matrix number), got {value!r}")


def default_matrix(width: int, height: int) -> int:
    """The ``_Matrix`` an unspecified matrix means at this frame size: 709 from 1280×720 up, else 601."""
    return 1 if width >= 1280 or height >= 720 else 6


@dataclass(frozen=True)
class Colour:
    """How a YUV frame's samples map to RGB."""

    matrix: int  # a key of MATRICES
    full_range: bool
    chromaloc: int  # 0 = left, 1 = centre (horizontal siting)

    @property
    def range_prop(self) -> int:
        """The ``_Range`` value."""
        return int(vs.RANGE_FULL if self.full_range else vs.RANGE_LIMITED)


def frame_colour(props: Mapping[str, object], width: int, height: int, matrix: int | None = None) -> Colour:
    """The colour of a ``width`` × ``height`` YUV frame with ``props``; ``matrix`` overrides ``_Matrix``."""
    number = matrix or int(props.get("_Matrix", 2))
    if number not in MATRICES:
        number = default_matrix(width, height)
    full = int(props.get("_Range", int(vs.RANGE_LIMITED))) == int(vs.RANGE_FULL)
    loc = int(props.get("_ChromaLocation", 0))
    return Colour(number, full, loc if loc in (0, 1) else 0)


def clip_colour(clip: vs.VideoNode, matrix: int | None = None) -> Colour:
    """The colour of a clip as its frame 0 says (the defaults for RGB, or if frame 0 cannot be read)."""
    props: Mapping[str, object] = {}
    if clip.format.color_family == vs.YUV:
        try:
            props = clip.get_frame(0).props
        except vs.Error:
            pass
    return frame_colour(props, clip.width, clip.height, matrix)


def to_rgbs(clip: vs.VideoNode, matrix: int | None = None) -> vs.VideoNode:
    """Planar float RGB through zimg: RGB as it is, YUV with bilinear chroma and the rule above."""
    if clip.format.color_family == vs.RGB:
        return core.resize.Point(clip, format=vs.RGBS)
    if matrix is not None:
        clip = core.std.SetFrameProps(clip, _Matrix=matrix)
    return core.resize.Bilinear(clip, format=vs.RGBS, matrix_in=default_matrix(clip.width, clip.height))


def from_rgbs(rgb: vs.VideoNode, fmt: vs.VideoFormat, colour: Colour | None) -> vs.VideoNode:
    """RGBS → ``fmt`` through zimg, rounding and clamping integers; YUV gets ``colour`` (needed for YUV)."""
    if fmt.id == vs.RGBS:
        return rgb
    if fmt.color_family == vs.RGB:
        return core.resize.Point(rgb, format=fmt.id)
    assert colour is not None, "YUV output needs its colour"
    return core.resize.Bilinear(rgb, format=fmt.id, matrix=colour.matrix, chromaloc=colour.chromaloc,
                                range=colour.range_prop)
