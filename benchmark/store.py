"""The results store: tidy rows, one CSV file per finished cell, written atomically.

Layout under the store's root directory::

    cells/<cell_id>.csv      one row per (cell, metric); the file exists iff the cell finished
    history/<train_key>.csv  training history of one trained neural sampler
    plan/<matrix>.csv        every cell the matrix plans (written by ``run``), so tables can
                             say which planned cells a partial store lacks

Why one file per cell: a file is written to a temporary name, flushed to disk and renamed into
place (``os.replace`` is atomic on POSIX), so killing the run at any moment loses at most the
cells in flight and can never leave a half-written row behind; resuming is an existence check;
the files are plain text, so committed reference results diff cleanly. Only one process (the
client) writes, so there is no locking.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO

import pandas as pd

#: The fixed schema of a result row (docs/harness.md#row-schema). Order is the column order.
COLUMNS: tuple[str, ...] = (
    "matrix",           # matrix name
    "cell_id",          # hash of (matrix seed, target, sampler, params, budget, seed, n, dtype)
    "target",           # target label as written in tables (e.g. "gaussian_d10")
    "target_name",      # registry name or import path
    "target_params",    # canonical JSON
    "sampler",          # sampler label (e.g. "dft_ns_partial"); "reference" for floor rows
    "sampler_name",     # registry name or import path
    "params",           # canonical JSON of the *resolved* sampler parameters
    "budget",           # transitions (iterative) or generator passes (neural); 0 for floor rows
    "seed",             # the matrix-level seed of this replicate
    "cell_seed",        # the seed actually used, hashed from the cell's identity
    "n",                # number of samples evaluated
    "status",           # ok | diverged | failed
    "metric",           # metric name
    "value",            # metric value (NaN when not computed; see reason)
    "reason",           # why a value is missing or non-finite; empty otherwise
    "nfe",              # target evaluations per particle while sampling
    "train_nfe",        # target evaluations during training, total rows (neural only)
    "train_hvp",        # Hessian-vector products during training, total rows (neural only)
    "train_iterations", # training iterations (neural only)
    "train_seconds",    # training wall-clock (neural only; reused from cache when cached)
    "sample_seconds",   # sampling wall-clock for n samples, after warm-up, device-synchronised
    "metric_seconds",   # time spent computing this metric
    "device",           # e.g. cpu, cuda:0
    "num_threads",      # torch intra-op threads
    "worker",           # who ran the cell (host:pid or a Dask worker address)
    "torch_version",
    "package_version",
    "git_commit",
    "timestamp",        # ISO 8601 UTC, when the cell finished
)

#: Columns read back as text whatever they look like (ids, hashes, labels, versions).
TEXT_COLUMNS: frozenset[str] = frozenset({
    "matrix", "cell_id", "train_key", "target", "target_name", "target_params", "sampler",
    "sampler_name", "params", "status", "metric", "reason", "device", "worker", "torch_version",
    "package_version", "git_commit", "timestamp"})

#: One planned cell of a matrix (``plan/<matrix>.csv``).
PLAN_COLUMNS: tuple[str, ...] = ("matrix", "cell_id", "target", "sampler", "budget", "seed")

HISTORY_COLUMNS: tuple[str, ...] = ("train_key", "target", "sampler", "params", "seed",
                                    "iteration", "metric", "value")


#: Statuses of a cell file that count as finished; a ``failed`` cell is rerun on resume.
FINISHED_STATUSES: frozenset[str] = frozenset({"ok", "diverged"})

#: Temporary files older than this are leftovers of killed writes (a live write renames its
#: temporary file within milliseconds), so resuming may delete them even while another shard
#: writes into the same store.
STALE_TEMPORARY_SECONDS = 600.0


class StoreFileError(ValueError):
    """A results file that cannot be read; the message names it in one line."""


def atomic_write(path: Path, write: Callable[[IO], None], mode: str = "w") -> None:
    """Write ``path`` so that it either appears complete or not at all.

    ``write(stream)`` fills a temporary file in the same directory, which is flushed, fsynced
    and renamed into place (``os.replace`` is atomic on POSIX).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **({"newline": ""} if "b" not in mode else {})) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes files private; results are for sharing
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _atomic_write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda stream: frame.to_csv(stream, index=False, na_rep="nan"))


