"""CI exercises the main job, and committed tables stay pure functions of committed stores.

* A tiny matrix goes through ``run -> table -> compare`` against the committed baseline
  ``results/ci-tiny`` (runs are seeded and CPU-deterministic, so an unchanged code base passes
  the regression gate, and a sampler change that moves a value beyond the noise fails it).
* Every committed ``results/<store>/tables/`` is regenerated from its store into a temporary
  folder and compared byte for byte, so no table can be hand-edited or left stale.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.report.tables import write_tables
from benchmark.store import ResultsStore

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
STORES = sorted(path.parent for path in RESULTS.glob("*/tables")
                if (path.parent / "cells").is_dir())


def test_main_job_runs_tabulates_and_matches_the_committed_baseline(tmp_path, capsys):
    out = tmp_path / "ci-tiny"
    code = main(["run", str(ROOT / "tests" / "data" / "ci-tiny.toml"), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), "--no-figures"])
    assert code == 0
    assert (out / "tables" / "ksd.md").exists()
    assert main(["table", str(out)]) == 0
    capsys.readouterr()
    assert main(["compare", str(RESULTS / "ci-tiny"), str(out)]) == 0
    report = capsys.readouterr().out
    assert "20 groups compared: 0 regressions" in report


def test_there_are_committed_stores_with_tables():
    assert len(STORES) >= 2, STORES


@pytest.mark.parametrize("store", STORES, ids=[store.name for store in STORES])
def test_committed_tables_regenerate_byte_for_byte(store, tmp_path):
    results = ResultsStore(store)
    # As `table` does: the cells the recorded plans name (superseded cells stay on disk).
    rows, history = results.load_current()
    write_tables(rows, tmp_path, plan=results.load_plan(), history=history)
    committed = sorted(p.name for p in (store / "tables").iterdir())
    regenerated = sorted(p.name for p in tmp_path.iterdir())
    assert committed == regenerated
    for name in committed:
        assert (tmp_path / name).read_bytes() == (store / "tables" / name).read_bytes(), name
