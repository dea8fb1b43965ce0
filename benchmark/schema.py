"""The result schema every stage shares: column names, reserved labels and usage errors.

Planning writes these names into cells, running writes them into the store, reporting reads
them back; defining them once here (and nowhere else) lets every stage agree without importing
another. This module imports nothing but the standard library, so a report that only needs
the schema loads neither torch, nor the samplers, nor the targets
(docs/harness.md#package-layout).
"""

from __future__ import annotations

#: The sampler label of floor rows: the same metrics on exact reference samples (budget 0).
REFERENCE_LABEL = "reference"

#: Appended to the label of a sampler entry with ``denoise = true`` so that tables tell the two
#: twins apart. Code reads the ``denoise`` column, never the suffix; only rows stored before
#: that column existed get it from their label (:meth:`benchmark.store.ResultsStore.load`).
DENOISE_SUFFIX = "+dn"


def denoised_label(label: str) -> str:
    """The table label of ``label``'s entry with the final denoising step."""
    return label if label.endswith(DENOISE_SUFFIX) else label + DENOISE_SUFFIX


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
    "denoise",          # True when the runner applied the final denoising step (matrix key)
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

#: Columns newer than the first stores: files without them still load (the store derives the
#: value, see :meth:`benchmark.store.ResultsStore.load`), so no stored result is lost.
ADDED_COLUMNS: frozenset[str] = frozenset({"denoise"})

#: Columns read back as text whatever they look like (ids, hashes, labels, versions).
TEXT_COLUMNS: frozenset[str] = frozenset({
    "matrix", "cell_id", "train_key", "target", "target_name", "target_params", "sampler",
    "sampler_name", "params", "status", "metric", "reason", "device", "worker", "torch_version",
    "package_version", "git_commit", "timestamp"})

#: One planned cell of a matrix (``plan/<matrix>.csv``).
PLAN_COLUMNS: tuple[str, ...] = ("matrix", "cell_id", "target", "sampler", "budget", "seed")

#: One logged value of a neural sampler's training (``history/<train_key>.csv``).
HISTORY_COLUMNS: tuple[str, ...] = ("train_key", "target", "sampler", "params", "seed",
                                    "iteration", "metric", "value")

#: The columns that name one reported group: a table cell is one group, its seeds aggregated.
GROUP: list[str] = ["target", "sampler", "budget", "metric"]


class UsageError(Exception):
    """A user error: the command line prints it as one line and exits with code 2."""


class MatrixError(UsageError, ValueError):
    """An invalid matrix; the message is one line naming the key and the valid choices."""


class StoreFileError(UsageError, ValueError):
    """A results file that cannot be read; the message names it in one line."""
