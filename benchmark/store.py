"""The results store: tidy rows, one CSV file per finished cell, written atomically.

Layout under the store's root directory::

    cells/<cell_id>.csv      one row per (cell, metric); the file exists iff the cell finished
    history/<train_key>.csv  training history of one trained neural sampler
    plan/<matrix>.csv        every cell the matrix plans (written by ``run``), so tables can
                             say which planned cells a partial store lacks
    samples/<cell_id>.pt     the samples of a cell run with ``save_samples`` (written by
                             :mod:`benchmark.run.results`; read here by ``evaluate`` and figures)

Why one file per cell: a file is written to a temporary name, flushed to disk and renamed into
place (``os.replace`` is atomic on POSIX), so killing the run at any moment loses at most the
cells in flight and can never leave a half-written row behind; resuming is an existence check;
the files are plain text, so committed reference results diff cleanly. Only one process (the
client) writes, so there is no locking.

This module is the one place that knows the store's layout, and it sits below every stage
(docs/harness.md#package-layout): planning records the plan, running writes cells and
histories, reporting reads them. It imports pandas but not torch, so ``table`` and ``compare``
start without loading torch; only :func:`load_samples` needs torch, and imports it when called.
The columns are those of :mod:`benchmark.schema`.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import pandas as pd

from benchmark.schema import (
    ADDED_COLUMNS,
    COLUMNS,
    DENOISE_SUFFIX,
    HISTORY_COLUMNS,
    PLAN_COLUMNS,
    TEXT_COLUMNS,
    StoreFileError,
)

#: Statuses of a cell file that count as finished; a ``failed`` cell is rerun on resume.
FINISHED_STATUSES: frozenset[str] = frozenset({"ok", "diverged"})

#: Temporary files older than this are leftovers of killed writes (a live write renames its
#: temporary file within milliseconds), so resuming may delete them even while another shard
#: writes into the same store.
STALE_TEMPORARY_SECONDS = 600.0

SAMPLES_DIR = "samples"
#: What ``evaluate`` reads from a samples file.
SAMPLES_KEYS = ("samples", "dtype", "device", "reference_seed")


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` with :func:`atomic_write` (tables, figures' callers)."""
    atomic_write(Path(path), lambda stream: stream.write(data), mode="wb")


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
                          self.root / SAMPLES_DIR, self.root / "tables"):
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
        """Store one training's history rows. ``params`` is written on the first row only: it is
        the same on every row of one training (~700 characters of JSON, which would be ~85% of a
        long training's file); :meth:`load_history` copies it back to the other rows."""
        frame = pd.DataFrame(list(rows), columns=list(HISTORY_COLUMNS))
        frame.loc[frame.index[1:], "params"] = ""
        _atomic_write_csv(self.history_dir / f"{train_key}.csv", frame)

    def load(self) -> pd.DataFrame:
        """Every stored row, sorted deterministically (so tables do not depend on file order).

        Cell files written before the ``denoise`` column existed get it from their sampler
        label, which then carried the flag as its ``DENOISE_SUFFIX`` (the only place the suffix
        is read: every other reader uses the column).
        """
        order = ["target", "sampler", "budget", "seed", "metric"]
        frame = self._load(self.cells_dir, COLUMNS, order)
        flag = frame["denoise"] if "denoise" in frame.columns else pd.Series(
            pd.NA, index=frame.index, dtype=object)
        legacy = flag.isna()
        flag = flag.where(~legacy, frame["sampler"].astype(str).str.endswith(DENOISE_SUFFIX))
        frame = frame.drop(columns="denoise", errors="ignore")
        frame.insert(COLUMNS.index("denoise"), "denoise", flag.astype(bool))
        return frame

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
        """Every stored history row (columns :data:`HISTORY_COLUMNS`), with ``params`` on every
        row again. Older files, which repeat it on every row, load the same."""
        frame = self._load(self.history_dir, HISTORY_COLUMNS, ["train_key", "metric", "iteration"])
        params = frame["params"].mask(frame["params"].eq(""))
        frame["params"] = params.groupby(frame["train_key"]).transform("first")
        return frame

    @staticmethod
    def _load(directory: Path, columns: tuple[str, ...], order: list[str]) -> pd.DataFrame:
        files = sorted(directory.glob("*.csv")) if directory.exists() else []
        if not files:
            return pd.DataFrame(columns=list(columns))
        # Identifiers are text: a hex cell id such as "2e54942334901554" would otherwise be
        # parsed as a float (inf), and an all-digit one as an integer.
        text = {column: str for column in columns if column in TEXT_COLUMNS}
        # One parse for all files that share a header (a store of 1,000+ cells loads in a
        # fraction of the time of one pandas call per file); each file is checked on its own
        # first, so a damaged one is named.
        bodies: dict[str, list[str]] = {}
        for path in files:
            header, body = _checked_text(path, columns)
            bodies.setdefault(header, []).append(body)
        frames = []
        for header, parts in bodies.items():
            content = header + "".join(parts)
            try:
                frames.append(pd.read_csv(io.StringIO(content), keep_default_na=False,
                                          na_values=["nan"], dtype=text))
            except (ValueError, pd.errors.ParserError) as error:
                # A value pandas cannot convert: find the file that holds it.
                for path in files:
                    _read_csv(path, columns, text)
                raise StoreFileError(f"unreadable results in '{directory}': {error}") from None
        frame = pd.concat(frames, ignore_index=True)
        return frame.sort_values(order, kind="mergesort").reset_index(drop=True)


