"""The adaptive request size of sync batches (fi_evals.batch.sizing, issue 20): pure units."""

from __future__ import annotations

import pytest

from fi_evals.batch.sizing import ChunkSizer

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


def test_fast_full_requests_double_the_size_up_to_the_maximum() -> None:
    sizer = ChunkSizer(50, 500, workers=8, read_timeout=60.0)
    for _ in range(10):
        sizer.observe(sizer.size, 0.05)
    assert sizer.size == 500
    assert sizer.history == [50, 100, 200, 400, 500]


def test_a_request_smaller_than_the_size_does_not_grow_it() -> None:
    sizer = ChunkSizer(50, 500, workers=8, read_timeout=60.0)
    sizer.observe(20, 0.01)  # the tail of the input, or an answer sent before the last growth
    assert sizer.size == 50


def test_slow_requests_keep_the_size() -> None:
    # A judge-like template: 40 rows at 50 ms each take 2 s, more than "fast" (1 s).
    sizer = ChunkSizer(40, 500, workers=32, read_timeout=60.0)
    for _ in range(20):
        sizer.observe(40, 2.0)
    assert sizer.size == 40 and sizer.history == [40]


def test_near_the_read_timeout_the_size_halves() -> None:
    sizer = ChunkSizer(50, 500, workers=8, read_timeout=60.0)
    for _ in range(4):
        sizer.observe(sizer.size, 0.05)
    assert sizer.size == 500
    sizer.observe(500, 20.0)  # a third of the read timeout
    assert sizer.size == 250


def test_a_server_that_slows_down_halves_the_size() -> None:
    sizer = ChunkSizer(100, 500, workers=8, read_timeout=60.0)
    sizer.observe(100, 0.1)  # 1 ms per row
    sizer.observe(200, 0.2)
    assert sizer.size == 400
    sizer.observe(400, 2.0)  # 5 ms per row, and no longer fast: the server slowed
    assert sizer.size == 200
    sizer.observe(200, 0.9)  # 4.5 ms per row, but fast again: it may grow back
    assert sizer.size == 400


def test_the_tail_of_slow_requests_spreads_over_the_workers() -> None:
    sizer = ChunkSizer(50, 500, workers=8, read_timeout=60.0)
    sizer.observe(50, 0.5)  # 10 ms per row: 500 rows would take 5 s, not "fast"
    assert sizer.size == 100
    assert sizer.next_size(None) == 100
    assert sizer.next_size(10_000) == 100
    assert sizer.next_size(800) == 50  # 8 workers x 2 chunks for the rows left: 50 each...
    assert sizer.next_size(100) == 50  # ...never below the start size


def test_the_tail_of_quick_requests_keeps_the_size() -> None:
    sizer = ChunkSizer(50, 500, workers=8, read_timeout=60.0)
    for _ in range(4):
        sizer.observe(sizer.size, 0.02)
    assert sizer.next_size(800) == 500  # 500 rows take ~20 ms: an uneven tail costs nothing
