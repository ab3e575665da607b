import os

import pytest
import torch

# Keep the suite steady on a loaded 2-core machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_debug_leak(monkeypatch):
    """Each test starts without CONVVIT_DEBUG and leaves none behind: `--debug` sets it for child processes,
    and a leaked 1 would turn every later error line into a traceback."""
    monkeypatch.setenv("CONVVIT_DEBUG", "")
    yield
