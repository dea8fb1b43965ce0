"""Test tiers are folders: tests/<tier>/... gets the marker <tier> automatically.

Suite-wide false-failure budget: statistical tests are seeded, so they are deterministic; their
tolerances are nevertheless derived from n at a per-test two-sided level alpha = 1e-3 (stated in
each test), so that with the ~30 statistical checks of the suite an unlucky seed choice would
be a failure with probability below 3%, and re-seeding is never needed to pass.
"""

from pathlib import Path

import pytest

TIERS = ("fast", "statistical", "golden", "perf")


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture
def single_thread():
    """Run a test single-threaded: its tensors are tiny, and on a shared 2-core machine the
    intra-op thread pool only adds contention (measured 10-100x slower per op under load)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
