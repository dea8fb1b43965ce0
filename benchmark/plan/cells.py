"""Cells: the unit of work of a matrix, their identity, seeds and planning.

A cell is (target, sampler with its resolved params, budget, seed). Its identity hashes to
``cell_id`` (the store's file name) and its random streams are hashed from the same parts:

* ``cell_seed`` leaves the budget out, so a sampler at budgets 100 and 200 shares its initial
  points and noise (common random numbers across budgets);
* ``reference_seed`` (the evaluation reference set) depends only on (matrix seed, target, seed,
  n), so every sampler of a (target, seed) is evaluated against the same reference samples and
  tables can pair over seeds;
* ``train_key`` names one trained neural sampler: (matrix seed, target, sampler, resolved
  params, seed, dtype, code version). The training budget is one of the params.

Each target also gets *floor* cells (sampler label ``reference``, budget 0): the same metrics on
exact reference samples, which is the noise floor every table shows.

:func:`plan_cells` expands a matrix into its cells; :mod:`benchmark.plan.plan` decides which of
them one ``run`` does. :func:`build_target` and :func:`build_sampler` are the one way a target
or sampler of a cell (or of a stored row) is constructed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from benchmark.plan.matrix import DTYPES, Matrix, SamplerSpec, TargetSpec, resolve
from benchmark.schema import REFERENCE_LABEL
from samplers.base import IterativeSampler, NeuralSampler
from targets.base import Target

#: The repository root: ``targets/`` and ``samplers/`` (hashed by :func:`code_version`) and the
#: git checkout (:func:`git_commit`) are here.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _jsonable(value: Any) -> Any:
    # Injected functions (e.g. SVGD's bandwidth rule) are named by import path: their repr
    # holds a memory address, which would make hashes differ between processes.
    if callable(value):
        return f"{value.__module__}:{value.__qualname__}"
    return str(value)


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for hashing and the params column."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable)


def resolved_params(spec: SamplerSpec, params: dict) -> dict:
    """Every hyper-parameter of the sampler, defaults included, as JSON-ready values.

    Cells are identified by these, so changing a sampler's default reruns its cells.
    """
    from samplers import SAMPLERS
    from samplers.base import build_params

    sampler_class = resolve("sampler", spec.name, SAMPLERS, spec.plugin_dir)
    full = dataclasses.asdict(build_params(sampler_class.Params, spec.name, params))
    # Fields added to a Params class later say so (metadata identity="omit_default"): at their
    # default they are left out, so cells stored before the field existed keep their ids.
    for item in dataclasses.fields(sampler_class.Params):
        if item.metadata.get("identity") == "omit_default" and full[item.name] == item.default:
            del full[item.name]
    return json.loads(canonical_json(full))


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Hex SHA-256 prefix of the canonical JSON of ``parts`` (stable across processes)."""
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:length]


def seed_from(*parts: Any) -> int:
    """A 63-bit seed from a hash of ``parts`` (stable across processes and machines)."""
    return int(stable_hash(*parts), 16) % (2**63)


@cache
def code_version() -> str:
    """Hash of the source of ``targets`` and ``samplers``: a trained sampler depends on both."""
    digest = hashlib.sha256()
    for package in ("targets", "samplers"):
        for path in sorted((PACKAGE_ROOT / package).rglob("*.py")):
            digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@cache
def plugin_source_hash(name: str, plugin_dir: str | None) -> str:
    """Hash of the source of the plugin module ``name`` was imported from (a ``.py`` file or a
    package folder in ``plugin_dir``); ``""`` for registry names and installed packages."""
    if plugin_dir is None or ":" not in name:
        return ""
    top = name.split(":")[0].split(".")[0]
    folder = Path(plugin_dir)
    files = ([folder / f"{top}.py"] if (folder / f"{top}.py").is_file()
             else sorted((folder / top).rglob("*.py")))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@cache
def git_commit() -> str:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "--short=12", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pin_provenance() -> None:
    """Read the commit and the source hash now, at the start of a run, for the rest of it.

    Both are cached per process. Read lazily, at the first finished cell, they could describe
    a checkout edited after the code in memory was imported (a run lasts hours), and the
    trained-sampler cache key would then name source that did not train the sampler.
    """
    git_commit()
    code_version()


