"""The zoo registry and downloads, against a local HTTP server on 127.0.0.1 that misbehaves on request."""

from __future__ import annotations

import hashlib
import http.server
import re
import subprocess
import sys
import threading
import time

import pytest
import torch

from edvr_vs import zoo
from edvr_vs.checkpoint import read_checkpoint
from edvr_vs.nn.edvr import EDVR
from edvr_vs.zoo import ModelEntry, ZooError


# ---- registry ---------------------------------------------------------------------------------

BASICSR = ["EDVR_M_x4_SR_REDS_official", "EDVR_M_woTSA_x4_SR_REDS_official", "EDVR_L_x4_SR_REDS_official",
           "EDVR_L_x4_SR_Vimeo90K_official", "EDVR_L_x4_SRblur_REDS_official", "EDVR_L_deblur_REDS_official",
           "EDVR_L_deblurcomp_REDS_official"]
MMAGIC = ["edvrm_wotsa_x4_8x4_600k_reds", "edvrm_x4_8x4_600k_reds", "edvrl_wotsa_c128b40_8x8_lr2e-4_600k_reds4",
          "edvrl_c128b40_8x8_lr2e-4_600k_reds4"]


def test_registry_names_and_entries():
    names = zoo.names()
    assert set(BASICSR + MMAGIC) <= set(names)
    assert len(names) == len(set(names))
    for name in names:
        e = zoo.entry(name)
        assert re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{64}", e.sha256), name
        if e.source != "embedded":
            assert e.file.rsplit("-", 1)[1].removesuffix(".pth") == e.sha256[:8], name
            assert e.download_url.startswith("https://"), name
        model = EDVR(**e.arch.as_dict())  # every architecture builds
        assert model.config.scale == e.scale
        assert e.padding in ("replicate", "reflection", "reflection_circle", "circle")


def test_published_numbers():
    psnr = {n: zoo.entry(n).psnr["value"] for n in BASICSR + MMAGIC if zoo.entry(n).psnr}
    assert psnr["EDVR_M_x4_SR_REDS_official"] == 30.53 and psnr["EDVR_L_x4_SR_REDS_official"] == 31.09
    assert psnr["EDVR_L_deblur_REDS_official"] == 34.80 and psnr["EDVR_L_x4_SR_Vimeo90K_official"] == 27.35
    assert psnr["edvrl_c128b40_8x8_lr2e-4_600k_reds4"] == 31.0467
    assert zoo.entry("EDVR_M_x4_SR_REDS_official").sha256 == \
        "32075921635eb07d56c83ec4009341bd82d882900ca7043f9c51cc7951033efd"
    assert zoo.entry("EDVR_M_x4_SR_REDS_official").download_url.endswith("id=1dd6aFj-5w2v08VJTq5mS9OFsD-wALYD6")


def test_unknown_model_lists_known_ones():
    with pytest.raises(ZooError, match="unknown model 'nope'.*EDVR_M_x4_SR_REDS_official"):
        zoo.entry("nope")


# ---- a misbehaving server -----------------------------------------------------------------------

