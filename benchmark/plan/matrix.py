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
    sampler = "svgd"             # a sampler label (without "+dn": it applies to both twins)
    target = "rosenbrock"        # a target label
    params = {step_size = 0.02}
    reason = "grid over {0.005,...} on seeds 100-102, best median KSD"

Every problem is reported as one line naming the key and the valid choices
(:class:`benchmark.schema.MatrixError`); the CLI turns it into exit code 2 without a traceback.
"""

from __future__ import annotations

import inspect
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.metrics.info import METRIC_INFO
from benchmark.plan import plugins
from benchmark.plan.plugins import describe, search_dirs_of
from benchmark.schema import DENOISE_SUFFIX, REFERENCE_LABEL, MatrixError, denoised_label

#: The shipped matrices (``benchmark/matrices/*.toml``), by file stem.
MATRIX_DIR = Path(__file__).parent.parent / "matrices"

TOP_LEVEL_KEYS = {"name", "description", "seed", "seeds", "n", "device", "dtype", "num_threads",
                  "metrics", "targets", "samplers", "overrides", "cell_timeout", "save_samples"}
TARGET_KEYS = {"name", "label", "params", "n"}
SAMPLER_KEYS = {"name", "label", "params", "budgets", "targets", "seeds", "denoise"}
OVERRIDE_KEYS = {"sampler", "target", "params", "reason"}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class TargetSpec:
    label: str
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    n: int | None = None  # samples per cell on this target; None: the matrix's n
    plugin_dir: str | None = None  # folder an import-path target came from (plan.plugins)


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
    plugin_dir: str | None = None  # folder an import-path sampler came from (plan.plugins)
    twin_label: str = ""  # the label without the final denoising step ("" = label)


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
        """The sampler's matrix params with any per-target override applied on top.

        An override names the label without ``+dn`` and applies to the entry *and* its
        denoised twin, so the pair keeps sharing its random numbers and trained network.
        """
        params = dict(sampler.params)
        for override in self.overrides:
            if (override.sampler == (sampler.twin_label or sampler.label)
                    and override.target == target.label):
                params.update(override.params)
        return params


def _choices(options) -> str:
    return ", ".join(sorted(options))


def resolve(kind: str, name: str, registry: Mapping[str, Any],
            plugin_dir: str | None = None, search_dirs: tuple[str, ...] = ()) -> Any:
    """The class a matrix names: a registry entry, or an import path the policy of
    :mod:`benchmark.plan.plugins` allows (from ``plugin_dir``/``search_dirs`` or an installed
    package, and a ``Target``/``Sampler`` subclass)."""
    return resolve_with_folder(kind, name, registry, (*search_dirs, *search_dirs_of(plugin_dir)))[0]


def resolve_with_folder(kind: str, name: str, registry: Mapping[str, Any],
                        search_dirs: tuple[str, ...] = ()) -> tuple[Any, str | None]:
    """:func:`resolve`, also returning the folder a plugin was imported from (else ``None``)."""
    from samplers.base import Sampler
    from targets.base import Target

    base = Target if kind == "target" else Sampler
    try:
        return plugins.resolve(kind, name, registry, base, search_dirs)
    except plugins.PluginError as error:
        raise MatrixError(str(error)) from None


#: Names and labels end up in file names, Markdown and LaTeX cells: letters, digits and
#: ``_ . + = @ : -`` (``:`` for an import path used as its own label), starting with a letter
#: or digit, at most 80 characters. No spaces, ``/``, ``|``, ``\``, quotes or line breaks.
SAFE_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=@:-]{0,79}$")


def _safe_label(where: str, value: Any) -> str:
    if not isinstance(value, str) or not SAFE_LABEL.match(value):
        raise MatrixError(f"{where}: {describe(value)} is not a valid name; use 1-80 letters, "
                          f"digits and _ . + = @ : - (starting with a letter or digit)")
    return value


def _table(where: str, value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise MatrixError(f"{where}: expected a table (e.g. {{key = value}}), got "
                          f"{type(value).__name__} {describe(value)}")
    return dict(value)


def _check_value(where: str, value: Any, annotation: Any) -> None:
    """Check ``value`` against a constructor annotation such as ``"int | None"``.

    Only the simple types matrix values can have are checked (int, float, str, bool, None,
    Path); other annotations accept anything and leave the check to the constructor.
    """
    names = [part.strip() for part in str(annotation).replace("typing.", "").split("|")]
    checks = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "float": lambda v: (isinstance(v, int | float) and not isinstance(v, bool)
                                  and math.isfinite(v)),
              "str": lambda v: isinstance(v, str), "Path": lambda v: isinstance(v, str),
              "bool": lambda v: isinstance(v, bool), "None": lambda v: v is None}
    if not all(name in checks for name in names):
        return
    if not any(checks[name](value) for name in names):
        raise MatrixError(f"{where}: expected {' or '.join(names)}, got {describe(value)}")


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


def _target_spec(where: str, entry: Any, registry: Mapping,
                 search_dirs: tuple[str, ...]) -> TargetSpec:
    if isinstance(entry, str):
        entry = {"name": entry}
    _check_keys(where, entry, TARGET_KEYS)
    if "name" not in entry:
        raise MatrixError(f"{where}: missing key 'name'")
    if not isinstance(entry["name"], str):
        raise MatrixError(f"{where}.name: expected a target name, got {describe(entry['name'])}")
    target_class, plugin_dir = resolve_with_folder("target", entry["name"], registry,
                                                   search_dirs)
    params = _table(f"{where}.params", entry.get("params", {}))
    signature = inspect.signature(target_class.__init__)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    valid = {p for p in signature.parameters if p not in ("self", "device", "dtype")}
    for key, value in params.items():
        if not accepts_any and key not in valid:
            raise MatrixError(f"{where}.params: unknown parameter '{key}' for target "
                              f"'{entry['name']}'; valid parameters: {_choices(valid) or '(none)'}")
        if key in signature.parameters:
            _check_value(f"{where}.params.{key}", value, signature.parameters[key].annotation)
    n = entry.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 2):
        raise MatrixError(f"{where}.n: expected an integer >= 2, got {n!r}")
    label = _safe_label(f"{where}.label", entry.get("label", entry["name"]))
    return TargetSpec(label=label, name=entry["name"], params=params, n=n,
                      plugin_dir=plugin_dir)


def _sampler_spec(where: str, entry: Any, registry: Mapping,
                  search_dirs: tuple[str, ...]) -> SamplerSpec:
    from samplers.base import build_params

    _check_keys(where, entry, SAMPLER_KEYS)
    for key in ("name", "budgets"):
        if key not in entry:
            raise MatrixError(f"{where}: missing key '{key}'")
    if not isinstance(entry["name"], str):
        raise MatrixError(f"{where}.name: expected a sampler name, got {describe(entry['name'])}")
    sampler_class, plugin_dir = resolve_with_folder("sampler", entry["name"], registry,
                                                    search_dirs)
    params = _table(f"{where}.params", entry.get("params", {}))
    try:
        build_params(sampler_class.Params, entry["name"], params)
    except (TypeError, ValueError) as error:
        raise MatrixError(f"{where}.params: {error}") from None
    budgets = _int_list(f"{where}.budgets", entry["budgets"], minimum=1)
    # A neural sampler with a step axis (PIS) samples in K steps of one trained network: its
    # budgets are those K. Every other neural sampler draws in one generator pass.
    if sampler_class.kind == "neural" and not sampler_class.step_axis and budgets != (1,):
        raise MatrixError(f"{where}.budgets: neural sampler '{entry['name']}' draws samples in "
                          f"one generator pass; budgets must be [1], got {list(budgets)}")
    targets = entry.get("targets")
    if targets is not None and (not isinstance(targets, list) or not targets
                                or not all(isinstance(t, str) for t in targets)):
        raise MatrixError(f"{where}.targets: expected a non-empty list of target labels, "
                          f"got {describe(targets)}")
    denoise = entry.get("denoise", False)
    if not isinstance(denoise, bool):
        raise MatrixError(f"{where}.denoise: expected true or false, got {describe(denoise)}")
    if denoise and float(params.get("denoise_sigma", 0.0)) > 0:
        raise MatrixError(f"{where}: denoise = true with the sampler's own denoise_sigma "
                          f"= {params['denoise_sigma']} would denoise twice; set one of them")
    seeds = entry.get("seeds")
    if seeds is not None:
        seeds = _int_list(f"{where}.seeds", seeds, minimum=0)
    label = _safe_label(f"{where}.label", entry.get("label", entry["name"]))
    # The twin's label: what the entry is called without its final step (the user may have
    # written the suffix already); its cells share random numbers and the trained network.
    twin = label.removesuffix(DENOISE_SUFFIX) if denoise else label
    return SamplerSpec(label=denoised_label(label) if denoise else label, twin_label=twin,
                       name=entry["name"],
                       params=params, budgets=budgets, kind=sampler_class.kind,
                       targets=None if targets is None else tuple(targets), denoise=denoise,
                       seeds=seeds, plugin_dir=plugin_dir)


def parse_matrix(data: Mapping[str, Any], default_name: str = "matrix",
                 search_dirs: tuple[str | Path, ...] = ()) -> Matrix:
    """Validate a decoded TOML document and return the :class:`Matrix` it describes.

    ``search_dirs``: folders whose modules import paths may name (the matrix file's folder;
    :mod:`benchmark.plan.plugins`). Targets are not built here: :func:`check_targets` does that.
    """
    search_dirs = tuple(str(Path(folder).resolve()) for folder in search_dirs)
    from samplers import SAMPLERS
    from targets import TARGETS

    _check_keys("matrix", data, TOP_LEVEL_KEYS)
    for key in ("targets", "samplers"):
        if key not in data:
            raise MatrixError(f"matrix: missing key '{key}'")
    name = _safe_label("name", data.get("name", default_name))
    description = data.get("description", "")
    if not isinstance(description, str):
        raise MatrixError(f"description: expected a string, got {describe(description)}")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise MatrixError(f"seed: expected an integer, got {seed!r}")
    seeds = _int_list("seeds", data.get("seeds", [0]), minimum=0)
    n = data.get("n", 1000)
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise MatrixError(f"n: expected an integer >= 2, got {n!r}")
    device = data.get("device", "cpu")
    if not isinstance(device, str):
        raise MatrixError(f"device: expected a string such as \"cpu\", got {describe(device)}")
    check_device(device)
    dtype = data.get("dtype", "float32")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise MatrixError(f"dtype: unknown dtype '{dtype}'; valid choices: {_choices(DTYPES)}")
    num_threads = data.get("num_threads")
    if num_threads is not None and (not isinstance(num_threads, int)
                                    or isinstance(num_threads, bool) or num_threads < 1):
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
        if not isinstance(metric, str) or metric not in METRIC_INFO:
            raise MatrixError(f"metrics: unknown metric {describe(metric)}; valid choices: "
                              f"{_choices(METRIC_INFO)}")
    if len(set(metrics)) != len(metrics):
        raise MatrixError(f"metrics: repeated metric in {metrics!r}; name each metric once")

    if not isinstance(data["targets"], list) or not data["targets"]:
        raise MatrixError("targets: expected a non-empty list")
    targets = tuple(_target_spec(f"targets[{i}]", entry, TARGETS, search_dirs)
                    for i, entry in enumerate(data["targets"]))
    if not isinstance(data["samplers"], list) or not data["samplers"]:
        raise MatrixError("samplers: expected a non-empty list of [[samplers]] tables")
    samplers = tuple(_sampler_spec(f"samplers[{i}]", entry, SAMPLERS, search_dirs)
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
        if REFERENCE_LABEL in labels and kind == "sampler":
            raise MatrixError("samplers: the label 'reference' is reserved for floor rows")

    overrides = []
    entries = data.get("overrides", [])
    if not isinstance(entries, list):
        raise MatrixError(f"overrides: expected a list of [[overrides]] tables, got "
                          f"{describe(entries)}")
    for i, entry in enumerate(entries):
        where = f"overrides[{i}]"
        _check_keys(where, entry, OVERRIDE_KEYS)
        for key in ("sampler", "target", "params", "reason"):
            if key not in entry:
                raise MatrixError(f"{where}: missing key '{key}' (every override must say how "
                                  f"it was chosen in 'reason')")
        _table(f"{where}.params", entry["params"])
        if not isinstance(entry["reason"], str) or not entry["reason"].strip():
            raise MatrixError(f"{where}.reason: expected a non-empty string saying how the "
                              f"value was chosen, got {describe(entry['reason'])}")
        sampler = next((s for s in samplers if s.label == entry["sampler"]), None)
        if sampler is None:
            raise MatrixError(f"{where}.sampler: unknown sampler label '{entry['sampler']}'; "
                              f"valid choices: {_choices(s.label for s in samplers)}")
        if sampler.denoise:
            raise MatrixError(f"{where}.sampler: '{sampler.label}' is the denoised twin of "
                              f"'{sampler.twin_label}'; name '{sampler.twin_label}' (an override "
                              f"applies to both, so the pair keeps training the same sampler)")
        if entry["target"] not in {t.label for t in targets}:
            raise MatrixError(f"{where}.target: unknown target label '{entry['target']}'; "
                              f"valid choices: {_choices(t.label for t in targets)}")
        try:
            from samplers.base import build_params

            sampler_class = resolve("sampler", sampler.name, SAMPLERS, sampler.plugin_dir)
            build_params(sampler_class.Params, sampler.name,
                         {**sampler.params, **entry["params"]})
        except (TypeError, ValueError) as error:
            raise MatrixError(f"{where}.params: {error}") from None
        overrides.append(Override(sampler=entry["sampler"], target=entry["target"],
                                  params=dict(entry["params"]), reason=str(entry["reason"])))

    return Matrix(name=name, seed=seed, seeds=seeds, n=n, device=device, dtype=dtype,
                  metrics=tuple(metrics), targets=targets, samplers=samplers,
                  overrides=tuple(overrides), description=description,
                  num_threads=num_threads,
                  cell_timeout=None if cell_timeout is None else float(cell_timeout),
                  save_samples=save_samples)


def check_device(device: str) -> None:
    """Accept only devices this machine has: ``cpu``, ``cuda``/``cuda:N`` with CUDA and at least
    N + 1 GPUs, ``mps`` where the MPS backend is available."""
    here = ["cpu"]
    if torch.cuda.is_available():
        here += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        here.append("mps")
    choices = ", ".join(here)
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise MatrixError(f"device: unknown device {describe(device)}; valid choices here: "
                          f"{choices}") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise MatrixError(f"device: '{device}' requested but CUDA is not available here; "
                              f"valid choices here: {choices}")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise MatrixError(f"device: '{device}' does not exist (this machine has "
                              f"{torch.cuda.device_count()} GPU(s)); valid choices here: "
                              f"{choices}")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise MatrixError(f"device: '{device}' requested but MPS is not available here; "
                              f"valid choices here: {choices}")
    elif parsed.type != "cpu":
        raise MatrixError(f"device: '{device}' cannot run cells; valid choices here: {choices}")


def matrix_path(name_or_path: str) -> Path:
    """A shipped matrix by name (``default``, ``paper-2d``, ...) or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise MatrixError(f"matrix file '{name_or_path}' does not exist")
        if not path.is_file():
            raise MatrixError(f"matrix '{name_or_path}' is not a file (expected a .toml file "
                              f"or a shipped matrix name)")
        return path
    shipped = {p.stem: p for p in MATRIX_DIR.glob("*.toml")}
    if name_or_path not in shipped:
        raise MatrixError(f"unknown matrix '{name_or_path}'; shipped matrices: "
                          f"{_choices(shipped)} (or a path to a .toml file)")
    return shipped[name_or_path]


def load_matrix(name_or_path: str, device: str | None = None) -> Matrix:
    """Read and validate a matrix; ``device`` (from the command line) overrides the file's.

    Import paths in it may name modules in the file's own folder (:mod:`benchmark.plan.plugins`).
    """
    path = matrix_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise MatrixError(f"{path}: invalid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise MatrixError(f"{path}: not UTF-8 text (byte {error.start}); a matrix is a UTF-8 "
                          f"TOML file") from None
    except OSError as error:
        raise MatrixError(f"{path}: cannot read: {error.strerror or error}") from None
    if device is not None:
        data = {**data, "device": device}
    return parse_matrix(data, default_name=path.stem, search_dirs=(path.parent,))
