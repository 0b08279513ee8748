"""The loader: background-thread prefetching keeps order, surfaces errors, stops cleanly;
worker defaults per device."""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from neurofeat.extract.dataset import BackgroundLoader, make_loader  # noqa: E402
from neurofeat.extract.devices import default_workers  # noqa: E402


class _Items(torch.utils.data.Dataset):
    """Item i is i; item *bad* raises; every get is recorded with its thread."""

    def __init__(self, n, bad=None):
        self.n, self.bad, self.seen = n, bad, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.seen.append((i, threading.current_thread().name))
        if i == self.bad:
            raise RuntimeError(f"item {i} is broken")
        return i


def _prefetchers():
    return [t for t in threading.enumerate() if t.name == "neurofeat-prefetch"]


def test_background_loader_keeps_order_and_runs_in_another_thread():
    items = _Items(25)
    loader = BackgroundLoader(torch.utils.data.DataLoader(items, batch_size=None, num_workers=0), depth=3)
    assert len(loader) == 25
    assert list(loader) == list(range(25))
    assert {name for _, name in items.seen} == {"neurofeat-prefetch"}
    assert list(loader) == list(range(25))  # iterable again
    assert not _prefetchers()


def test_an_error_while_preparing_is_raised_where_the_item_would_be():
    loader = BackgroundLoader(torch.utils.data.DataLoader(_Items(10, bad=6), batch_size=None), depth=2)
    got = []
    with pytest.raises(RuntimeError, match="item 6 is broken"):
        for item in loader:
            got.append(item)
    assert got == [0, 1, 2, 3, 4, 5]  # nothing silently dropped, nothing after the error
    assert not _prefetchers()


def test_leaving_the_loop_early_stops_the_thread_and_bounds_lookahead():
    items = _Items(1000)
    loader = BackgroundLoader(torch.utils.data.DataLoader(items, batch_size=None), depth=2)
    for item in loader:
        if item == 3:
            time.sleep(0.2)  # let the producer run ahead as far as it can
            break
    assert not _prefetchers()
    assert len(items.seen) <= 3 + 1 + 2 + 1  # consumed + depth queued + one in hand


def test_make_loader_uses_the_thread_for_zero_workers_and_processes_otherwise():
    assert isinstance(make_loader(_Items(4), batch_size=2, workers=0), BackgroundLoader)
    assert isinstance(make_loader(_Items(4), batch_size=2, workers=1), torch.utils.data.DataLoader)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        BackgroundLoader([], depth=0)


def test_default_workers_per_device():
    assert default_workers(torch.device("cpu"), cpu_count=64) == 0
    assert default_workers(torch.device("cuda"), cpu_count=16) == 8
    assert default_workers(torch.device("cuda"), cpu_count=4) == 3
    assert default_workers(torch.device("cuda"), cpu_count=1) == 1


def test_make_loader_can_load_in_the_loop_itself():
    loader = make_loader(_Items(4), batch_size=2, workers=0, background=False)
    assert isinstance(loader, torch.utils.data.DataLoader)
