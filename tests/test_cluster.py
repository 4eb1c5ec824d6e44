"""``edvr-vs run --workers/--cluster`` on a local Ray instance: equal to one process, surviving a
killed worker and an interrupted driver, refusing a changed job. Every run is a subprocess with a
time limit; every Ray process a test starts is gone when it ends."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.media_checks import container_duration, framemd5, make_cut_clip, make_vfr_clip, packet_times

pytestmark = pytest.mark.linux(reason="reads /proc and signals Ray's process groups")

pytest.importorskip("ray", reason='the cluster extra (pip install "edvr_vs[cluster]")')

EDVR_VS = [sys.executable, "-m", "edvr_vs"]
SMALL_CHUNKS = ["--min-chunk", "4", "--max-chunk", "8"]  # the clip's 22-frame scene becomes 3 chunks
LIMIT_S = 240


def _ray_pids() -> set[int]:
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::") or "/ray/core/src/ray/" in cmd or "ray/_private/" in cmd \
                    or "ray/dashboard/" in cmd or "ray/autoscaler/" in cmd:
                pids.add(int(d.name))
    return pids


@pytest.fixture(autouse=True)
def no_ray_left_behind():
    before = _ray_pids()
    yield
    deadline = time.monotonic() + 20
    while (left := _ray_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"Ray processes left running: {left}"


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_weights):
    return make_job(tmp_path_factory.mktemp("cluster"), tiny_weights)


def make_job(folder: Path, tiny_weights: Path) -> dict:
    """The clip, the weights and the single-process result every distributed run must equal."""
    clip = make_cut_clip(folder / "cuts.mkv")
    single = folder / "single.mkv"
    run_cli([str(clip), "-o", str(single), "--weights", str(tiny_weights), "--encoder", "ffv1"])
    return {"clip": clip, "weights": tiny_weights, "single": single}


def run_cli(args: list[str], timeout: float = LIMIT_S) -> subprocess.CompletedProcess:
    res = subprocess.run([*EDVR_VS, "run", *args], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def base_args(job: dict, output: Path) -> list[str]:
    return [str(job["clip"]), "-o", str(output), "--weights", str(job["weights"]), "--encoder", "ffv1"]


def assert_same_file(output: Path, single: Path) -> None:
    video = framemd5(output)
    assert len(video) == 41
    assert video == framemd5(single)  # decoded frames bit for bit, and their timestamps
    assert framemd5(output, "a") == framemd5(single, "a")
    assert container_duration(output) == container_duration(single)
    assert not output.with_name(output.name + ".parts").exists()


def report_counts(stderr: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) chunks: (\d+) from an earlier run, (\d+) computed, (\d+) retried", stderr)
    assert m, stderr[-2000:]
    chunks, reused, computed, retried = map(int, m.groups())
    assert reused + computed == chunks == 6
    return reused, computed, retried


def spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([*EDVR_VS, "run", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = LIMIT_S) -> str:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return err


def wait_for(what, timeout: float = LIMIT_S, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := what()):
            return found
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended first: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    pytest.fail("timed out")


def chunks_done(parts: Path) -> int:
    """Finished chunks in a running job's manifest (0 while it cannot be read)."""
    try:
        return len(json.loads((parts / "manifest.json").read_text())["done"])
    except (OSError, ValueError, KeyError):
        return 0


def test_two_workers_equal_one_process(job, tmp_path):
    out = tmp_path / "dist.mkv"
    res = run_cli([*base_args(job, out), "--workers", "2", *SMALL_CHUNKS])
    assert report_counts(res.stderr) == (0, 6, 0)
    assert "12 context frames" in res.stderr  # read beyond their chunks: [8,15) 2, [15,22) 4, [22,30) 2, ...
    assert_same_file(out, job["single"])


def test_killed_worker_is_replaced_and_its_chunk_retried(job, tmp_path):
    out = tmp_path / "dist.mkv"
    proc = spawn([*base_args(job, out), "--workers", "2", *SMALL_CHUNKS])
    victim = wait_for(lambda: _processes(b"ray::ChunkWorker.encode"), proc=proc)[0]
    os.kill(victim, signal.SIGKILL)
    err = finish(proc)
    assert proc.returncode == 0, err[-3000:]
    reused, computed, retried = report_counts(err)
    assert retried >= 1 and "failed on" in err
    assert_same_file(out, job["single"])


