"""edvr_vs.autotune: the fastest candidate per key, timed once; nothing timed during a CUDA graph capture."""

from __future__ import annotations

import pytest
import torch

from edvr_vs import autotune


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(autotune, "_CHOICES", {})
    monkeypatch.setattr(autotune, "_TIMES", {})


def counting(name: str, calls: list[str]):
    def run() -> str:
        calls.append(name)
        return name
    return run


def test_times_each_candidate_once_and_keeps_the_fastest(capsys):
    calls: list[str] = []
    cost = {"slow": 5.0, "fast": 1.0}
    timer = lambda fn: cost[fn()]  # noqa: E731 - a fake clock: each run "takes" its candidate's cost
    candidates = {"slow": counting("slow", calls), "fast": counting("fast", calls)}
    key = ("deform_conv2d", "cuda:0", torch.float16, (5, 64, 180, 320))
    assert autotune.choose(key, candidates, timer) == "fast"
    # one warm-up and three timed runs each, then the chosen one for the result
    assert calls == ["slow"] * 4 + ["fast"] * 5
    assert autotune.choose(key, candidates, timer) == "fast" and calls[-1] == "fast" and len(calls) == 10
    err = capsys.readouterr().err
    assert err.count("edvr: timed deform_conv2d for cuda:0 torch.float16 (5,64,180,320): slow 5 ms, fast 1 ms; "
                     "using fast") == 1
    assert autotune.choices() == [{"key": "deform_conv2d cuda:0 torch.float16 (5,64,180,320)", "ms": cost, "chosen": "fast"}]


def test_the_median_of_the_timed_runs_counts():
    runs = iter([9.0, 1.0, 2.0, 3.0, 3.0, 3.0])  # a: one outlier of 9 ms, median 2; b: 3
    choice = autotune.choose(("k",), {"a": lambda: "a", "b": lambda: "b"}, lambda fn: next(runs))
    assert choice == "a"


def test_nothing_is_timed_while_a_graph_is_captured(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(autotune, "_capturing", lambda: True)
    candidates = {"first": counting("first", calls), "second": counting("second", calls)}
    assert autotune.choose(("k",), candidates, lambda fn: pytest.fail("timed during a capture")) == "first"
    assert calls == ["first"] and autotune.choices() == []
    monkeypatch.setattr(autotune, "_capturing", lambda: False)
    autotune._CHOICES[("k",)] = "second"  # chosen before the capture, kept during it
    monkeypatch.setattr(autotune, "_capturing", lambda: True)
    assert autotune.choose(("k",), candidates) == "second"


def test_wall_clock_off_cuda():
    assert autotune.device_ms(lambda: sum(range(1000))) >= 0
