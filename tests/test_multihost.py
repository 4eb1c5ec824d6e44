"""A real two-host Ray cluster on this one machine: two network namespaces joined by a veth pair, each
host its own address, a token-authenticated ``ray start --head`` in one and ``ray start --address`` in
the other, and ``edvr-vs run --cluster`` from the head on a folder both see.

Checked: the output equals a single-process run while the second host goes down mid-chunk (every process
in its namespace stopped, then killed: its chunk is retried on the head; Ray's health checks may notice the
lost node only after the run); Ray's listening sockets are on the namespaces' own addresses; a client
with the wrong token is refused. The addresses are in 198.18.0.0/15 (RFC 2544's benchmarking range), on
interfaces that exist only inside the namespaces this test makes and removes, with every process in them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cluster import SMALL_CHUNKS, assert_same_file, base_args, make_job, report_counts

pytestmark = pytest.mark.linux(reason="network namespaces (ip netns) and /proc")
pytest.importorskip("ray", reason='the cluster extra (pip install "edvr_vs[cluster]")')

TAG = f"{os.getpid() % 100000}"
HOSTS = {"head": ("198.18.0.1", f"edvr-a{TAG}"), "other": ("198.18.0.2", f"edvr-b{TAG}")}
PORT = 6379
RAY = str(Path(sys.executable).with_name("ray"))
LIMIT_S = 300


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_weights):
    return make_job(tmp_path_factory.mktemp("multihost"), tiny_weights)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def _pids(ns: str) -> list[int]:
    res = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30)
    return [int(p) for p in res.stdout.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@contextlib.contextmanager
def two_hosts() -> Iterator[None]:
    """Both namespaces with their veth ends up and addressed; on the way out every process in them is
    killed and they are deleted."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's ip")
    (addr_a, ns_a), (addr_b, ns_b) = HOSTS["head"], HOSTS["other"]
    made: list[str] = []
    current = Path("/tmp/ray/ray_current_cluster")  # `ray start --head` notes its address there
    had_current = current.exists()
    try:
        try:
            for ns in (ns_a, ns_b):
                _ip("netns", "add", ns)
                made.append(ns)
            _ip("link", "add", f"va{TAG}", "type", "veth", "peer", "name", f"vb{TAG}")
            for ns, dev, addr in ((ns_a, f"va{TAG}", addr_a), (ns_b, f"vb{TAG}", addr_b)):
                _ip("link", "set", dev, "netns", ns)
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except subprocess.CalledProcessError as e:
            pytest.skip(f"network namespaces cannot be made here: {' '.join(e.cmd)}: {e.stderr.strip()}")
        yield
    finally:
        for ns in made:
            for _ in range(3):
                for pid in _pids(ns):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        if not had_current:
            current.unlink(missing_ok=True)


def in_ns(host: str, cmd: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", HOSTS[host][1], *cmd], env=env, capture_output=True, text=True,
                          **kw)


def _listening(ns: str) -> set[str]:
    """The IPv4/IPv6 addresses that TCP sockets listen on inside ``ns`` (read through one of its processes)."""
    pid = _pids(ns)[0]
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A":
                found.add(_address(cols[1].split(":")[0]))
    return found


def _address(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return ".".join(str(b) for b in reversed(raw))
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
    ip6 = b"".join(words)
    if ip6[:12] == b"\0" * 10 + b"\xff\xff":
        return ".".join(str(b) for b in ip6[12:])
    return ip6.hex()


def test_two_hosts_one_lost_mid_run(job, tmp_path):
    token = secrets.token_hex(16)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    head_addr = HOSTS["head"][0]
    with two_hosts():
        start = in_ns("head", [RAY, "start", "--head", f"--node-ip-address={head_addr}", f"--port={PORT}",
                               "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"], env, timeout=180)
        assert start.returncode == 0, start.stderr[-2000:]
        join = in_ns("other", [RAY, "start", f"--address={head_addr}:{PORT}",
                               f"--node-ip-address={HOSTS['other'][0]}", "--num-cpus=1"], env, timeout=180)
        assert join.returncode == 0, join.stderr[-2000:]

        # Each host's Ray listens on its own address, its namespace's loopback, or every address of its
        # namespace (a wildcard), which are those two and nothing else.
        for host, (addr, ns) in HOSTS.items():
            listening = _listening(ns)
            assert listening and listening <= {addr, "127.0.0.1", "0.0.0.0", "0" * 32}, (host, listening)
            own = subprocess.run(["ip", "-n", ns, "-o", "addr"], capture_output=True, text=True, timeout=30).stdout
            assert {line.split()[3].split("/")[0] for line in own.splitlines()} <= {addr, "127.0.0.1", "::1"} | {
                line.split()[3].split("/")[0] for line in own.splitlines() if line.split()[3].startswith("fe80:")}
        # A client with another token is turned away.
        probe = ("import ray, sys\n"
                 "try:\n    ray.init(address=sys.argv[1]); print('JOINED')\n"
                 "except Exception as e:\n    print('REFUSED', type(e).__name__)\n")
        wrong = in_ns("other", [sys.executable, "-c", probe, f"{head_addr}:{PORT}"],
                      {**env, "RAY_AUTH_TOKEN": secrets.token_hex(16)}, timeout=120)
        assert wrong.stdout.startswith("REFUSED"), wrong.stdout + wrong.stderr[-1000:]

        out = tmp_path / "two_hosts.mkv"
        parts = tmp_path / "two_hosts.mkv.parts"
        driver = subprocess.Popen(["ip", "netns", "exec", HOSTS["head"][1], sys.executable, "-m", "edvr_vs", "run",
                                   *base_args(job, out), "--cluster", f"{head_addr}:{PORT}", "--workers", "2",
                                   *SMALL_CHUNKS, "--lost-timeout", "60"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            other_ns = HOSTS["other"][1]

            def other_host_encoding() -> bool:
                """The second host finished a chunk and is in the middle of another."""
                pids = set(_pids(other_ns))
                try:
                    done = json.loads((parts / "manifest.json").read_text())["done"].values()
                except (OSError, ValueError, KeyError):
                    return False
                return any(r["pid"] in pids for r in done) and \
                    any(_cmdline(p).startswith("ray::ChunkWorker.encode") for p in pids)

            deadline = time.monotonic() + LIMIT_S
            while True:
                while not other_host_encoding():
                    assert driver.poll() is None, driver.stderr.read()[-3000:]
                    assert time.monotonic() < deadline, "the second host never took a chunk"
                    time.sleep(0.05)
                host = _pids(other_ns)
                for pid in host:  # the host hangs ...
                    os.kill(pid, signal.SIGSTOP)
                if any(_cmdline(p).startswith("ray::ChunkWorker.encode") for p in host):
                    break  # ... in the middle of a chunk
                for pid in host:  # it had just finished one: let it go on, and catch the next
                    os.kill(pid, signal.SIGCONT)
            for pid in host:  # ... and goes down with every process on it
                os.kill(pid, signal.SIGKILL)
            _, err = driver.communicate(timeout=LIMIT_S)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.communicate()
        assert driver.returncode == 0, err[-3000:]
        assert "failed on" in err, err[-3000:]
        assert report_counts(err)[2] >= 1  # the lost host's chunk, retried on the head
        assert_same_file(out, job["single"])
