"""FID for image energy-based models (docs/metrics.md#image-metrics).

* :mod:`benchmark.fid.frechet` — the Fréchet distance of Gaussian fits, numerically stable for
  singular covariances;
* :mod:`benchmark.fid.features` — the per-dataset CNN classifiers whose penultimate features
  replace Inception's, their training and the shipped checkpoints (``checkpoints/``);
* :mod:`benchmark.fid.coverage` — class-coverage statistics of predicted classes;
* :mod:`benchmark.fid.evaluation` — FID / coverage of samples against a dataset, and the floor;
* :mod:`benchmark.fid.reference` — EBM reference samples (long MALA runs) and their storage;
* :mod:`benchmark.fid.cli` — the ``train-classifier`` and ``ebm-reference`` subcommands.

The registered metrics (``fid_data``, ``fid_ref``, ``class_tv``, ``class_max_share``) are in
:mod:`benchmark.metrics.images`.

May import: :mod:`benchmark.schema`, ``targets`` and ``samplers`` (the reference chains are
MALA); :mod:`benchmark.fid.cli` is part of the command line and may import any stage. This file
imports nothing, so ``python -m benchmark --help`` can register the subcommands of
:mod:`benchmark.fid.cli` without loading torch.
"""