class Server:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                route = self.path.split("?")[0]
                getattr(server, "route_" + route.strip("/").replace(".", "_"))(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def send(self, h, body: bytes, status: int = 200, ctype: str = "application/octet-stream",
             length: int | None = None, extra: dict | None = None):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def route_good_pth(self, h):
        rng = h.headers.get("Range")
        if rng:
            start = int(re.match(r"bytes=(\d+)-", rng)[1])
            self.send(h, self.payload[start:], 206, extra={
                "Content-Range": f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}"})
        else:
            self.send(h, self.payload)

    def route_norange_pth(self, h):
        self.send(h, self.payload)

    def route_truncated_pth(self, h):
        self.send(h, self.payload[: len(self.payload) // 3], length=len(self.payload))

    def route_corrupt_pth(self, h):
        body = bytearray(self.payload)
        body[len(body) // 2] ^= 0xFF
        self.send(h, bytes(body))

    def route_stall_pth(self, h):
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(self.payload)))
        h.end_headers()
        h.wfile.write(self.payload[:100])
        h.wfile.flush()
        time.sleep(3)

    def route_slow_pth(self, h):  # ranges, in 20 pieces over about a second
        start = int(re.match(r"bytes=(\d+)-", h.headers["Range"])[1]) if h.headers.get("Range") else 0
        body = self.payload[start:]
        h.send_response(206 if start else 200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body)))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        h.end_headers()
        step = max(1, len(self.payload) // 20)
        try:
            for i in range(0, len(body), step):
                h.wfile.write(body[i:i + step])
                h.wfile.flush()
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):  # the client was killed
            pass

    def route_error_html(self, h):
        self.send(h, b"<html><head><title>Quota exceeded</title></head><body>Too many users</body></html>",
                  ctype="text/html; charset=utf-8")

    def route_uc(self, h):  # Google Drive: a large file needs a confirmation form first
        page = (f'<html><body><form id="download-form" action="{self.url}/download" method="get">'
                '<input type="hidden" name="id" value="FILEID"><input type="hidden" name="export" value="download">'
                '<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="abc-123">'
                '</form></body></html>').encode()
        self.send(h, page, ctype="text/html; charset=utf-8")

    def route_download(self, h):
        assert "confirm=t" in h.path and "uuid=abc-123" in h.path and "id=FILEID" in h.path
        self.send(h, self.payload)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("p") / "w.pth"
    torch.save({"params": EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1).state_dict()}, path)
    return path.read_bytes()


@pytest.fixture
def server(payload):
    s = Server(payload)
    yield s
    s.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDVR_VS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EDVR_VS_TIMEOUT", "1")
    monkeypatch.setenv("EDVR_VS_RETRIES", "2")
    monkeypatch.setenv("EDVR_VS_BACKOFF", "0")
    monkeypatch.delenv("EDVR_VS_OFFLINE", raising=False)
    return tmp_path / "home"


def register(monkeypatch, url: str, sha: str, name: str = "tiny_test") -> None:
    reg = dict(zoo._registry())
    reg[name] = ModelEntry(name=name, source="basicsr", task="sr", scale=4, padding="reflection_circle",
                           arch=EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1).config,
                           file=f"{name}-{sha[:8]}.pth", sha256=sha, url=url)
    monkeypatch.setattr(zoo, "_registry", lambda: reg)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def no_final_file(home) -> bool:
    return not any(p.suffix == ".pth" for p in home.glob("*")) if home.exists() else True


def test_download_verify_and_load(server, payload, home, monkeypatch):
    register(monkeypatch, server.url + "/good.pth", sha(payload)[:8])
    path = zoo.weights_path("tiny_test", progress=False)
    assert path == home / f"tiny_test-{sha(payload)[:8]}.pth"
    assert path.read_bytes() == payload
    assert (home / (path.name + ".sha256")).read_text().strip() == sha(payload)  # full hash recorded
    assert read_checkpoint(path).config.num_feat == 16
    assert zoo.weights_path("tiny_test") == path and len(server.requests) == 1  # cached: no second request
    assert not list(home.glob("*.part"))


def test_resume_partial_download(server, payload, home, monkeypatch):
    register(monkeypatch, server.url + "/good.pth", sha(payload))
    home.mkdir(parents=True)
    part = home / f"tiny_test-{sha(payload)[:8]}.pth.part"
    part.write_bytes(payload[:1000])
    path = zoo.weights_path("tiny_test", progress=False)
    assert path.read_bytes() == payload
    assert server.requests == [("/good.pth", "bytes=1000-")]


def test_server_without_ranges_restarts_cleanly(server, payload, home, monkeypatch):
    register(monkeypatch, server.url + "/norange.pth", sha(payload))
    home.mkdir(parents=True)
    (home / f"tiny_test-{sha(payload)[:8]}.pth.part").write_bytes(b"garbage that must not be kept")
    assert zoo.weights_path("tiny_test", progress=False).read_bytes() == payload


def test_google_drive_confirmation_flow(server, payload, home, monkeypatch):
    monkeypatch.setattr(zoo, "GDRIVE_URL", server.url + "/uc?export=download&id={id}")
    register(monkeypatch, "gdrive:FILEID", sha(payload)[:8])
    assert zoo.weights_path("tiny_test", progress=False).read_bytes() == payload
    assert [r[0].split("?")[0] for r in server.requests] == ["/uc", "/download"]