@cache
def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sampler-bench")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Cell:
    """One unit of work; floor cells have ``sampler is None``."""

    matrix: str
    matrix_seed: int
    target: TargetSpec
    sampler: SamplerSpec | None
    params: dict
    budget: int
    seed: int
    n: int
    device: str
    dtype: str
    metrics: tuple[str, ...]

    @property
    def sampler_label(self) -> str:
        return self.sampler.label if self.sampler else REFERENCE_LABEL

    @property
    def twin_label(self) -> str:
        """The label without the final denoising step: a cell and its denoised twin share it
        (and their training, and their random numbers)."""
        if self.sampler is None:
            return REFERENCE_LABEL
        return self.sampler.twin_label or self.sampler.label

    @property
    def is_neural(self) -> bool:
        return self.sampler is not None and self.sampler.kind == "neural"

    @property
    def denoise(self) -> bool:
        """Whether the runner applies the final denoising step (matrix key ``denoise``)."""
        return self.sampler is not None and self.sampler.denoise

    @property
    def identity(self) -> tuple:
        sampler = (self.sampler.label, self.sampler.name) if self.sampler else (REFERENCE_LABEL,)
        if self.denoise:  # only when set, so cells without it keep their stored ids
            sampler = (*sampler, "denoise")
        return (self.matrix_seed, self.target.label, self.target.name, dict(self.target.params),
                sampler, self.params, self.budget, self.seed, self.n, self.dtype)

    @property
    def cell_id(self) -> str:
        return stable_hash(*self.identity)

    @property
    def cell_seed(self) -> int:
        # No budget here: common random numbers across budgets (see the module docstring).
        # Nor the denoising step: a denoised cell draws exactly the samples of its undenoised
        # twin before the final step (and trains the same network), so the pair is paired.
        return seed_from(self.matrix_seed, self.target.label, dict(self.target.params),
                         self.twin_label, self.params, self.seed)

    @property
    def reference_seed(self) -> int:
        """Seed of the evaluation reference set: shared by every sampler of a (target, seed)."""
        return seed_from(self.matrix_seed, self.target.label, dict(self.target.params),
                         "evaluation-reference", self.seed, self.n)

    @property
    def train_key(self) -> str:
        """Key of the trained-sampler cache: everything training depends on — the identity,
        the dtype and device (float32 kernels round differently on a GPU), the source of the
        suite's targets and samplers, and the source of any plugin module the target or
        sampler was imported from (so editing a user's plugin retrains it)."""
        plugins = [plugin_source_hash(spec.name, spec.plugin_dir)
                   for spec in (self.target, self.sampler) if spec is not None]
        return stable_hash(self.matrix_seed, self.target.label, dict(self.target.params),
                           self.sampler.name if self.sampler else None, self.params, self.seed,
                           self.dtype, code_version(), self.device, plugins)


def plan_cells(matrix: Matrix) -> list[Cell]:
    """Every cell of the matrix: floors first, then target × sampler × budget × seed."""
    cells = []
    common = dict(matrix=matrix.name, matrix_seed=matrix.seed, device=matrix.device,
                  dtype=matrix.dtype, metrics=matrix.metrics)
    for target in matrix.targets:
        n = target.n or matrix.n  # a target's own n (e.g. its test-split size) wins
        for seed in matrix.seeds:
            cells.append(Cell(target=target, sampler=None, params={}, budget=0, seed=seed, n=n,
                              **common))
        for sampler in matrix.samplers:
            if sampler.targets is not None and target.label not in sampler.targets:
                continue
            params = resolved_params(sampler, matrix.sampler_params(sampler, target))
            for budget in sampler.budgets:
                for seed in sampler.seeds or matrix.seeds:
                    cells.append(Cell(target=target, sampler=sampler, params=params,
                                      budget=budget, seed=seed, n=n, **common))
    return cells


def in_shard(cell: Cell, shard: tuple[int, int] | None) -> bool:
    """Whether ``cell`` belongs to shard ``(index, count)``.

    Shards split by (target, sampler without its denoising step, params, seed), so every budget
    of one trained sampler, with and without the final denoising step, lands in the same shard
    and no trained-sampler key is trained by two shards.
    """
    if shard is None:
        return True
    index, count = shard
    return seed_from(cell.target.label, cell.twin_label, cell.params, cell.seed) % count == index


def build_target(name: str, params: dict, device: str, dtype: str,
                 plugin_dir: str | None = None) -> Target:
    """A target from its registry name (or import path, from ``plugin_dir`` or an installed
    package: :mod:`benchmark.plan.plugins`), constructor params, device and dtype."""
    from targets import TARGETS

    target_class = resolve("target", name, TARGETS, plugin_dir)
    return target_class(device=device, dtype=DTYPES[dtype], **params)


def build_sampler(spec: SamplerSpec, overrides: dict) -> IterativeSampler | NeuralSampler:
    """The sampler with the matrix's params; injected functions keep their defaults."""
    from samplers import SAMPLERS

    sampler_class = resolve("sampler", spec.name, SAMPLERS, spec.plugin_dir)
    defaults = json.loads(canonical_json(dataclasses.asdict(sampler_class.Params())))
    return sampler_class(**{k: v for k, v in overrides.items() if v != defaults.get(k)})