def test_interrupted_driver_resumes_and_changed_jobs_are_refused(job, tmp_path):
    out = tmp_path / "dist.mkv"
    parts = tmp_path / "dist.mkv.parts"
    proc = spawn([*base_args(job, out), "--workers", "1", *SMALL_CHUNKS])
    wait_for(lambda: chunks_done(parts) >= 2, proc=proc)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    err = finish(proc, timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert not out.exists()
    done = len(json.loads((parts / "manifest.json").read_text())["done"])
    assert 2 <= done < 6

    changed = subprocess.run([*EDVR_VS, "run", *base_args(job, out), "--workers", "1", *SMALL_CHUNKS,
                              "--precision", "bf16"], capture_output=True, text=True, timeout=60)
    assert changed.returncode == 1
    assert "holds the parts of another job: precision (None -> 'bf16')" in changed.stderr
    other = tmp_path / "other.mkv"
    other.write_bytes(job["clip"].read_bytes())
    moved = subprocess.run([*EDVR_VS, "run", str(other), "-o", str(out), "--weights", str(job["weights"]),
                            "--encoder", "ffv1", "--workers", "1", *SMALL_CHUNKS, "--work-dir", str(parts)],
                           capture_output=True, text=True, timeout=60)
    assert moved.returncode == 1 and "source path" in moved.stderr

    res = run_cli([*base_args(job, out), "--workers", "2", *SMALL_CHUNKS])
    assert report_counts(res.stderr)[:2] == (done, 6 - done)  # finished chunks are not computed again
    assert_same_file(out, job["single"])


def test_variable_frame_rate_keeps_the_source_timestamps(job, tmp_path):
    """Segments carry the source's frame times: the joined file's timestamps and frames equal a single run's."""
    src = make_vfr_clip(tmp_path / "vfr.mkv")
    single, dist = tmp_path / "single.mkv", tmp_path / "dist.mkv"
    args = ["--weights", str(job["weights"]), "--encoder", "ffv1"]
    run_cli([str(src), "-o", str(single), *args])
    res = run_cli([str(src), "-o", str(dist), *args, "--workers", "2", "--min-chunk", "8", "--max-chunk", "16"])
    assert "variable frame rate: the output keeps the source's timestamps (49 frames)" in res.stderr
    want = sorted(t for t, _ in packet_times(src, "v"))
    assert sorted(t for t, _ in packet_times(dist, "v")) == want  # 40 ms frames, then 20 ms ones
    assert framemd5(dist) == framemd5(single)
    assert packet_times(dist, "a") == packet_times(single, "a")


def _processes(prefix: bytes) -> list[int]:
    """Processes whose command line starts with ``prefix`` (Ray names its workers ``ray::Class.method``)."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "cmdline").read_bytes().startswith(prefix):
                out.append(int(d.name))
        except OSError:
            pass
    return out


def test_lost_node_ends_the_run_within_the_bound_and_a_rerun_completes(job, tmp_path):
    """The local node taken down mid-run (its DashboardAgent killed: Ray takes the node with it, as an OOM
    killer or a crash would): the driver stops within --lost-timeout, exit 1, naming what was lost; the
    finished chunks are kept and a rerun completes with the single run's output."""
    out = tmp_path / "dist.mkv"
    parts = tmp_path / "dist.mkv.parts"
    proc = spawn([*base_args(job, out), "--workers", "1", *SMALL_CHUNKS, "--lost-timeout", "15"])
    wait_for(lambda: chunks_done(parts) >= 1, proc=proc)
    agents = _processes(b"ray::DashboardAgent")
    assert agents, "no DashboardAgent found"
    t = time.monotonic()
    for pid in agents:
        os.kill(pid, signal.SIGKILL)
    err = finish(proc, timeout=120)
    elapsed = time.monotonic() - t
    assert proc.returncode == 1, err[-3000:]
    assert elapsed < 15 + 60, elapsed  # the bound, plus noticing the loss and shutting Ray down
    assert "no live worker for 15 s" in err and "worker(s) lost" in err, err[-3000:]
    assert "run the same command again to resume" in err
    kept = len(json.loads((parts / "manifest.json").read_text())["done"])
    assert kept >= 1 and not out.exists()
    res = run_cli([*base_args(job, out), "--workers", "2", *SMALL_CHUNKS])
    reused, computed, _ = report_counts(res.stderr)
    assert reused >= kept
    assert_same_file(out, job["single"])


def test_stalled_chunk_is_cancelled_and_retried(job, tmp_path):
    """A worker that is alive but makes no progress (stopped with SIGSTOP, as a hung mount would leave it)
    has its chunk cancelled after --stall-timeout and computed by a fresh worker; the output is unchanged."""
    out = tmp_path / "dist.mkv"
    proc = spawn([*base_args(job, out), "--workers", "2", *SMALL_CHUNKS, "--stall-timeout", "8"])
    victim = wait_for(lambda: _processes(b"ray::ChunkWorker.encode"), proc=proc)[0]
    os.kill(victim, signal.SIGSTOP)
    try:
        err = finish(proc)
    finally:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, err[-3000:]
    assert "no new frame for 8 s" in err and "(stalled;" in err, err[-3000:]
    assert report_counts(err)[2] >= 1
    assert_same_file(out, job["single"])


def _listening_ports(pids: set[int]) -> list[str]:
    """Local addresses of the TCP sockets in LISTEN state that ``pids`` own."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            pass
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:
                found.append(cols[1])
    return found


def test_local_instance_listens_on_loopback_only_with_token_auth(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # Ray's own default: token
    script = (
        "import json, os\n"
        "from edvr_vs.cluster import session\n"
        "ray = session.start(None, 1)\n"
        "print(json.dumps({'auth': os.environ['RAY_AUTH_MODE'], 'gcs': ray.get_runtime_context().gcs_address}))\n"
        "import sys; sys.stdout.flush(); sys.stdin.readline()\n"
        "ray.shutdown()\n")
    before = _ray_pids()
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, start_new_session=True, env=env)
    try:
        info = json.loads(proc.stdout.readline())
        assert info["auth"] == "token" and info["gcs"].startswith("127.0.0.1:")
        addresses = _listening_ports((_ray_pids() - before) | {proc.pid})
        assert addresses
        loopback = ("0100007F:", "0000000000000000FFFF00000100007F:", "00000000000000000000000001000000:")
        assert all(a.startswith(loopback) for a in addresses), addresses
        assert not _dashboard_reachable()
        # the token is enforced: a client with another token is turned away
        probe = ("import ray, sys\n"
                 "try:\n    ray.init(address=sys.argv[1]); print('JOINED')\n"
                 "except Exception as e:\n    print('REFUSED', type(e).__name__)\n")
        wrong = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        res = subprocess.run([sys.executable, "-c", probe, info["gcs"]], env=wrong, capture_output=True, text=True,
                             timeout=120)
        assert res.stdout.startswith("REFUSED"), res.stdout + res.stderr[-1000:]
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _dashboard_reachable() -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", 8265)) == 0


def test_joins_a_token_authenticated_cluster(job, tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
    try:
        out = tmp_path / "cluster.mkv"
        res = subprocess.run([*EDVR_VS, "run", *base_args(job, out), "--cluster", f"127.0.0.1:{port}",
                              "--workers", "2", *SMALL_CHUNKS], env=env, capture_output=True, text=True,
                             timeout=LIMIT_S)
        assert res.returncode == 0, res.stderr[-3000:]
        assert_same_file(out, job["single"])
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_usage_errors(job, tmp_path):
    out = tmp_path / "x.mkv"
    for extra, code, message in [
        (["--min-chunk", "4"], 1, "--min-chunk only apply with --workers or --cluster"),
        (["--workers", "0"], 2, "expected a positive whole number"),
        (["--workers", "1", "--device", "cuda:1"], 1, "--device with --workers/--cluster must be cpu or cuda"),
        (["--workers", "1", "--min-chunk", "9", "--max-chunk", "4"], 1, "must not exceed --max-chunk"),
        (["--scene-threshold", "2"], 1, "threshold must be in (0, 1]"),
    ]:
        res = subprocess.run([*EDVR_VS, "run", *base_args(job, out), *extra], capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == code and message in res.stderr, (extra, res.stderr[-1500:])
    assert not out.exists()


def test_missing_ray_names_the_extra(job, tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from edvr_vs.cli import main\n"
            f"sys.exit(main(['run', {str(job['clip'])!r}, '-o', {str(tmp_path / 'x.mkv')!r}, '--weights', "
            f"{str(job['weights'])!r}, '--workers', '2']))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert 'need Ray, which is not installed: pip install "edvr_vs[cluster]"' in res.stderr


def test_disabled_token_auth_is_refused(job, tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    res = subprocess.run([*EDVR_VS, "run", *base_args(job, tmp_path / "x.mkv"), "--workers", "1"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "keeps Ray's token authentication on" in res.stderr
