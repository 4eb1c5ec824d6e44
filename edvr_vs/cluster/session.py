"""Ray for ``edvr-vs run --workers/--cluster``: a local instance or an existing cluster, and the
workers' places (one per GPU while GPUs last, then CPU workers).

The local instance keeps Ray's token authentication on, starts no dashboard, and binds every Ray
server to the loopback interface (Ray's single-machine mode), so nothing listens beyond localhost.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from types import ModuleType

from edvr_vs.os_support import multi_node_ray

EXTRA = 'pip install "edvr_vs[cluster]"'


class ClusterError(RuntimeError):
    """A distributed run that cannot start or finish; the message says why and what to do."""


def require_ray() -> None:
    """Fail early, before any work, when Ray is not installed (without importing it: ``start`` sets
    the environment Ray reads when it is first imported)."""
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ClusterError(f"--workers and --cluster need Ray, which is not installed: {EXTRA}")


@dataclass(frozen=True)
class Slot:
    """One worker's place: ``"cuda"`` (the GPU Ray assigns it) or ``"cpu"`` with ``threads`` torch threads.

    CPU workers compute with the driver's torch thread count (a single process's, here): torch's CPU
    kernels round differently with another thread count, and the frames are to equal a single run's.
    CPU workers on one machine therefore share its cores."""

    device: str
    threads: int | None = None
    node: str | None = None  # a Ray node id: the worker goes there (a node that joined mid-run)

    def actor_options(self) -> dict[str, object]:
        options: dict[str, object] = {"num_gpus": 1, "num_cpus": 1} if self.device == "cuda" else \
            {"num_cpus": 1, "scheduling_strategy": "SPREAD"}  # CPU workers on different nodes first
        if self.node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(self.node, soft=False)
        return options


def start(cluster: str | None, workers: int | None) -> ModuleType:
    """Start a local Ray instance (``cluster`` None) sized for ``workers``, or join ``cluster``
    (``"auto"`` or an address); returns the connected ``ray`` module.

    Token authentication: ``RAY_AUTH_MODE=token`` is set before Ray is imported (without it Ray would
    join a cluster unauthenticated; Ray >= 2.59 turns it on for a new local instance anyway); a
    cluster's token comes from ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``, a local instance makes
    its own. Any other ``RAY_AUTH_MODE`` is refused."""
    mode = os.environ.get("RAY_AUTH_MODE", "token")
    if mode.lower() != "token":
        raise ClusterError(f"RAY_AUTH_MODE={mode}: edvr-vs keeps Ray's token authentication on; unset it or "
                           f"set RAY_AUTH_MODE=token")
    imported = "ray" in sys.modules  # Ray reads these variables once, when it is imported
    if not imported:
        os.environ["RAY_AUTH_MODE"] = "token"
    if cluster is None:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # single machine: Ray's servers on 127.0.0.1
        options = dict(address="local", include_dashboard=False, num_cpus=max(os.cpu_count() or 1, workers or 1))
    else:
        if "RAY_AUTH_MODE" not in os.environ:  # Ray would join a cluster without authentication
            raise ClusterError("Ray was imported before RAY_AUTH_MODE was set: set RAY_AUTH_MODE=token to join "
                               "a cluster with token authentication")
        options = dict(address=cluster)
    require_ray()
    import ray

    try:
        ray.init(log_to_driver=False, logging_level="ERROR", **options)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
        where = "start a local Ray instance" if cluster is None else f"join the Ray cluster at {cluster!r}"
        raise ClusterError(f"cannot {where}: {e}") from None
    gcs = ray.get_runtime_context().gcs_address
    if cluster is None and not gcs.startswith("127.0.0.1:"):
        ray.shutdown()
        raise ClusterError(f"the local Ray instance would listen on {gcs} (Ray was imported before edvr_vs "
                           f"could keep it on 127.0.0.1): set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0")
    return ray


def check_request(workers: int | None, device: str | None, cluster: str | None = None) -> None:
    """Refuse a worker count, device or cluster that cannot be had here, before any work."""
    if cluster is not None and (why := multi_node_ray()):
        raise ClusterError(f"--cluster: {why}; use --workers N on this machine instead")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ClusterError(f"--workers must be a positive number, got {workers!r}")
    if device not in (None, "cpu", "cuda"):
        raise ClusterError(f"--device with --workers/--cluster must be cpu or cuda (Ray gives each GPU worker "
                           f"its own GPU), got {device!r}")


def slots(ray: ModuleType, workers: int | None, device: str | None) -> list[Slot]:
    """The workers to start: ``workers`` of them (default: one per GPU of the cluster, else one CPU
    worker per node), on GPUs while they last unless ``device`` is ``"cpu"`` (``check_request`` first)."""
    gpus = 0 if device == "cpu" else int(ray.cluster_resources().get("GPU", 0))
    count = workers or gpus or len([n for n in ray.nodes() if n.get("Alive")])
    if device == "cuda" and count > gpus:
        raise ClusterError(f"--device cuda with {count} workers, but the cluster has {gpus} GPU(s)")
    on_gpu = min(count, gpus)
    import torch

    return [Slot("cuda")] * on_gpu + [Slot("cpu", torch.get_num_threads())] * (count - on_gpu)


def slots_for_node(node: dict[str, object], device: str | None) -> list[Slot]:
    """The workers a node that joined mid-run gets, as ``slots`` would have sized it: one per GPU (unless
    ``device`` is ``"cpu"``), else one CPU worker; none for a GPU-only run on a node without GPUs."""
    import torch

    gpus = 0 if device == "cpu" else int(node.get("Resources", {}).get("GPU", 0))
    if gpus:
        return [Slot("cuda", node=node["NodeID"])] * gpus
    return [] if device == "cuda" else [Slot("cpu", torch.get_num_threads(), node=node["NodeID"])]
