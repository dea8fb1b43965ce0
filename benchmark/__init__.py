"""sampler-bench's harness: plan a matrix of cells, run them into a results store, report.

The package is split by stage (docs/harness.md#package-layout); each stage imports only the
stages below it::

    cli (benchmark.cli, benchmark.fid.cli)   the command line; may import anything
    tools/     one-off scripts (roofline, device report, BLR reference, tuning trials)
    report/    tables, summary tables, time-to-quality, figures, compare   -> schema, store
    run/       run cells (here or on Dask), deadlines, evaluate, write results -> plan
    plan/      matrix files, plugin policy, cells and their identity, the Plan -> schema, store
    store      the results store's files (read and write; torch-free)   -> schema
    schema     column names, reserved labels, usage errors (standard library only)

``metrics/`` (the metric registry; ``metrics.info`` is torch-free metadata) and ``fid/``
(FID features and references) are libraries used by ``run``; ``report`` reads only
``metrics.info``. Reporting never imports ``run`` or the torch-importing parts of ``plan``, so
``python -m benchmark table`` and ``compare`` never load torch. ``samplers`` and ``targets``
never import this package. ``tests/fast/test_architecture.py`` checks all of this.
"""
