"""CUDA graphs for a fixed-shape network: captured once per (stream, input shapes), then replayed.

A replay launches the whole captured sequence of kernels (for EDVR's per-window
network: a few hundred) with one call, so the host no longer pays Python and
dispatcher time per kernel. Each captured graph owns static input buffers and a static
output; its intermediates live in its stream's memory pool:

- a call fills the static inputs (``fill`` writes into them), replays, and returns a
  copy of the output, all enqueued on the caller's current stream while holding its
  stream's lock, so two threads never interleave their use of one stream's graphs (which
  share memory, below);
- graphs are keyed by stream as well as by shapes: work on different streams never
  shares buffers, so streams overlap freely (at the cost of one graph per stream);
- the graphs of one stream share one memory pool (``torch.cuda.graph_pool_handle``): they
  replay in that stream's order, never at once, so one graph's intermediates may reuse
  another's, and a new tile shape costs its static buffers, not a new pool;
- capture runs on a capture stream of the cache's device with that device current, whichever
  device the calling thread had;
- capture uses ``capture_error_mode="thread_local"``: other threads keep running
  their own CUDA work meanwhile. Captures are serialised process-wide (torch captures on
  one shared stream).

Kernels launched through ``edvr_vs.kernel_loader`` (CuPy) run on torch's current stream and
allocate nothing through CuPy, so they should be captured like torch's own; this has not
yet run on a GPU (README "Performance"), which is why ``cuda_graphs`` is off by default.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from edvr_vs.os_support import say

_CAPTURE_LOCK = threading.Lock()


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]
    output: torch.Tensor
    lock: threading.Lock  # its stream's: graphs sharing a pool never run interleaved


class GraphCache:
    """``net(*inputs) -> Tensor`` on CUDA, run through captured graphs.

    ``alloc(shape)`` makes a static input buffer (it chooses dtype, device and
    memory format); ``fill(buffers)`` writes one call's inputs into them.
    """

    def __init__(self, net: Callable[..., torch.Tensor], alloc: Callable[[torch.Size], torch.Tensor],
                 device: torch.device) -> None:
        self.net, self.alloc, self.device = net, alloc, device
        self._graphs: dict[tuple, _Captured] = {}
        self._pools: dict[int, tuple[object, threading.Lock]] = {}  # stream → its graphs' pool and lock
        self._capture_stream: torch.cuda.Stream | None = None

    def __len__(self) -> int:
        return len(self._graphs)

    def clear(self) -> None:
        """Forget every graph (their memory pools are freed once unreferenced)."""
        with _CAPTURE_LOCK:
            self._graphs.clear()
            self._pools.clear()

    def __call__(self, shapes: list[torch.Size], fill: Callable[[list[torch.Tensor]], object]) -> torch.Tensor:
        stream = torch.cuda.current_stream(self.device)
        key = (stream.cuda_stream, tuple(tuple(s) for s in shapes))
        captured = self._graphs.get(key)
        if captured is None:
            with _CAPTURE_LOCK:
                captured = self._graphs.get(key) or self._capture(key, shapes, fill, stream)
        with captured.lock:
            fill(captured.inputs)
            captured.graph.replay()
            return captured.output.clone()

    def _capture(self, key: tuple, shapes: list[torch.Size], fill: Callable[[list[torch.Tensor]], object],
                 stream: torch.cuda.Stream) -> _Captured:
        say(f"edvr: capturing a CUDA graph on {self.device} for inputs {[tuple(s) for s in shapes]} (once per "
            "input size and stream)\n")
        with torch.cuda.device(self.device):
            inputs = [self.alloc(s) for s in shapes]
            fill(inputs)
            # Warm-up outside the capture: compiles kernels and settles cuDNN/cuBLAS choices.
            side = torch.cuda.Stream(self.device)
            side.wait_stream(stream)
            with torch.cuda.stream(side), torch.inference_mode():
                self.net(*inputs)
            stream.wait_stream(side)
            pool, lock = self._pools.setdefault(stream.cuda_stream, (torch.cuda.graph_pool_handle(), threading.Lock()))
            if self._capture_stream is None:
                self._capture_stream = torch.cuda.Stream(self.device)
            self._capture_stream.wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with (torch.cuda.graph(graph, pool=pool, stream=self._capture_stream, capture_error_mode="thread_local"),
                  torch.inference_mode()):
                output = self.net(*inputs)
            stream.wait_stream(self._capture_stream)
        captured = _Captured(graph, inputs, output, lock)
        self._graphs[key] = captured
        return captured
