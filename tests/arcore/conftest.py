"""Fixtures for the library tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_torch_thread():
    """torch on one intra-op thread for the test (bit-identical comparisons, and no oversubscription
    of the 2-core CI machine), restored afterwards. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; other library tests do not import torch."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
