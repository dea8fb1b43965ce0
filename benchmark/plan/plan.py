"""The plan of one ``run``: the matrix's cells and which of them this invocation runs, decided
once before any cell runs and handed as one :class:`Plan` to the sequential runner
(:func:`benchmark.run.runner.run_matrix`) or the Dask runner
(:func:`benchmark.run.distributed.run_matrix_distributed`).

The steps, in the order ``python -m benchmark run`` takes them (docs/harness.md#run):

1. :func:`benchmark.plan.cells.plan_cells` expands the whole matrix once; the store records
   those cells (``plan/<matrix>.csv``) whatever ``--target`` and ``--shard`` pick, so tables can
   list what a partial store still lacks;
2. :func:`select_targets` keeps the ``--target`` labels (:func:`select_samplers` the
   ``--sampler`` ones), :func:`drop_unavailable_targets` drops
   targets whose data is missing here (with the reason), :func:`check_targets` builds each kept
   target once so a bad parameter or file stops the run before any cell;
3. :func:`make_plan` keeps the expanded cells of the kept targets in this ``--shard`` and
   looks each up in the store: finished cells are skipped unless ``--force``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from benchmark.plan.cells import Cell, build_target, in_shard, plan_cells
from benchmark.plan.matrix import Matrix, resolve
from benchmark.schema import MatrixError
from benchmark.store import ResultsStore


@dataclass(frozen=True)
class Plan:
    """What one ``run`` does.

    Attributes:
        matrix: the matrix as run (``--target`` applied, unavailable targets dropped); its
            ``cell_timeout``, ``save_samples`` and ``num_threads`` apply to every cell.
        planned: every cell of the whole matrix, in plan order (what the store records).
        cells: the cells of this invocation: the kept targets' cells of ``planned`` in
            ``shard``, in plan order.
        todo: the cells of ``cells`` to run: all of them with ``force``, else those the store
            did not hold as finished when the plan was made.
        status: :meth:`ResultsStore.cell_status` of each of ``cells`` when planned, by cell id.
        shard: ``(index, count)``, or None for every cell.
        force: rerun finished cells too.
    """

    matrix: Matrix
    planned: tuple[Cell, ...]
    cells: tuple[Cell, ...]
    todo: tuple[Cell, ...]
    status: Mapping[str, str]
    shard: tuple[int, int] | None = None
    force: bool = False

    def records(self) -> list[dict]:
        """``planned`` as rows for :meth:`ResultsStore.write_plan`."""
        return [{"cell_id": c.cell_id, "target": c.target.label, "sampler": c.sampler_label,
                 "budget": c.budget, "seed": c.seed} for c in self.planned]


def select_targets(matrix: Matrix, labels: Sequence[str]) -> Matrix:
    """The matrix with only the targets labelled ``labels`` (``run --target``).

    The cells kept are exactly the full matrix's cells of those targets, with the same cell
    ids, so a restricted run fills the same store as the full one.

    Raises:
        MatrixError: a label is not a target of the matrix (the message lists the valid ones).
    """
    return _select(matrix, "targets", "target", labels)


def select_samplers(matrix: Matrix, labels: Sequence[str]) -> Matrix:
    """The matrix with only the sampler entries labelled ``labels`` (``run --sampler``).

    Like :func:`select_targets`: the kept cells are the full matrix's cells of those entries
    (same ids), and the floor cells stay, so the tables of a partial run have their floors.

    Raises:
        MatrixError: a label is not a sampler entry of the matrix (the message lists them).
    """
    return _select(matrix, "samplers", "sampler", labels)


def _select(matrix: Matrix, field: str, flag: str, labels: Sequence[str]) -> Matrix:
    """``matrix`` with only the entries of ``matrix.<field>`` labelled ``labels``; the error
    names the command-line flag ``--<flag>``."""
    entries = getattr(matrix, field)
    known = [spec.label for spec in entries]
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise MatrixError(f"--{flag}: matrix '{matrix.name}' has no {flag} '{unknown[0]}'; "
                          f"valid choices: {', '.join(known)}")
    return dataclasses.replace(
        matrix, **{field: tuple(spec for spec in entries if spec.label in labels)})


def drop_unavailable_targets(matrix: Matrix) -> tuple[Matrix, dict[str, str]]:
    """The matrix without targets whose data is missing here, and why each was dropped.

    A target class may define ``unavailable_reason(**params) -> str | None`` (e.g. BLR on
    Covertype offline); such targets are skipped with that reason rather than failing every
    cell.
    """
    from targets import TARGETS

    reasons = {}
    for index, spec in enumerate(matrix.targets):
        check = resolve("target", spec.name, TARGETS, spec.plugin_dir).unavailable_reason
        try:
            reason = check(**dict(spec.params))
        except Exception as error:  # noqa: BLE001 - bad params: the constructor's reason
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise MatrixError(f"targets[{index}] ('{spec.label}'): cannot build target "
                              f"'{spec.name}' with params {dict(spec.params)}: {message}") from None
        if reason:
            reasons[spec.label] = reason
    kept = tuple(spec for spec in matrix.targets if spec.label not in reasons)
    return dataclasses.replace(matrix, targets=kept), reasons


def check_targets(matrix: Matrix) -> None:
    """Build every target of ``matrix`` once, so bad parameters and missing or unreadable files
    (EBM checkpoints, parameter files, datasets) stop the run before any cell does.

    Also refuses ``denoise = true`` for a sampler on a target without ``denoise_sigma``.

    Raises:
        MatrixError: one line naming the target entry and what is wrong.
    """
    for index, spec in enumerate(matrix.targets):
        where = f"targets[{index}] ('{spec.label}')"
        try:
            target = build_target(spec.name, dict(spec.params), matrix.device, matrix.dtype,
                                  spec.plugin_dir)
        except MatrixError:
            raise
        except Exception as error:  # noqa: BLE001 - the constructor's reason, one line
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise MatrixError(f"{where}: cannot build target '{spec.name}' with params "
                              f"{dict(spec.params)}: {reason}") from None
        for sampler in matrix.samplers:
            runs_here = sampler.targets is None or spec.label in sampler.targets
            if sampler.denoise and runs_here and target.denoise_sigma is None:
                raise MatrixError(f"samplers '{sampler.label}': denoise = true, but target "
                                  f"'{spec.label}' has no denoise_sigma; restrict the entry "
                                  f"with targets = [...] to targets that have one")


def make_plan(matrix: Matrix, store: ResultsStore, *, planned: Sequence[Cell] | None = None,
              shard: tuple[int, int] | None = None, force: bool = False) -> Plan:
    """The plan of running ``matrix`` into ``store``.

    Args:
        matrix: the matrix to run, after :func:`select_targets`, :func:`select_samplers`
            and :func:`drop_unavailable_targets` if those apply.
        store: where finished cells are looked up.
        planned: the cells of the whole matrix ``matrix`` was selected from, as
            :func:`~benchmark.plan.cells.plan_cells` gave them; default: those of ``matrix``.
            Selecting targets keeps each cell's identity, so the cells of ``matrix`` are
            exactly those of ``planned`` on its targets and nothing is expanded twice.
        shard: run only shard ``(index, count)`` (:func:`~benchmark.plan.cells.in_shard`).
        force: rerun cells the store holds as finished.
    """
    planned = tuple(plan_cells(matrix) if planned is None else planned)
    labels = {spec.label for spec in matrix.targets}
    samplers = {spec.label for spec in matrix.samplers}
    cells = tuple(c for c in planned
                  if c.target.label in labels
                  and (c.sampler is None or c.sampler.label in samplers)  # floors always
                  and in_shard(c, shard))
    status = {c.cell_id: store.cell_status(c.cell_id) for c in cells}
    todo = tuple(c for c in cells if force or status[c.cell_id] != "finished")
    return Plan(matrix=matrix, planned=planned, cells=cells, todo=todo, status=status,
                shard=shard, force=force)
