"""``LowestFirst``: the CPU's turns go to the lowest waiting frame number, one at a time."""

from __future__ import annotations

import threading
import time

from edvr_vs.turns import LowestFirst


def _waiting(turns: LowestFirst) -> int:
    with turns._cond:
        return len(turns._waiting)


def test_waiters_get_the_turn_lowest_key_first_and_alone():
    turns = LowestFirst()
    order: list[int] = []
    inside = []

    def request(key: int) -> None:
        with turns.turn(key):
            inside.append(key)
            assert len(inside) == 1, inside  # nobody else holds the turn
            order.append(key)
            time.sleep(0.002)
            inside.remove(key)

    keys = [7, 3, 9, 1, 3, 5]
    with turns.turn(0):  # hold the turn until every request waits for it
        threads = [threading.Thread(target=request, args=(k,)) for k in keys]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while _waiting(turns) < len(keys):
            assert time.monotonic() < deadline, "requests did not queue"
            time.sleep(0.001)
    for t in threads:
        t.join(10)
    assert order == sorted(keys)
    # a request arriving later with a lower key than one that waits still goes first
    with turns.turn(2):
        late = threading.Thread(target=request, args=(8,))
        late.start()
        while _waiting(turns) < 1:
            time.sleep(0.001)
        early = threading.Thread(target=request, args=(4,))
        early.start()
        while _waiting(turns) < 2:
            time.sleep(0.001)
    late.join(10)
    early.join(10)
    assert order[-2:] == [4, 8]


def test_an_error_inside_a_turn_releases_it():
    turns = LowestFirst()
    try:
        with turns.turn(1):
            raise RuntimeError("out of memory")
    except RuntimeError:
        pass
    done = threading.Event()

    def take() -> None:
        with turns.turn(2):
            done.set()

    threading.Thread(target=take).start()
    assert done.wait(5)