class ResultsStore:
    """A directory of finished cells and training histories.

    Args:
        root: the store's directory (created on first write).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"
        self.history_dir = self.root / "history"
        self.plan_dir = self.root / "plan"

    def has_cell(self, cell_id: str) -> bool:
        """Whether ``cell_id`` finished (:meth:`cell_status` is ``"finished"``)."""
        return self.cell_status(cell_id) == "finished"

    def cell_status(self, cell_id: str) -> str:
        """``"missing"``, ``"finished"`` (status ok or diverged), ``"failed"`` (rerun on
        resume) or ``"unreadable"`` (no rows, a wrong header or undecodable: rerun too)."""
        path = self.cells_dir / f"{cell_id}.csv"
        if not path.exists():
            return "missing"
        try:
            with path.open(newline="", encoding="utf-8") as stream:
                reader = csv.reader(stream)
                header = next(reader, None)
                if header is None or "status" not in header:
                    return "unreadable"
                column = header.index("status")
                statuses = {row[column] for row in reader if len(row) == len(header)}
        except (OSError, UnicodeDecodeError, csv.Error):
            return "unreadable"
        if not statuses:
            return "unreadable"
        return "finished" if statuses <= FINISHED_STATUSES else "failed"

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary files that killed writes left behind; return their paths."""
        removed = []
        now = time.time()
        for directory in (self.cells_dir, self.history_dir, self.plan_dir,
                          self.root / "samples", self.root / "tables"):
            for path in directory.glob(".*.tmp") if directory.exists() else ():
                try:
                    if now - path.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                        path.unlink()
                        removed.append(path)
                except FileNotFoundError:  # renamed or removed meanwhile
                    continue
        return removed

    def write_cell(self, cell_id: str, rows: Iterable[Mapping]) -> None:
        """Store all rows of one finished cell at once (atomically)."""
        frame = pd.DataFrame(list(rows))
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"result rows lack columns: {', '.join(missing)}")
        _atomic_write_csv(self.cells_dir / f"{cell_id}.csv", frame[list(COLUMNS)])

    def has_history(self, train_key: str) -> bool:
        return (self.history_dir / f"{train_key}.csv").exists()

    def write_history(self, train_key: str, rows: Iterable[Mapping]) -> None:
        frame = pd.DataFrame(list(rows), columns=list(HISTORY_COLUMNS))
        _atomic_write_csv(self.history_dir / f"{train_key}.csv", frame)

    def load(self) -> pd.DataFrame:
        """Every stored row, sorted deterministically (so tables do not depend on file order)."""
        order = ["target", "sampler", "budget", "seed", "metric"]
        return self._load(self.cells_dir, COLUMNS, order)

    def load_current(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The rows and training histories reports read: those of cells the recorded plans
        still name.

        When a sampler's default changes, its matrix plans new cells (new ids). The old
        cells stay on disk — nothing is ever deleted — but no longer belong to any matrix run
        into the store, and mixing them with the new ones under the same label would average
        two configurations. Tables, figures and ``compare`` therefore read only planned cells
        (and the histories of those cells' trainings). A store without a recorded plan (made
        before plans were recorded) reports everything.

        Returns:
            ``(rows, history)`` in the schemas of :meth:`load` and :meth:`load_history`.
        """
        rows, history, plan = self.load(), self.load_history(), self.load_plan()
        if plan.empty:
            return rows, history
        rows = rows[rows["cell_id"].isin(set(plan["cell_id"]))].reset_index(drop=True)
        # A training is identified in both files by target, sampler label, params and seed.
        key = ["target", "sampler", "params", "seed"]
        current = set(map(tuple, rows[key].astype(str).drop_duplicates().to_numpy()))
        planned = pd.Series([tuple(k) in current for k in history[key].astype(str).to_numpy()],
                            index=history.index, dtype=bool)  # a boolean mask even when empty
        return rows, history[planned].reset_index(drop=True)

    def write_plan(self, matrix: str, cells: Iterable[Mapping]) -> None:
        """Record the cells ``matrix`` plans (rows with :data:`PLAN_COLUMNS`), replacing its
        previous plan."""
        frame = pd.DataFrame([{**cell, "matrix": matrix} for cell in cells],
                             columns=list(PLAN_COLUMNS))
        _atomic_write_csv(self.plan_dir / f"{matrix}.csv", frame)

    def load_plan(self) -> pd.DataFrame:
        """Every planned cell of every matrix run into this store (empty if none recorded)."""
        return self._load(self.plan_dir, PLAN_COLUMNS, ["target", "sampler", "budget", "seed",
                                                        "cell_id"])

    def load_history(self) -> pd.DataFrame:
        return self._load(self.history_dir, HISTORY_COLUMNS, ["train_key", "metric", "iteration"])

    @staticmethod
    def _load(directory: Path, columns: tuple[str, ...], order: list[str]) -> pd.DataFrame:
        files = sorted(directory.glob("*.csv")) if directory.exists() else []
        if not files:
            return pd.DataFrame(columns=list(columns))
        # Identifiers are text: a hex cell id such as "2e54942334901554" would otherwise be
        # parsed as a float (inf), and an all-digit one as an integer.
        text = {column: str for column in columns if column in TEXT_COLUMNS}
        frame = pd.concat([_read_csv(f, columns, text) for f in files], ignore_index=True)
        return frame.sort_values(order, kind="mergesort").reset_index(drop=True)


def _read_csv(path: Path, columns: tuple[str, ...], text: dict) -> pd.DataFrame:
    """One store file, or :class:`StoreFileError` naming it and what is wrong."""
    hint = "delete it (a cell file: rerun `run` to redo the cell)"
    try:
        content = path.read_text(encoding="utf-8")
        # pandas pads a short row with NaN; a row whose field count differs from the header's
        # is damage (a truncated or edited file), never data.
        widths = {len(row) for row in csv.reader(io.StringIO(content)) if row}
        if len(widths) > 1:
            raise ValueError("rows with differing numbers of fields")
        frame = pd.read_csv(io.StringIO(content), keep_default_na=False, na_values=["nan"],
                            dtype=text)
    except (ValueError, OSError, csv.Error, pd.errors.ParserError,
            pd.errors.EmptyDataError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StoreFileError(f"unreadable results file '{path}': {reason}; {hint}") from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise StoreFileError(f"unreadable results file '{path}': missing column(s) "
                             f"{', '.join(missing[:3])}; {hint}")
    return frame