def test_truncated_response(server, payload, home, monkeypatch):
    register(monkeypatch, server.url + "/truncated.pth", sha(payload)[:8])
    with pytest.raises(ZooError, match=r"download failed after 2 attempts.*partial file"):
        zoo.weights_path("tiny_test", progress=False)
    assert no_final_file(home)


def test_corrupted_body(server, payload, home, monkeypatch):
    register(monkeypatch, server.url + "/corrupt.pth", sha(payload)[:8])
    with pytest.raises(ZooError, match=r"sha256 .* expected .*corrupt.*deleted"):
        zoo.weights_path("tiny_test", progress=False)
    assert no_final_file(home) and not list(home.glob("*.part"))


def test_wrong_hash(server, payload, home, monkeypatch):
    register(monkeypatch, server.url + "/good.pth", "0" * 64)
    with pytest.raises(ZooError, match="expected 0000"):
        zoo.weights_path("tiny_test", progress=False)
    assert no_final_file(home) and not list(home.glob("*.part"))


def test_stalled_connection(server, payload, home, monkeypatch):
    register(monkeypatch, server.url + "/stall.pth", sha(payload)[:8])
    t = time.monotonic()
    with pytest.raises(ZooError, match="download failed after 2 attempts"):
        zoo.weights_path("tiny_test", progress=False)
    assert time.monotonic() - t < 10
    assert no_final_file(home)


def test_html_error_page(server, payload, home, monkeypatch):
    register(monkeypatch, server.url + "/error.html", sha(payload)[:8])
    with pytest.raises(ZooError, match=r"HTML page instead of the file \(Quota exceeded\)"):
        zoo.weights_path("tiny_test", progress=False)
    assert no_final_file(home) and not list(home.glob("*.part"))


def test_offline_mode_says_where(home, monkeypatch, payload):
    register(monkeypatch, "http://127.0.0.1:9/never", sha(payload)[:8])
    monkeypatch.setenv("EDVR_VS_OFFLINE", "1")
    with pytest.raises(ZooError, match=rf"put tiny_test-{sha(payload)[:8]}\.pth .* at {re.escape(str(home))}"):
        zoo.weights_path("tiny_test")


def test_file_put_by_hand_is_verified(home, monkeypatch, payload):
    register(monkeypatch, "http://127.0.0.1:9/never", sha(payload)[:8])
    home.mkdir(parents=True)
    target = home / f"tiny_test-{sha(payload)[:8]}.pth"
    target.write_bytes(payload[:-1] + b"x")
    with pytest.raises(ZooError, match="not the published one"):
        zoo.weights_path("tiny_test")
    target.write_bytes(payload)
    assert zoo.weights_path("tiny_test") == target


DOWNLOAD = ("import sys; from pathlib import Path; from edvr_vs import zoo; "
            "zoo.download_file(sys.argv[1], Path(sys.argv[2]), sys.argv[3], progress=False)")


def test_concurrent_downloads_fetch_once(server, payload, home):
    """Three processes and three threads fetch the same file into the same cache at once: one request
    reaches the server, everyone ends with the verified file."""
    url, dest = server.url + "/slow.pth", home / "shared.pth"
    procs = [subprocess.Popen([sys.executable, "-c", DOWNLOAD, url, str(dest), sha(payload)]) for _ in range(3)]
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(zoo.download_file(url, dest, sha(payload),
                                                                                 progress=False)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert results == [dest] * 3 and dest.read_bytes() == payload
    assert server.requests == [("/slow.pth", None)]
    assert not list(home.glob("*.part"))


def test_killed_downloader_leaves_no_file_and_the_next_resumes(server, payload, home):
    url, dest = server.url + "/slow.pth", home / "killed.pth"
    home.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", DOWNLOAD, url, str(dest), sha(payload)])
    part = dest.with_name(dest.name + ".part")
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size > len(payload) // 4) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=10)
    assert not dest.exists() and part.exists() and dest.with_name(dest.name + ".lock").exists()
    have = part.stat().st_size
    t0 = time.monotonic()
    assert zoo.download_file(url, dest, sha(payload), progress=False) == dest  # the dead holder's lock is gone
    assert time.monotonic() - t0 < 30 and dest.read_bytes() == payload
    assert server.requests[-1] == ("/slow.pth", f"bytes={have}-")
