"""Metrics of samples: one signature, declared requirements, one registry.

* :mod:`benchmark.metrics.info` — what each metric is (header, direction, requirements);
  torch-free, so reports and matrix validation read it without loading torch;
* :mod:`benchmark.metrics.base` — :class:`~benchmark.metrics.base.Metric` (an info entry plus
  its function) and :class:`~benchmark.metrics.base.MetricContext`;
* :mod:`benchmark.metrics.registry` — :data:`~benchmark.metrics.registry.METRICS`, every
  metric by name, and ``supported_metrics`` / ``evaluate_metric`` / ``reference_floor``;
* the statistics themselves: :mod:`~benchmark.metrics.ksd` (and its fused kernel),
  :mod:`~benchmark.metrics.distances`, :mod:`~benchmark.metrics.transport`,
  :mod:`~benchmark.metrics.modes`, :mod:`~benchmark.metrics.coverage`,
  :mod:`~benchmark.metrics.ess` (ESS per target evaluation of a chain trace), and the families
  :mod:`~benchmark.metrics.blr` and :mod:`~benchmark.metrics.images` (FID through
  :mod:`benchmark.fid`).

May import: :mod:`benchmark.schema`, :mod:`benchmark.fid`, ``targets`` (never the plan, run or
report stages). This file imports nothing, so importing :mod:`benchmark.metrics.info` stays
torch-free.
"""
