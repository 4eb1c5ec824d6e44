"""The package in a stand-in for Windows (``tests/windows_standin.py``): a Python without ``fcntl``,
``resource``, ``termios``, ``grp``, ``pwd``, ``pty``, ``tty``, ``os.killpg``/``setsid``/``fork``/… and
``signal.SIGXFSZ``/``SIGHUP``/``SIGPIPE``/…. In it the package imports, ``edvr()`` restores real frames
exactly as here, the zoo downloads (with its lock) from a local server, and ``edvr-vs run`` (source and
output in a folder named with a space, Cyrillic and CJK, a title in both scripts, with audio), ``export``
and ``doctor`` work."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import edvr_vs
from edvr_vs.ffmpeg import ffmpeg_exe
from edvr_vs.frame_io import clip_from_frames, frame_tensor
from tests import test_zoo
from tests.media_checks import describe, framemd5
from tests.test_cli import probe
from tests.test_onnx import forward, session
from tests.windows_standin import POSIX_MODULES, POSIX_OS_NAMES, POSIX_SIGNALS, run_cli, run_code

THREADS = 2  # torch's CPU threads, the same here and in the stand-in: equal results bit for bit
FOLDER = "ввод 入力 dir"  # a space, Cyrillic and CJK
TITLE = "Заголовок 标题 テスト"


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, (f"exit {res.returncode}\n--- stdout\n{res.stdout[-3000:]}\n"
                                 f"--- stderr\n{res.stderr[-6000:]}")
    return res


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("standin") / FOLDER
    path.mkdir()
    return path


IMPORTS = """\
import importlib, json
found = {}
for m in POSIX_MODULES:
    try:
        importlib.import_module(m)
        found[m] = "importable"
    except ImportError:
        found[m] = "missing"
import edvr_vs, edvr_vs.os_support, edvr_vs.cluster.manifest, edvr_vs.cli, edvr_vs.zoo, filelock
print(json.dumps({"modules": found, "os": [n for n in POSIX_OS_NAMES if hasattr(os, n)],
                  "signal": [n for n in POSIX_SIGNALS if hasattr(signal, n)],
                  "kept": [hasattr(os, "sysconf"), hasattr(signal, "SIGKILL")],
                  "lock": filelock.FileLock.__name__, "edvr": callable(edvr_vs.edvr),
                  "main": callable(edvr_vs.cli.main), "package": edvr_vs.__file__}))
"""


def test_the_stand_in_lacks_posix_and_the_package_imports():
    code = (f"POSIX_MODULES, POSIX_OS_NAMES, POSIX_SIGNALS = {POSIX_MODULES!r}, {POSIX_OS_NAMES!r}, "
            f"{POSIX_SIGNALS!r}\n" + IMPORTS)
    got = json.loads(ok(run_code(code)).stdout)
    assert got["modules"] == {m: "missing" for m in POSIX_MODULES}  # fcntl, resource, … really gone
    assert got["os"] == [] and got["signal"] == []  # os.killpg, signal.SIGXFSZ, … really gone
    assert got["kept"] == [True, True]
    assert got["lock"] == "SoftFileLock"  # filelock found no fcntl
    assert got["edvr"] and got["main"] and Path(got["package"]) == Path(edvr_vs.__file__)


@pytest.mark.parametrize("use, error", [
    ("import fcntl", "ModuleNotFoundError: import of fcntl halted"),
    ("import resource", "ModuleNotFoundError: import of resource halted"),
    ("os.killpg(0, 0)", "AttributeError: module 'os' has no attribute 'killpg'"),
    ("signal.SIGXFSZ", "AttributeError: module 'signal' has no attribute 'SIGXFSZ'"),
])
def test_the_stand_in_fails_what_windows_lacks(use, error):
    """Code that needs a POSIX-only facility fails in the stand-in as it would on Windows."""
    res = run_code(use)
    assert res.returncode == 1 and error in res.stderr, res.stderr


RESTORE = f"""\
import torch
torch.set_num_threads({THREADS})
import edvr_vs
from edvr_vs.frame_io import clip_from_frames, frame_tensor
frames = torch.load(sys.argv[1])
out = edvr_vs.edvr(clip_from_frames(frames), device="cpu")
torch.save(torch.stack([frame_tensor(f) for f in out.frames()]), sys.argv[2])
"""


def test_edvr_with_the_embedded_model_equals_this_process(vimeo_frames, tmp_path):
    src, dst = tmp_path / "in.pt", tmp_path / "out.pt"
    torch.save(vimeo_frames, src)
    ok(run_code(RESTORE, str(src), str(dst)))
    got = torch.load(dst)
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        out = edvr_vs.edvr(clip_from_frames(vimeo_frames), device="cpu")
        want = torch.stack([frame_tensor(f) for f in out.frames()])
    finally:
        torch.set_num_threads(threads)
    assert got.shape == want.shape == (7, 3, 256, 448)
    assert (got - want).abs().max().item() <= 1e-6  # measured: 0.0 (equal threads, equal arithmetic)
    # a restoration of these frames, not an empty or garbled one
    assert abs(got.mean().item() - vimeo_frames.mean().item()) < 0.02
    assert got.std().item() > 0.5 * vimeo_frames.std().item()


ZOO = """\
import hashlib, json
from pathlib import Path
import filelock
from edvr_vs import os_support, zoo
url, name, sha = sys.argv[1:4]
home = os_support.cache_dir()
dest = home / name
first = zoo.download_file(url, dest, sha, progress=False)
again = zoo.download_file(url, dest, sha, progress=False)  # verified in place: no second request
with os_support.exclusive_lock(str(dest) + ".lock"):  # the lock, taken and given back
    pass
