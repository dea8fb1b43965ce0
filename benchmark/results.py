"""Writing cell results on the client: training history, sample files, then the cell's rows.

Only one process (the client) writes a results store; workers return
:class:`benchmark.runner.CellResult` objects. Sample files live beside the cell files::

    samples/<cell_id>.pt     {"samples": Tensor (n, dim) float32 CPU, plus what `evaluate`
                              needs to rebuild the evaluation: dtype, device, reference_seed}

Order matters for crash safety: the samples file is written (temporary file, fsync, atomic
rename) *before* the cell's CSV, and a cell counts as finished only when its CSV exists, so a
finished cell that was asked to keep samples always has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from benchmark.store import ResultsStore, StoreFileError, atomic_write

if TYPE_CHECKING:
    from benchmark.cells import Cell
    from benchmark.runner import CellResult

SAMPLES_DIR = "samples"
#: What ``evaluate`` reads from a samples file.
SAMPLES_KEYS = ("samples", "dtype", "device", "reference_seed")


def samples_path(store: ResultsStore, cell_id: str) -> Path:
    """Where the samples of ``cell_id`` are (or would be) stored."""
    return store.root / SAMPLES_DIR / f"{cell_id}.pt"


def write_samples(store: ResultsStore, cell_id: str, samples: Tensor, /,
                  **metadata: Any) -> None:
    """Store ``samples`` ``(n, dim)`` (as float32 on the CPU) and ``metadata`` atomically."""
    payload = {"samples": samples.detach().to("cpu", torch.float32).contiguous(), **metadata}
    atomic_write(samples_path(store, cell_id), lambda stream: torch.save(payload, stream),
                 mode="wb")


def load_samples(store: ResultsStore, cell_id: str,
                 required: tuple[str, ...] = SAMPLES_KEYS) -> dict[str, Any] | None:
    """The payload written by :func:`write_samples`, or None if the cell kept no samples.

    Raises:
        StoreFileError: the file cannot be read, or lacks a key of ``required``.
    """
    path = samples_path(store, cell_id)
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - truncated, garbage or not a torch file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StoreFileError(f"unreadable samples file '{path}': {reason[:120]}; delete it "
                             f"(rerun the cell with --force --save-samples to remake it)") from None
    missing = [key for key in required if not isinstance(payload, dict) or key not in payload]
    if missing:
        raise StoreFileError(f"samples file '{path}' lacks {', '.join(missing)}; delete it "
                             f"(rerun the cell with --force --save-samples to remake it)")
    return payload


def write_result(store: ResultsStore, cell: Cell, result: CellResult) -> None:
    """Write one finished cell: history (if any), samples (if kept), then its rows.

    Args:
        store: the results store.
        cell: the cell the result belongs to.
        result: what :func:`benchmark.runner.run_cell` returned for it.
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
