"""``evaluate``: recompute metrics from stored samples, without rerunning any sampler.

A cell run with ``save_samples`` (matrix key or ``run --save-samples``) has
``<store>/samples/<cell_id>.pt`` (:mod:`benchmark.run.results`). For each such cell this
module rebuilds the target from the rows' ``target_name`` / ``target_params`` and the file's
dtype, and calls :func:`benchmark.run.runner.evaluate_samples` — the function the runner uses —
with the cell's ``reference_seed``, so the evaluation reference set and metric generators are
the runner's and a recomputed value equals the stored one exactly (same device, same code,
float32 runs; a float64 run is re-evaluated from its float32 samples, so to float32 precision).

Metrics of the chain trace (``ess``) cannot be recomputed, since stored samples keep no trace:
by default they are left as stored; asked for by name they come back NaN with that reason.

Recomputed rows keep the cell's identity and sampling costs (``nfe``, ``*_seconds`` of
training and sampling) from the store; ``metric_seconds`` and the columns saying who computed
the value (worker, threads, versions, git commit, timestamp) are the evaluation's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pandas as pd

from benchmark.metrics.info import needs_trace
from benchmark.plan.cells import build_target
from benchmark.run.runner import evaluate_samples, runtime_provenance
from benchmark.schema import COLUMNS
from benchmark.store import ResultsStore, load_samples


@dataclass
class EvaluatedCell:
    """One stored cell and, if it kept samples, its recomputed rows.

    Attributes:
        cell_id: the cell.
        stored: its stored rows (a DataFrame with the columns of ``COLUMNS``).
        rows: recomputed rows, one per requested metric; None without a samples file.
        payload: the samples file's content; None without one.
    """

    cell_id: str
    stored: pd.DataFrame
    rows: list[dict] | None
    payload: dict | None

    def merged(self, metrics: Sequence[str] | None = None) -> list[dict]:
        """Stored rows with the recomputed metrics replaced or added (the cell's new file).

        A ``failed`` cell has no samples; it gets a failed row (same reason) for each of
        ``metrics`` it lacks, so every cell of the new store has every metric, as after a run.
        """
        if self.rows is None:
            rows = self.stored.to_dict("records")
            if (self.stored["status"] == "failed").all():
                have = set(self.stored["metric"])
                rows += [{**rows[0], "metric": metric} for metric in metrics or []
                         if metric not in have]
            return rows
        recomputed = {row["metric"] for row in self.rows}
        kept = self.stored[~self.stored["metric"].isin(recomputed)].to_dict("records")
        return kept + self.rows


def evaluate_cell(stored: pd.DataFrame, payload: dict, metrics: Sequence[str],
                  device: str | None = None) -> list[dict]:
    """Recompute ``metrics`` for one cell from its samples.

    Args:
        stored: the cell's stored rows (at least one).
        payload: its samples file: ``samples`` ``(n, dim)`` float32, ``dtype``, ``device``,
            ``reference_seed``.
        metrics: metric names.
        device: evaluate on this device instead of the one the cell ran on.

    Returns:
        One row per metric with every column of :data:`benchmark.schema.COLUMNS`.
    """
    template = stored.iloc[0].to_dict()
    target = build_target(template["target_name"], json.loads(template["target_params"]),
                          device or payload["device"], payload["dtype"])
    status, evaluated = evaluate_samples(payload["samples"], target, metrics,
                                         n=int(template["n"]),
                                         reference_seed=int(payload["reference_seed"]),
                                         target_label=str(template["target"]))
    base = {**template, **runtime_provenance(), "status": status}
    return [{**base, **row} for row in evaluated]


def evaluate_store(store: ResultsStore, metrics: Sequence[str] | None = None,
                   device: str | None = None) -> Iterator[EvaluatedCell]:
    """Every stored cell, with its metrics recomputed where it kept samples.

    Args:
        store: the results store.
        metrics: metrics to compute (default: those stored for each cell).
        device: evaluate on this device instead of each cell's own.
    """
    rows = store.load()
    for cell_id, stored in rows.groupby("cell_id", sort=True):
        stored = stored[list(COLUMNS)].reset_index(drop=True)
        payload = load_samples(store, str(cell_id))
        if payload is None:
            yield EvaluatedCell(str(cell_id), stored, None, None)
            continue
        # By default not the metrics of the chain trace (ess): stored samples keep no trace,
        # so recomputing would replace a stored value by NaN; asked for by name, they get
        # NaN with that reason.
        wanted = (list(metrics) if metrics else
                  [m for m in dict.fromkeys(stored["metric"]) if not needs_trace([m])])
        yield EvaluatedCell(str(cell_id), stored,
                            evaluate_cell(stored, payload, wanted, device), payload)
