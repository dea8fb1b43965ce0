"""Matrix files: TOML experiment descriptions, validated completely before anything runs.

A matrix is targets × samplers × budgets × seeds plus the evaluation settings::

    name = "default"             # optional; defaults to the file's stem
    seed = 0                     # matrix seed, hashed into every cell's seed
    seeds = [0, 1]               # replicates
    n = 1000                     # samples per cell (the same for every sampler in a row)
    device = "cpu"               # or "cuda", "cuda:1"; --device on the command line wins
    dtype = "float32"
    num_threads = 1              # optional: torch intra-op threads (recorded in every row)
    metrics = ["ksd", "energy_distance"]
    cell_timeout = 600           # optional: seconds per cell; a cell over it is stored failed
    save_samples = false         # optional: keep each cell's samples (<store>/samples/*.pt)
    targets = ["donut", {name = "gaussian_d", label = "gaussian_d10", params = {dim = 10}}]
    # a target may set its own n (e.g. an image EBM evaluated at its test-split size):
    # targets = [{name = "ebm_digits", label = "digits", n = 359}]

    [[samplers]]
    name = "svgd"                # registry name, or "package.module:Class"
    label = "svgd"               # optional; the name used in tables (defaults to name)
    budgets = [10, 100, 200]     # transitions; neural samplers take [1] (one generator pass)
    params = {step_size = 0.1}
    targets = ["donut"]          # optional: run only on these target labels (default: all)
    seeds = [0]                  # optional: a subset of the matrix's seeds (default: all)
    denoise = true               # optional: final step x + sigma0^2 s(x), sigma0 from the
                                 # target (target.denoise_sigma); the label gets "+dn"

    [[overrides]]                # per-(sampler, target) settings: say how they were chosen
    sampler = "svgd"             # a sampler label
    target = "rosenbrock"        # a target label
    params = {step_size = 0.02}
    reason = "grid over {0.005,...} on seeds 100-102, best median KSD"

Every problem is reported as one line naming the key and the valid choices
(:class:`MatrixError`); the CLI turns it into exit code 2 without a traceback.
"""

from __future__ import annotations

import importlib
import inspect
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

MATRIX_DIR = Path(__file__).parent / "matrices"

TOP_LEVEL_KEYS = {"name", "description", "seed", "seeds", "n", "device", "dtype", "num_threads",
                  "metrics", "targets", "samplers", "overrides", "cell_timeout", "save_samples"}
TARGET_KEYS = {"name", "label", "params", "n"}
SAMPLER_KEYS = {"name", "label", "params", "budgets", "targets", "seeds", "denoise"}
#: Appended to the label of a sampler entry with ``denoise = true``.
DENOISE_SUFFIX = "+dn"
OVERRIDE_KEYS = {"sampler", "target", "params", "reason"}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class MatrixError(ValueError):
    """An invalid matrix; the message is one line naming the key and the valid choices."""


@dataclass(frozen=True)
class TargetSpec:
    label: str
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    n: int | None = None  # samples per cell on this target; None: the matrix's n


@dataclass(frozen=True)
class SamplerSpec:
    label: str
    name: str
    params: Mapping[str, Any]
    budgets: tuple[int, ...]
    kind: str  # "iterative" or "neural"
    targets: tuple[str, ...] | None = None  # target labels it runs on; None: every target
    denoise: bool = False  # final Tweedie step x + sigma0^2 s(x) by the runner (+1 NFE at most)
    seeds: tuple[int, ...] | None = None  # a subset of the matrix's seeds; None: all of them


@dataclass(frozen=True)
class Override:
    sampler: str
    target: str
    params: Mapping[str, Any]
    reason: str


@dataclass(frozen=True)
class Matrix:
    name: str
    seed: int
    seeds: tuple[int, ...]
    n: int
    device: str
    dtype: str
    metrics: tuple[str, ...]
    targets: tuple[TargetSpec, ...]
    samplers: tuple[SamplerSpec, ...]
    overrides: tuple[Override, ...] = ()
    description: str = ""
    num_threads: int | None = None
    cell_timeout: float | None = None
    save_samples: bool = False

    def sampler_params(self, sampler: SamplerSpec, target: TargetSpec) -> dict[str, Any]:
        """The sampler's matrix params with any per-target override applied on top."""
        params = dict(sampler.params)
        for override in self.overrides:
            if override.sampler == sampler.label and override.target == target.label:
                params.update(override.params)
        return params


def _choices(options) -> str:
    return ", ".join(sorted(options))


def resolve(kind: str, name: str, registry: Mapping[str, Any]) -> Any:
    """A registry entry, or an object named by import path ``package.module:object``."""
    if name in registry:
        return registry[name]
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise MatrixError(f"cannot import {kind} '{name}': {error}") from None
    raise MatrixError(f"unknown {kind} '{name}'; valid choices: {_choices(registry)} "
                      f"(or an import path package.module:object)")


def _check_keys(where: str, table: Mapping, allowed: set[str]) -> None:
    if not isinstance(table, Mapping):
        raise MatrixError(f"{where}: expected a table, got {type(table).__name__}")
    for key in table:
        if key not in allowed:
            raise MatrixError(f"{where}: unknown key '{key}'; valid keys: {_choices(allowed)}")


