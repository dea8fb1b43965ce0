"""Scaling out with Dask: cells run on workers, the client alone writes the results store.

See docs/harness.md#dask. ``run --workers N`` starts a local ``distributed.LocalCluster`` (N
worker processes, one thread each); ``run --scheduler ADDRESS`` uses an existing cluster, e.g.
one started on Slurm or PBS by dask-jobqueue. Either way:

* tasks call :func:`benchmark.run.runner.run_cell`, which writes nothing; workers return
  :class:`benchmark.run.results.CellResult` objects and the client writes each as its task
  completes (``as_completed``), so the store keeps its single writer and its crash safety;
* iterative and floor cells are one task each; the cells of one neural trained-sampler key
  (:attr:`Cell.train_key`) form a single task that runs them in order, so two workers never
  train the same key at once and the later cells load the weights the first one cached;
* the ``worker`` column of every row holds the Dask worker address (``tcp://host:port``)
  instead of ``host:pid``: that is how rows timed under parallel workers are marked (several
  workers per machine share its cores and memory bandwidth, so their seconds are not
  comparable with a sequential run's).

The trained-sampler cache directory must be reachable by every worker (a shared file system
on a cluster); the client passes it as an absolute path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.plan.cells import Cell, pin_provenance
from benchmark.plan.plan import Plan
from benchmark.run.results import CellResult, write_result
from benchmark.run.runner import failure_rows, one_line, run_cell
from benchmark.store import ResultsStore

if TYPE_CHECKING:
    from distributed import Client

#: Seconds to wait for a scheduler to answer, or for local workers to start.
CONNECT_TIMEOUT = 60


def task_groups(cells: Sequence[Cell]) -> list[list[Cell]]:
    """Cells grouped into tasks, in plan order.

    Iterative and floor cells are independent tasks; all cells sharing a neural train key
    are one task (run sequentially), so one trained sampler is trained by one worker only.
    """
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        key = f"train:{cell.train_key}" if cell.is_neural else f"cell:{cell.cell_id}"
        groups.setdefault(key, []).append(cell)
    return list(groups.values())


def run_cells(cells: Sequence[Cell], cache_dir: str, timeout: float | None,
              save_samples: bool, num_threads: int | None) -> list[CellResult]:
    """The worker task: run ``cells`` in order; rows carry this worker's address.

    Args:
        cells: one task group (see :func:`task_groups`).
        cache_dir: absolute path of the trained-sampler cache.
        timeout: per-cell time limit in seconds, or None.
        save_samples: return each cell's samples.
        num_threads: torch intra-op threads (None: the worker's setting, 1 thread per worker
            under ``--workers``, since Dask sets ``OMP_NUM_THREADS=1`` for its workers).
    """
    from distributed import get_worker

    pin_provenance()  # the worker imported this code for its first task: describe that code
    try:
        address = get_worker().address
    except ValueError:  # called outside a worker (tests, debugging)
        address = None
    results = []
    for cell in cells:
        result = run_cell(cell, cache_dir, timeout=timeout, save_samples=save_samples,
                          num_threads=num_threads)
        if address is not None:
            for row in result.rows:
                row["worker"] = address
        results.append(result)
    return results


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Client]:
    """A Dask client: on a new local cluster of ``workers`` processes, or on ``scheduler``.

    Args:
        workers: start ``LocalCluster(n_workers=workers, threads_per_worker=1,
            processes=True)`` and wait until every worker is up.
        scheduler: address of a running scheduler (``tcp://host:8786``); takes precedence.

    Raises:
        OSError: the scheduler could not be reached within :data:`CONNECT_TIMEOUT` seconds.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler, timeout=CONNECT_TIMEOUT) as client:
            yield client
        return
    if workers is None or workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    # No dashboard: it needs bokeh and a free port, and nobody watches it in a batch run.
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(workers, timeout=CONNECT_TIMEOUT)
        yield client


def run_matrix_distributed(plan: Plan, store: ResultsStore, cache_dir: str | os.PathLike,
                           client: Client, save_samples: bool | None = None
                           ) -> Iterator[tuple[Cell, list[dict]]]:
    """Like :func:`benchmark.run.runner.run_matrix`, with the cells run on ``client``'s workers.

    Yields ``(cell, rows)`` in completion order, after the client has written the cell. A task
    whose worker died (Dask gave up on it) stores its cells as ``failed`` with the error.
    """
    from distributed import as_completed

    pin_provenance()
    matrix = plan.matrix
    keep = matrix.save_samples if save_samples is None else save_samples
    # As in run_matrix: a cell another process finished since the plan was made is skipped.
    cells = [cell for cell in plan.todo if plan.force or not store.has_cell(cell.cell_id)]
    cache = str(Path(cache_dir).resolve())
    # pure=False: equal arguments must not share a key with another client's task on a
    # shared scheduler (their caches or stores may differ).
    futures = {client.submit(run_cells, group, cache, matrix.cell_timeout, keep,
                             matrix.num_threads, pure=False): group
               for group in task_groups(cells)}
    for future in as_completed(futures):
        group = futures.pop(future)
        try:
            results = future.result()
        except Exception as error:
            reason = f"worker failed: {one_line(error)}"
            results = [CellResult(failure_rows(cell, reason)) for cell in group]
        future.release()
        for cell, result in zip(group, results, strict=True):
            write_result(store, cell, result)
            yield cell, result.rows
