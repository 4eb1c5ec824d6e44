"""What a clip's frame props say about its picture, as the options that make ffmpeg write it into a file.

y4m (what VapourSynth pipes into ffmpeg) carries size, depth and frame rate only: no sample aspect
ratio, colour description or chroma siting. ``VideoTags`` reads them from frame props and gives
ffmpeg the filter that labels the frames (``setsar``, ``setparams``: labels only, no conversion) and
the encoder's range, so the encoder and the container write them (for a stream copy, the
container's description alone). An unspecified value stays unspecified: the source's silence is
kept, not replaced by a guess.

Prop numbers are ITU-T H.273's, as are ffmpeg's, except chroma siting (VapourSynth counts from 0 =
left, ffmpeg from 1 = left) and range (VapourSynth 0 = limited, 1 = full).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from fractions import Fraction

import vapoursynth as vs

UNSPECIFIED = 2  # H.273's "unspecified" matrix, primaries and transfer
CHROMA_SITINGS = ("left", "center", "topleft", "top", "bottomleft", "bottom")  # by _ChromaLocation


@dataclass(frozen=True)
class VideoTags:
    """A picture's description; ``None``: unspecified."""

    sar: Fraction | None = None  # sample (pixel) aspect ratio
    matrix: int | None = None  # H.273 matrix coefficients
    primaries: int | None = None
    transfer: int | None = None
    full_range: bool | None = None
    chroma_location: int | None = None  # _ChromaLocation: 0 left, 1 centre, 2 top left, ...

    @classmethod
    def from_props(cls, props: Mapping[str, object], color_family: vs.ColorFamily) -> VideoTags:
        """The tags of a frame with ``props`` (RGB has no matrix and no chroma siting)."""

        def coded(key: str) -> int | None:
            value = props.get(key)
            return None if value is None or int(value) == UNSPECIFIED else int(value)

        num, den = int(props.get("_SARNum", 0)), int(props.get("_SARDen", 0))
        yuv = color_family == vs.YUV
        rng = props.get("_Range")
        loc = props.get("_ChromaLocation")
        return cls(sar=Fraction(num, den) if num > 0 and den > 0 else None,
                   matrix=coded("_Matrix") if yuv else None, primaries=coded("_Primaries"),
                   transfer=coded("_Transfer"), full_range=None if rng is None else int(rng) == int(vs.RANGE_FULL),
                   chroma_location=int(loc) if yuv and loc is not None and 0 <= int(loc) < 6 else None)

    @classmethod
    def of(cls, clip: vs.VideoNode) -> VideoTags:
        """The tags frame 0 of ``clip`` carries."""
        return cls.from_props(clip.get_frame(0).props, clip.format.color_family)

    def converted(self, matrix: int, full_range: bool, subsampled: bool) -> VideoTags:
        """These tags after a conversion to YUV with ``matrix`` and range (siting only if ``subsampled``)."""
        return replace(self, matrix=matrix, full_range=full_range,
                       chroma_location=self.chroma_location if subsampled else None)

    def _description(self) -> list[tuple[str, str, object]]:
        """(``setparams`` option, output option, value) of each specified field but the aspect ratio."""
        fields = [("range", "-color_range", None if self.full_range is None else "pc" if self.full_range else "tv"),
                  ("color_primaries", "-color_primaries", self.primaries),
                  ("color_trc", "-color_trc", self.transfer), ("colorspace", "-colorspace", self.matrix),
                  ("chroma_location", "-chroma_sample_location",
                   None if self.chroma_location is None else CHROMA_SITINGS[self.chroma_location])]
        return [f for f in fields if f[2] is not None]

    def ffmpeg_filter(self) -> str | None:
        """A filter chain that labels frames with these tags (without touching a sample), or None."""
        chain = []
        if self.sar:
            n, d = self.sar.numerator, self.sar.denominator
            chain.append(f"setsar=sar={n}/{d}:max={max(n, d)}")  # max: exact, not ffmpeg's nearest within 100
        if labels := self._description():
            chain.append("setparams=" + ":".join(f"{key}={value}" for key, _, value in labels))
        return ",".join(chain) or None

    def ffmpeg_output_args(self) -> list[str]:
        """Encoder options: the range (without it, encoders that prefer limited range get converted frames)."""
        return [a for _, option, value in self._description() if option == "-color_range" for a in (option, value)]

    def ffmpeg_copy_args(self) -> list[str]:
        """Output options that describe a stream-copied video in the container (the pixel aspect ratio
        travels with the stream)."""
        return [a for _, option, value in self._description() for a in (option, str(value))]
