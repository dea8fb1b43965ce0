"""Writing cell results on the client: training history, sample files, then the cell's rows.

Only one process (the client) writes a results store; workers return :class:`CellResult`
objects. Sample files live beside the cell files (:data:`benchmark.store.SAMPLES_DIR`)::

    samples/<cell_id>.pt     {"samples": Tensor (n, dim) float32 CPU, plus what `evaluate`
                              needs to rebuild the evaluation: dtype, device, reference_seed}

and are read back by :func:`benchmark.store.load_samples`.

Order matters for crash safety: the samples file is written (temporary file, fsync, atomic
rename) *before* the cell's CSV, and a cell counts as finished only when its CSV exists, so a
finished cell that was asked to keep samples always has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from benchmark.store import ResultsStore, atomic_write, samples_path

if TYPE_CHECKING:
    from benchmark.plan.cells import Cell


@dataclass
class CellResult:
    """What one cell returns to whoever writes the store.

    Attributes:
        rows: one row per metric, with every column of :data:`benchmark.schema.COLUMNS`.
        samples: ``(n, dim)`` float32 CPU samples if they were asked for and drawn, else None.
        history: ``(train_key, rows)`` of the trained neural sampler used, else None.
    """

    rows: list[dict]
    samples: Tensor | None = None
    history: tuple[str, list[dict]] | None = None


def write_samples(store: ResultsStore, cell_id: str, samples: Tensor, /,
                  **metadata: Any) -> None:
    """Store ``samples`` ``(n, dim)`` (as float32 on the CPU) and ``metadata`` atomically."""
    payload = {"samples": samples.detach().to("cpu", torch.float32).contiguous(), **metadata}
    atomic_write(samples_path(store, cell_id), lambda stream: torch.save(payload, stream),
                 mode="wb")


def write_result(store: ResultsStore, cell: Cell, result: CellResult) -> None:
    """Write one finished cell: history (if any), samples (if kept), then its rows.

    Args:
        store: the results store.
        cell: the cell the result belongs to.
        result: what :func:`benchmark.run.runner.run_cell` returned for it.
    """
    if result.history is not None:
        store.write_history(*result.history)
    path = samples_path(store, cell.cell_id)
    if result.samples is not None:
        write_samples(store, cell.cell_id, result.samples, cell_id=cell.cell_id,
                      dtype=cell.dtype, device=cell.device, n=cell.n,
                      reference_seed=cell.reference_seed)
    elif path.exists():
        # A rerun (--force) without samples: a stale file must not pass for this run's.
        path.unlink()
    store.write_cell(cell.cell_id, result.rows)