def _int_list(where: str, value: Any, minimum: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise MatrixError(f"{where}: expected a non-empty list of integers, got {value!r}")
    for item in value:
        if not isinstance(item, int) or isinstance(item, bool) or item < minimum:
            raise MatrixError(f"{where}: expected integers >= {minimum}, got {item!r}")
    if len(set(value)) != len(value):
        raise MatrixError(f"{where}: repeated values in {value!r}")
    return tuple(value)


def _target_spec(where: str, entry: Any, registry: Mapping) -> TargetSpec:
    if isinstance(entry, str):
        entry = {"name": entry}
    _check_keys(where, entry, TARGET_KEYS)
    if "name" not in entry:
        raise MatrixError(f"{where}: missing key 'name'")
    target_class = resolve("target", entry["name"], registry)
    params = dict(entry.get("params", {}))
    signature = inspect.signature(target_class.__init__)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    valid = {p for p in signature.parameters if p not in ("self", "device", "dtype")}
    for key in params:
        if not accepts_any and key not in valid:
            raise MatrixError(f"{where}.params: unknown parameter '{key}' for target "
                              f"'{entry['name']}'; valid parameters: {_choices(valid) or '(none)'}")
    n = entry.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 2):
        raise MatrixError(f"{where}.n: expected an integer >= 2, got {n!r}")
    return TargetSpec(label=str(entry.get("label", entry["name"])), name=entry["name"],
                      params=params, n=n)


def _sampler_spec(where: str, entry: Any, registry: Mapping) -> SamplerSpec:
    from samplers.base import build_params

    _check_keys(where, entry, SAMPLER_KEYS)
    for key in ("name", "budgets"):
        if key not in entry:
            raise MatrixError(f"{where}: missing key '{key}'")
    sampler_class = resolve("sampler", entry["name"], registry)
    params = dict(entry.get("params", {}))
    try:
        build_params(sampler_class.Params, entry["name"], params)
    except (TypeError, ValueError) as error:
        raise MatrixError(f"{where}.params: {error}") from None
    budgets = _int_list(f"{where}.budgets", entry["budgets"], minimum=1)
    if sampler_class.kind == "neural" and budgets != (1,):
        raise MatrixError(f"{where}.budgets: neural sampler '{entry['name']}' draws samples in "
                          f"one generator pass; budgets must be [1], got {list(budgets)}")
    targets = entry.get("targets")
    if targets is not None and (not isinstance(targets, list) or not targets
                                or not all(isinstance(t, str) for t in targets)):
        raise MatrixError(f"{where}.targets: expected a non-empty list of target labels, "
                          f"got {targets!r}")
    denoise = entry.get("denoise", False)
    if not isinstance(denoise, bool):
        raise MatrixError(f"{where}.denoise: expected true or false, got {denoise!r}")
    if denoise and float(params.get("denoise_sigma", 0.0)) > 0:
        raise MatrixError(f"{where}: denoise = true with the sampler's own denoise_sigma "
                          f"= {params['denoise_sigma']} would denoise twice; set one of them")
    seeds = entry.get("seeds")
    if seeds is not None:
        seeds = _int_list(f"{where}.seeds", seeds, minimum=0)
    label = str(entry.get("label", entry["name"]))
    if denoise and not label.endswith(DENOISE_SUFFIX):
        label += DENOISE_SUFFIX
    return SamplerSpec(label=label, name=entry["name"],
                       params=params, budgets=budgets, kind=sampler_class.kind,
                       targets=None if targets is None else tuple(targets), denoise=denoise,
                       seeds=seeds)


