"""Reporting: tables, figures and comparisons, pure functions of a results store's files.

* :mod:`benchmark.report.aggregate` — mean ± s.e. over seeds, floors and marks per group;
* :mod:`benchmark.report.formatting` — cell and table text, Markdown and LaTeX;
* :mod:`benchmark.report.tables` — per-metric tables and :func:`~benchmark.report.tables.
  write_tables`, which writes every table of a store;
* :mod:`benchmark.report.summary` — multi-metric summary tables with the cost ledger;
* :mod:`benchmark.report.time_to_quality` — quality against cost, matched iterative samplers;
* :mod:`benchmark.report.compare` — the regression check of ``compare``;
* :mod:`benchmark.report.plots` (the figure registry) and ``plots_*`` — the figures.

May import: :mod:`benchmark.schema`, :mod:`benchmark.store`, :mod:`benchmark.metrics.info`
and the torch-free :mod:`benchmark.plan.plugins`; never ``run`` nor the rest of ``plan`` (they
import torch). Tables, summaries, time-to-quality and ``compare`` load no torch and no
matplotlib; the figures (``plots*``) load matplotlib, and torch for stored samples and
densities.
"""
