"""VapourSynth scripts as ``edvr-vs run``'s input: a ``.vpy`` whose output ``node`` EDVR restores.

The script runs in this process as ``vspipe`` runs it (``__name__ == "__vapoursynth__"``, outputs
set with ``set_output``), so it can deinterlace, crop or denoise before EDVR. A script that calls
``edvr_vs.edvr`` itself is already the whole job: it is refused here, to be encoded with ``vspipe``.
"""

from __future__ import annotations

import os
import runpy
import traceback

import vapoursynth as vs

from edvr_vs.filter import graphs_built
from edvr_vs.media import MediaError

SCRIPT_SUFFIXES = (".vpy",)


def is_script(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path).lower().endswith(SCRIPT_SUFFIXES)


def _where(error: BaseException, path: str) -> str:
    """'line N: ' of the innermost frame of the script itself in ``error``'s traceback, if any."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if os.path.abspath(f.filename) == path]
    return f"line {frames[-1].lineno}: " if frames else ""


def load_script(path: str | os.PathLike[str], node: int = 0) -> vs.VideoNode:
    """The video clip a ``.vpy`` script sets as output ``node``; MediaError names the script and the problem."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise MediaError(f"script {path!r} does not exist")
    vs.clear_outputs()
    before = graphs_built()
    try:
        runpy.run_path(path, run_name="__vapoursynth__")
    except (Exception, SystemExit) as e:
        raise MediaError(f"script {path!r} failed: {_where(e, path)}{type(e).__name__}: {e}") from None
    outputs = vs.get_outputs()
    if graphs_built() > before:
        raise MediaError(f"script {path!r} already calls edvr_vs.edvr: encode it as it is with vspipe "
                         f"(vspipe -c y4m {os.path.basename(path)} - | ffmpeg -i - OUTPUT), or remove "
                         "the call to let edvr-vs run apply EDVR")
    if node not in outputs:
        raise MediaError(f"script {path!r} sets no output {node} (it sets "
                         f"{', '.join(map(str, sorted(outputs))) or 'none'}); pass --node N")
    out = outputs[node]
    if isinstance(out, vs.VideoOutputTuple):
        return out.clip
    raise MediaError(f"output {node} of script {path!r} is {type(out).__name__}, not video")