def parse_matrix(data: Mapping[str, Any], default_name: str = "matrix") -> Matrix:
    """Validate a decoded TOML document and return the :class:`Matrix` it describes."""
    from benchmark.metrics import METRICS
    from samplers import SAMPLERS
    from targets import TARGETS

    _check_keys("matrix", data, TOP_LEVEL_KEYS)
    for key in ("targets", "samplers"):
        if key not in data:
            raise MatrixError(f"matrix: missing key '{key}'")
    name = str(data.get("name", default_name))
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise MatrixError(f"seed: expected an integer, got {seed!r}")
    seeds = _int_list("seeds", data.get("seeds", [0]), minimum=0)
    n = data.get("n", 1000)
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise MatrixError(f"n: expected an integer >= 2, got {n!r}")
    device = str(data.get("device", "cpu"))
    check_device(device)
    dtype = str(data.get("dtype", "float32"))
    if dtype not in DTYPES:
        raise MatrixError(f"dtype: unknown dtype '{dtype}'; valid choices: {_choices(DTYPES)}")
    num_threads = data.get("num_threads")
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise MatrixError(f"num_threads: expected an integer >= 1, got {num_threads!r}")
    cell_timeout = data.get("cell_timeout")
    if cell_timeout is not None and (isinstance(cell_timeout, bool)
                                     or not isinstance(cell_timeout, int | float)
                                     or not 0 < cell_timeout < float("inf")):
        raise MatrixError(f"cell_timeout: expected a number of seconds > 0, got {cell_timeout!r}")
    save_samples = data.get("save_samples", False)
    if not isinstance(save_samples, bool):
        raise MatrixError(f"save_samples: expected true or false, got {save_samples!r}")
    metrics = data.get("metrics", ["ksd"])
    if not isinstance(metrics, list) or not metrics:
        raise MatrixError(f"metrics: expected a non-empty list of metric names, got {metrics!r}")
    for metric in metrics:
        if metric not in METRICS:
            raise MatrixError(f"metrics: unknown metric '{metric}'; valid choices: "
                              f"{_choices(METRICS)}")

    if not isinstance(data["targets"], list) or not data["targets"]:
        raise MatrixError("targets: expected a non-empty list")
    targets = tuple(_target_spec(f"targets[{i}]", entry, TARGETS)
                    for i, entry in enumerate(data["targets"]))
    if not isinstance(data["samplers"], list) or not data["samplers"]:
        raise MatrixError("samplers: expected a non-empty list of [[samplers]] tables")
    samplers = tuple(_sampler_spec(f"samplers[{i}]", entry, SAMPLERS)
                     for i, entry in enumerate(data["samplers"]))
    target_labels = {spec.label for spec in targets}
    for i, spec in enumerate(samplers):
        extra = sorted(set(spec.seeds or ()) - set(seeds))
        if extra:
            raise MatrixError(f"samplers[{i}].seeds: seed {extra[0]} is not among the matrix's "
                              f"seeds; valid choices: {', '.join(map(str, seeds))}")
        unknown = sorted(set(spec.targets or ()) - target_labels)
        if unknown:
            raise MatrixError(f"samplers[{i}].targets: unknown target label '{unknown[0]}'; "
                              f"valid choices: {_choices(target_labels)}")
    for kind, specs in (("target", targets), ("sampler", samplers)):
        labels = [spec.label for spec in specs]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise MatrixError(f"{kind}s: label '{duplicates[0]}' is used twice; give each "
                              f"entry a distinct 'label'")
        if "reference" in labels and kind == "sampler":
            raise MatrixError("samplers: the label 'reference' is reserved for floor rows")

    overrides = []
    for i, entry in enumerate(data.get("overrides", [])):
        where = f"overrides[{i}]"
        _check_keys(where, entry, OVERRIDE_KEYS)
        for key in ("sampler", "target", "params", "reason"):
            if key not in entry:
                raise MatrixError(f"{where}: missing key '{key}' (every override must say how "
                                  f"it was chosen in 'reason')")
        sampler = next((s for s in samplers if s.label == entry["sampler"]), None)
        if sampler is None:
            raise MatrixError(f"{where}.sampler: unknown sampler label '{entry['sampler']}'; "
                              f"valid choices: {_choices(s.label for s in samplers)}")
        if entry["target"] not in {t.label for t in targets}:
            raise MatrixError(f"{where}.target: unknown target label '{entry['target']}'; "
                              f"valid choices: {_choices(t.label for t in targets)}")
        try:
            from samplers.base import build_params

            sampler_class = resolve("sampler", sampler.name, SAMPLERS)
            build_params(sampler_class.Params, sampler.name,
                         {**sampler.params, **entry["params"]})
        except (TypeError, ValueError) as error:
            raise MatrixError(f"{where}.params: {error}") from None
        overrides.append(Override(sampler=entry["sampler"], target=entry["target"],
                                  params=dict(entry["params"]), reason=str(entry["reason"])))

    return Matrix(name=name, seed=seed, seeds=seeds, n=n, device=device, dtype=dtype,
                  metrics=tuple(metrics), targets=targets, samplers=samplers,
                  overrides=tuple(overrides), description=str(data.get("description", "")),
                  num_threads=num_threads,
                  cell_timeout=None if cell_timeout is None else float(cell_timeout),
                  save_samples=save_samples)


def check_device(device: str) -> None:
    """Reject device strings torch does not know, and CUDA devices this machine lacks."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise MatrixError(f"device: unknown device '{device}'; valid choices: cpu, cuda, "
                          f"cuda:N, mps") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise MatrixError(f"device: '{device}' requested but CUDA is not available here; "
                          f"use --device cpu")


def matrix_path(name_or_path: str) -> Path:
    """A shipped matrix by name (``default``, ``paper-2d``, ...) or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise MatrixError(f"matrix file '{name_or_path}' does not exist")
        return path
    shipped = {p.stem: p for p in MATRIX_DIR.glob("*.toml")}
    if name_or_path not in shipped:
        raise MatrixError(f"unknown matrix '{name_or_path}'; shipped matrices: "
                          f"{_choices(shipped)} (or a path to a .toml file)")
    return shipped[name_or_path]


def load_matrix(name_or_path: str, device: str | None = None) -> Matrix:
    """Read and validate a matrix; ``device`` (from the command line) overrides the file's."""
    path = matrix_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise MatrixError(f"{path}: invalid TOML: {error}") from None
    if device is not None:
        data = {**data, "device": device}
    return parse_matrix(data, default_name=path.stem)
