"""One torch thread while a block runs: tiny models run fastest on one thread, and a second OpenMP thread stalls
badly on a shared 2-core machine. Imported by the conftests of the test folders that train tiny models."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
