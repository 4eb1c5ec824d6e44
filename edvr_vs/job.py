"""What ``edvr-vs run`` computes, in one place, for one process and for a cluster's workers alike.

A ``Job`` names the source (a video file, or a ``.vpy`` script and its output node), the frame
range, the filter's options, the scene-cut rule and the encoder. ``Job.restored(device)`` builds the
same VapourSynth graph wherever it is called (source → scene cuts marked → ``edvr()``), so frames
``[a, b)`` of it equal frames ``[a, b)`` of a whole run.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import vapoursynth as vs

from edvr_vs.files import sha256_of
from edvr_vs.media import open_source
from edvr_vs.nn.edvr import EDVRConfig
from edvr_vs.passthrough import Passthrough, plan as plan_passthrough
from edvr_vs.scenes import DEFAULT_THRESHOLD, check_threshold, mark_cuts
from edvr_vs.script import is_script, load_script
from edvr_vs.timestamps import DamagedSource, FrameTimes, read_frame_times


class JobError(Exception):
    """A job that cannot run as asked; the message names the option and the value."""


def parse_frames(spec: str | None, length: int) -> tuple[int, int]:
    """``A:B`` (Python slice, either side optional) → (start, stop) within ``length``."""
    if spec is None:
        return 0, length
    try:
        a, b = spec.split(":")
        start = int(a) if a else 0
        stop = int(b) if b else length
    except ValueError:
        raise JobError(f"--frames must be A:B (e.g. 0:100 or 50:), got {spec!r}") from None
    start, stop, _ = slice(start, stop).indices(length)
    if stop <= start:
        raise JobError(f"--frames {spec} selects no frames of the {length}-frame input")
    return start, stop


@dataclass(frozen=True)
class Job:
    """``edvr-vs run``'s options that decide the output's frames and encoding."""

    input: str
    node: int = 0  # the output of a .vpy script
    frames: str | None = None
    model: str | None = None
    weights: str | None = None
    precision: str | None = None
    tile: tuple[int, int] | None = None
    speed: dict[str, object] = field(default_factory=dict)
    scene_threshold: float | None = DEFAULT_THRESHOLD
    encoder: str = "x265"
    encoder_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            check_threshold(self.scene_threshold)
        except ValueError as e:
            raise JobError(f"--scene-threshold: {e}") from None
        if self.node and not is_script(self.input):
            raise JobError(f"--node {self.node} applies to .vpy scripts only, and {self.input!r} is not one")

    def source(self) -> tuple[vs.VideoNode, int]:
        """The selected frames of the input and the index of the first one in the file (or script output)."""
        clip = load_script(self.input, self.node) if is_script(self.input) else open_source(self.input)
        start, stop = parse_frames(self.frames, clip.num_frames)
        return clip[start:stop], start

    def restored(self, device: str | None = None, clip: vs.VideoNode | None = None) -> vs.VideoNode:
        """The output clip: the selected frames (``clip``, else ``source()``'s) with scene cuts marked,
        through ``edvr()`` on ``device``."""
        import edvr_vs

        if clip is None:
            clip, _ = self.source()
        try:
            return edvr_vs.edvr(mark_cuts(clip, self.scene_threshold), model=self.model, weights=self.weights,
                                device=device, precision=self.precision, tile=self.tile, **self.speed)
        except vs.Error as e:
            raise JobError(str(e)) from None

    def config(self) -> EDVRConfig:
        """The model's architecture (from the zoo, or the checkpoint's tensors): its radius N (output n
        reads frames n−N … n+N) and scale."""
        from edvr_vs import zoo
        from edvr_vs.checkpoint import read_checkpoint

        if self.weights:
            return read_checkpoint(self.weights).config
        name = self.model or zoo.default_model()
        if name is None:
            raise JobError("no default model is shipped with this version; pass --model or --weights")
        return zoo.entry(name).arch

    def frame_times(self) -> FrameTimes | None:
        """The input's frame times if it has a variable frame rate (None: constant, or a script);
        JobError if the file is truncated or damaged (nothing is computed from a file that is)."""
        if is_script(self.input):
            return None
        whole = open_source(self.input)
        try:
            return read_frame_times(self.input, whole.num_frames, Fraction(whole.fps_num, whole.fps_den))
        except DamagedSource as e:
            raise JobError(f"input {self.input!r} is truncated or damaged: {e}; nothing was written") from None

    def passthrough(self, output: Path, clip: vs.VideoNode, first: int, times: FrameTimes | None = None
                    ) -> Passthrough | None:
        """How the input's other streams (audio, subtitles, chapters, ...) go into ``output`` beside the
        restored ``clip`` (``source()``'s frames, from the input's frame ``first``; ``times``: a
        variable-rate input's ``frame_times()``); None for a script."""
        if is_script(self.input):
            return None
        if self.frames is None:
            return plan_passthrough(self.input, output)
        fps = Fraction(clip.fps_num, clip.fps_den)
        start, stop = ((times.seconds(first), times.seconds(first + clip.num_frames)) if times else
                       (first / fps, (first + clip.num_frames) / fps))
        return plan_passthrough(self.input, output, start=start, duration=stop - start)

    def settings(self) -> dict[str, object]:
        """Everything but the input that decides the output, as JSON values; weights by their sha256."""
        out = dataclasses.asdict(self)
        del out["input"]
        out["tile"] = list(self.tile) if self.tile else None
        out["encoder_args"] = list(self.encoder_args)
        if self.weights:
            out["weights"] = {"path": os.path.abspath(self.weights), "sha256": sha256_of(self.weights)}
        return out

    def absolute(self) -> Job:
        """This job with absolute paths (for workers that do not share the driver's directory)."""
        return dataclasses.replace(self, input=str(Path(self.input).resolve()),
                                   weights=str(Path(self.weights).resolve()) if self.weights else None)
