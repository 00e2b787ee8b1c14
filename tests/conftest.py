"""Fixtures several test modules share."""

from __future__ import annotations

import pytest
import torch

from weightlab.lab.data import load_data


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for tiny models (faster, and immune to a busy second core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    """digits-lt at its default imbalance ratio (10), loaded once per module."""
    return load_data("digits-lt")
