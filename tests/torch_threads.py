"""A fixture for tests of tiny models (a unique module name: tests/ has no packages)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one intra-op thread; on a loaded machine, much faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
