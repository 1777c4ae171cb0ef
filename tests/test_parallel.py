"""ordered_map: parallel single-threaded streams with ordered results."""

import threading
import time

import pytest
import torch

from sklearn_arb.backbone._streams import ordered_map, torch_threads


def test_results_keep_the_order_of_the_items():
    # later items finish first; the results still come in order
    def slow_first(x):
        time.sleep(0.02 * (5 - x))
        return x, torch.get_num_threads(), threading.get_ident()

    caller_threads = torch.get_num_threads()
    results = list(ordered_map(slow_first, range(5), n_streams=2))
    assert [x for x, _, _ in results] == list(range(5))
    assert {threads for _, threads, _ in results} == {1}  # single-threaded streams
    assert len({ident for _, _, ident in results}) == 2
    assert torch.get_num_threads() == caller_threads


def test_one_stream_runs_every_call_on_one_single_threaded_worker():
    # One stream is a worker thread too: the calls run on one torch thread,
    # whatever the caller's count, so the results do not depend on it.
    caller_threads = torch.get_num_threads()
    with torch_threads(2):
        results = list(
            ordered_map(
                lambda _: (torch.get_num_threads(), threading.get_ident()),
                range(3),
                1,
            )
        )
    assert {threads for threads, _ in results} == {1}
    idents = {ident for _, ident in results}
    assert len(idents) == 1 and threading.get_ident() not in idents
    assert torch.get_num_threads() == caller_threads


def test_errors_propagate_and_stopping_early_cancels_the_queue():
    calls = []

    def record(x):
        calls.append(x)
        if x == 1:
            raise ValueError("item 1")
        time.sleep(0.01)
        return x

    with pytest.raises(ValueError, match="item 1"):
        list(ordered_map(record, range(100), n_streams=2))
    # at most 2 * n_streams calls were submitted ahead of the failing one
    assert len(calls) <= 1 + 4
