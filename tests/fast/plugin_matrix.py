"""``parse_matrix`` for tests whose matrices name the test plugins kept in this folder.

The test plugins (``toy_plugins``, ``slow_plugins``, and some test modules themselves) live
beside the tests. The import-path policy (``benchmark.plan.plugins``) imports a plugin only
from a folder the matrix names, so these tests parse their matrices with this folder among
the search folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.plan.matrix import Matrix
from benchmark.plan.matrix import parse_matrix as parse_matrix_in

PLUGIN_DIR = Path(__file__).resolve().parent


def parse_matrix(data: dict[str, Any], **kwargs: Any) -> Matrix:
    """:func:`benchmark.plan.matrix.parse_matrix` with :data:`PLUGIN_DIR` searched."""
    return parse_matrix_in(data, search_dirs=(PLUGIN_DIR,), **kwargs)