_HINT = "delete it (a cell file: rerun `run` to redo the cell)"


def _checked_text(path: Path, columns: tuple[str, ...]) -> tuple[str, str]:
    """``(header line, remaining lines)`` of one store file, each ending in a newline, or
    :class:`StoreFileError` naming the file: undecodable, no header, a missing column, or rows
    whose field count differs from the header's (pandas would pad a short row with NaN, but a
    truncated or edited file is damage, never data)."""
    try:
        content = path.read_text(encoding="utf-8")
        rows = [row for row in csv.reader(io.StringIO(content)) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StoreFileError(f"unreadable results file '{path}': {reason}; {_HINT}") from None
    if not rows:
        raise StoreFileError(f"unreadable results file '{path}': empty; {_HINT}")
    if len({len(row) for row in rows}) > 1:
        raise StoreFileError(f"unreadable results file '{path}': rows with differing numbers "
                             f"of fields; {_HINT}")
    missing = [column for column in columns
               if column not in rows[0] and column not in ADDED_COLUMNS]
    if missing:
        raise StoreFileError(f"unreadable results file '{path}': missing column(s) "
                             f"{', '.join(missing[:3])}; {_HINT}")
    header, _, body = content.partition("\n")
    if body and not body.endswith("\n"):
        body += "\n"
    return header + "\n", body


def _read_csv(path: Path, columns: tuple[str, ...], text: dict) -> pd.DataFrame:
    """One store file on its own, or :class:`StoreFileError` naming it and what is wrong."""
    _checked_text(path, columns)
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=["nan"], dtype=text)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StoreFileError(f"unreadable results file '{path}': {reason}; {_HINT}") from None


def samples_path(store: ResultsStore, cell_id: str) -> Path:
    """Where the samples of ``cell_id`` are (or would be) stored."""
    return store.root / SAMPLES_DIR / f"{cell_id}.pt"


def load_samples(store: ResultsStore, cell_id: str,
                 required: tuple[str, ...] = SAMPLES_KEYS) -> dict[str, Any] | None:
    """The payload written by :func:`benchmark.run.results.write_samples`, or None if the cell
    kept no samples.

    Raises:
        StoreFileError: the file cannot be read, or lacks a key of ``required``.
    """
    # Imported here, not at the top: the store's tables and plans are read by `table` and
    # `compare`, which must start without loading torch; only sample files need it.
    import torch

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