print(json.dumps({"home": str(home), "first": str(first), "again": str(again),
                  "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
                  "stamp": (home / (name + ".sha256")).read_text(encoding="utf-8"),
                  "files": sorted(p.name for p in home.iterdir()), "lock": filelock.FileLock.__name__}))
"""


def test_zoo_download_from_a_local_server(tiny_weights, folder):
    payload = tiny_weights.read_bytes()
    digest = test_zoo.sha(payload)
    home = folder / "cache home"
    server = test_zoo.Server(payload)
    try:
        res = ok(run_code(ZOO, server.url + "/good.pth", "tiny.pth", digest[:8],
                          extra_env={"EDVR_VS_HOME": str(home), "EDVR_VS_TIMEOUT": "10", "EDVR_VS_RETRIES": "2",
                                     "EDVR_VS_OFFLINE": ""}))
    finally:
        server.close()
    got = json.loads(res.stdout)
    assert Path(got["home"]) == home  # $EDVR_VS_HOME is the cache
    assert Path(got["first"]) == Path(got["again"]) == home / "tiny.pth"
    assert got["sha256"] == digest and (home / "tiny.pth").read_bytes() == payload
    assert got["stamp"].strip() == digest  # the full hash recorded beside the file
    assert server.requests == [("/good.pth", None)]
    assert got["lock"] == "SoftFileLock"
    assert not [f for f in got["files"] if f.endswith(".part")]
    assert {"tiny.pth", "tiny.pth.sha256"} <= set(got["files"])


@pytest.fixture(scope="module")
def source(folder) -> Path:
    """10 frames of testsrc2 at 64×48 with a sine tone and a Cyrillic+CJK title, in the odd folder."""
    path = folder / "источник 源.mkv"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-frames:v", "10", "-t", "0.4",
                    "-c:v", "libx264", "-crf", "16", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2",
                    "-metadata", f"title={TITLE}", str(path)],
                   check=True, timeout=60, capture_output=True, encoding="utf-8")
    info = describe(path)
    assert TITLE in info and "Audio: aac" in info
    return path


def test_run_file_to_file_with_audio_and_unicode_names(source, folder, tiny_weights):
    out = folder / "выход 出力.mkv"
    before = set(folder.iterdir())
    res = ok(run_cli("run", str(source), "-o", str(out), "--weights", str(tiny_weights), "--device", "cpu",
                     "--encoder", "ffv1"))
    assert "10/10 frames" in res.stderr
    info = describe(out)
    assert re.search(r"Stream #0:0.*: Video: ffv1.*\b256x192\b", info), info
    assert re.search(r"Stream #0:1.*: Audio: aac", info), info  # copied from the source
    assert re.search(rf"^\s+title\s+: {re.escape(TITLE)}$", info, re.M), info
    assert probe(out)[2] == 10
    assert framemd5(out, "a") == framemd5(source, "a")  # the audio's packets as they were
    assert set(folder.iterdir()) - before == {out}  # no partial or temporary file left
    assert not [p for p in folder.iterdir() if "partial" in p.name]


def test_export_onnx(folder, tiny_weights):
    out = folder / "модель 模型.onnx"
    ok(run_cli("export", "--weights", str(tiny_weights), "-o", str(out)))
    model = onnx.load(out)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["weights"] == "tiny.pth" and meta["num_frame"] == "5" and meta["scale"] == "4"
    assert [n.op_type for n in model.graph.node].count("DeformConv") == 4
    # the graph computes the checkpoint's model
    net = edvr_vs.load_model(tiny_weights)
    window = torch.rand(1, 15, 12, 20, generator=torch.Generator().manual_seed(9))
    got = session(out).run(None, {"input": window.numpy()})[0]
    assert got.shape == (1, 3, 48, 80)
    assert np.abs(got - forward(net, window).numpy()).max() < 1e-4
    assert not [p for p in folder.iterdir() if p.name.startswith(".") or "partial" in p.name]


def test_doctor_json():
    res = run_cli("doctor", "--json", "--seconds", "1")
    report = json.loads(res.stdout)
    assert report["problems"] == [], report["problems"]
    assert res.returncode == 0, res.stderr
    cpu = [d for d in report["devices"] if d["device"] == "cpu"]
    assert len(cpu) == 1 and isinstance(cpu[0]["name"], str) and cpu[0]["name"].strip()
    assert "nvrtc" in report["versions"] and "cupy" in report["versions"]
    assert report["versions"]["python"] and report["versions"]["ffmpeg"].get("path")
    bench = [b for b in report["benchmark"] if b["device"] == "cpu"]
    assert len(bench) == 1 and bench[0]["frames"] >= 1 and bench[0]["fps"] > 0
