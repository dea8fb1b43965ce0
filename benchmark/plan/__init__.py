"""Planning: what a matrix asks for and which cells one ``run`` does, before anything runs.

* :mod:`benchmark.plan.matrix` — matrix files: parsing and complete validation, the specs;
* :mod:`benchmark.plan.plugins` — which import paths a matrix may name (torch-free);
* :mod:`benchmark.plan.cells` — :class:`~benchmark.plan.cells.Cell`, its identity, seeds and
  provenance, :func:`~benchmark.plan.cells.plan_cells`, and the one target and sampler
  builders (:func:`~benchmark.plan.cells.build_target`, ``build_sampler``);
* :mod:`benchmark.plan.plan` — target selection and checks, and the
  :class:`~benchmark.plan.plan.Plan` one ``run`` builds once and hands to a runner;
* :mod:`benchmark.plan.estimate` — the ``--dry-run`` time estimate.

May import: :mod:`benchmark.schema`, :mod:`benchmark.store`, :mod:`benchmark.metrics.info`,
``targets`` and ``samplers``; never ``run`` or ``report``. This file imports nothing, so the
torch-free :mod:`benchmark.plan.plugins` stays torch-free for the figures that use it.
"""
