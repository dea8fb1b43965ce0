"""Running: cells of a :class:`~benchmark.plan.plan.Plan` into a results store.

* :mod:`benchmark.run.runner` — one cell (:func:`~benchmark.run.runner.run_cell`: sample,
  time, evaluate; writes nothing) and a plan's cells in this process
  (:func:`~benchmark.run.runner.run_matrix`);
* :mod:`benchmark.run.distributed` — the same on a Dask cluster, the client writing;
* :mod:`benchmark.run.deadline` — cooperative per-cell time limits;
* :mod:`benchmark.run.results` — writing a finished cell (history, samples, rows);
* :mod:`benchmark.run.evaluate` — ``evaluate``: metrics recomputed from stored samples.

May import: :mod:`benchmark.plan`, :mod:`benchmark.metrics`, :mod:`benchmark.fid`,
:mod:`benchmark.store`, :mod:`benchmark.schema`, ``targets`` and ``samplers``; never
``report``.
"""
