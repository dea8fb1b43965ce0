"""Perf tier plumbing: which saved run a new run is compared with, how, and what a run records.

``tox -e perf`` (see ``results/perf/README.md``) runs::

    python -m pytest tests/perf -m perf --benchmark-storage=results/perf --benchmark-autosave \
        --benchmark-compare --benchmark-compare-fail=median:20%

Left alone, pytest-benchmark would (a) compare with the newest run saved under
``results/perf/<system>-<python>-<bits>/`` whichever computer wrote it, and whether or not that
run itself regressed (a run is saved before it is compared), and (b) stop with a usage error
when nothing has been saved yet. Absolute times are only comparable on the same kind of machine
(measured: the same 2-CPU count without AVX-512 made KSD 386 ms instead of 3.6 ms), so:

* **Machine key** (:func:`machine_key`, stored in every saved run under
  ``machine_info.sampler_bench.machine_key`` by :func:`pytest_benchmark_update_machine_info`):
  the CPU model and its vector instruction sets (``model name`` and the :data:`ISA_FLAGS` among
  the ``flags`` of ``/proc/cpuinfo``; elsewhere ``platform.processor()`` or
  ``platform.machine()`` and ``unknown``), the CPU count, the torch version, torch's thread
  count and the device timed (with the GPU's name on CUDA). The host name is recorded but is
  not part of the key: two hosts of the same kind share baselines, a host whose CPU changed
  does not keep its old one.
* **Calibration ratio**: before and after each benchmark, :func:`calibration_kernel` (a fixed
  float32 matrix product, an elementwise pass and a few small-tensor ops, one torch thread, a few
  milliseconds) is timed in the same process; each benchmark records its median over the
  calibration's median as ``extra_info.calibration_ratio`` (and that median as
  ``extra_info.calibration_median_s``). The ratio cancels most of a machine's overall speed.

A bare ``--benchmark-compare`` then picks one of three modes (:func:`choose_baseline`) among the
saved *baselines* (runs saved as ``NNNN_baseline.json``), and the report header says which:

1. ``absolute``: a baseline with this exact machine key (same storage folder) exists; the newest
   is compared by pytest-benchmark on absolute times, with ``--benchmark-compare-fail`` as given
   (20% on the median in tox).
2. ``ratio``: none has this key, but a baseline from another machine (any storage folder, same
   device kind, same calibration kernel :data:`CALIBRATION_ID`) recorded calibration ratios;
   the newest of those (preferring the same torch thread count) is compared on ratios: with
   ``--benchmark-compare-fail`` given, the run fails when a benchmark's ratio is more than
   ``--perf-ratio-fail`` percent (default :data:`DEFAULT_RATIO_FAIL_PERCENT`, 50) above the
   baseline's. The threshold is looser than the absolute one because CPUs differ in *relative*
   speed too (matrix products gain more from AVX-512 than Python-bound small ops, caches and
   memory bandwidth differ), so ratios move by tens of percent between machines with no code
   change; 50% still catches the regressions that matter (a lost fused path is 2-100x). The run
   is saved as history, never as this machine's baseline (record one on purpose, below).
3. ``none``: no baseline is comparable (the only ones have another key and no ratios, e.g.
   those saved before the key existed: "unknown CPU"); the run is not compared and, if saved,
   is saved as ``NNNN_baseline.json``: the first run records the machine's baseline.

Later runs are autosaved as history and never replace a baseline; a new baseline is recorded on
purpose with ``--benchmark-save=baseline``. An explicit ``--benchmark-compare=NNNN`` is left as
given (absolute). Choosing happens in ``pytest_configure`` before pytest-benchmark's own
(``trylast``) one, which is the case when this file is an *initial* conftest, i.e. when
``tests/perf`` (or a file in it) is on the command line; the ratio check runs in
``pytest_sessionfinish`` (exit status 1) and is reported in the terminal summary.

The decision logic is pure functions (:func:`parse_cpuinfo`, :func:`machine_key`,
:func:`choose_baseline`, :func:`compare_ratios`), tested in ``tests/fast/test_perf_gate.py``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Save name of a baseline run (pytest-benchmark prefixes the counter: ``0003_baseline.json``).
BASELINE_NAME = "baseline"
#: Vector instruction sets that decide which kernels torch runs (x86; Arm's asimd and sve).
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "asimd", "sve")
#: Names the calibration kernel; ratios are comparable only between runs with the same one.
CALIBRATION_ID = "matmul320-elementwise262144-smallops50-float32-1thread/v1"
#: ``extra_info`` fields each benchmark records.
RATIO_FIELD = "calibration_ratio"
CALIBRATION_FIELD = "calibration_median_s"
#: Default of ``--perf-ratio-fail``: how much worse (percent) a ratio may get in ratio mode.
DEFAULT_RATIO_FAIL_PERCENT = 50.0
#: Calibration samples taken before and after each benchmark (after CALIBRATION_WARMUP calls).
CALIBRATION_ROUNDS = 11
CALIBRATION_WARMUP = 3

_CHOICE = pytest.StashKey["Choice"]()
_GATE = pytest.StashKey[bool]()  # ratio mode fails the run (--benchmark-compare-fail given)
_RATIOS = pytest.StashKey[dict]()  # benchmark full name -> calibration ratio of this run
_RATIO_LINES = pytest.StashKey[list]()  # ratio mode's report, for the terminal summary


# --- machine key ------------------------------------------------------------------------------

def parse_cpuinfo(text: str) -> tuple[str | None, frozenset[str]]:
    """CPU model and flag set of a ``/proc/cpuinfo`` text (first processor's entries).

    The model is ``model name`` (x86), else ``cpu model`` / ``Hardware`` (some Arm and MIPS
    kernels), whitespace collapsed; the flags are ``flags`` (x86) or ``Features`` (Arm).
    """
    model, flags = None, None
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if not separator:
            continue
        key = key.strip().lower()
        if model is None and key in ("model name", "cpu model", "hardware"):
            model = " ".join(value.split()) or None
        elif flags is None and key in ("flags", "features"):
            flags = frozenset(value.split())
    return model, flags or frozenset()


def cpu_identity(cpuinfo_text: str | None, processor: str = "", machine: str = "") -> dict:
    """``{"cpu_model", "isa"}``: from ``/proc/cpuinfo`` text when there is one, else the model
    from ``platform.processor()`` (or ``platform.machine()``) and ``isa`` ``unknown``."""
    model, flags = parse_cpuinfo(cpuinfo_text) if cpuinfo_text else (None, frozenset())
    isa = " ".join(flag for flag in ISA_FLAGS if flag in flags)
    return {"cpu_model": model or processor.strip() or machine.strip() or "unknown",
            "isa": isa if flags else "unknown"}


def machine_key(cpu: Mapping, cpu_count: int | None, torch_version: str,
                torch_num_threads: int, device: str, gpu: str | None = None) -> dict:
    """What makes absolute timings comparable: CPU model and instruction sets, CPU count, torch
    version and threads, device (and GPU name); a JSON-able dict compared by equality."""
    key = {"cpu_model": cpu["cpu_model"], "isa": cpu["isa"], "cpu_count": cpu_count,
           "torch_version": torch_version, "torch_num_threads": torch_num_threads,
           "device": device}
    if gpu is not None:
        key["gpu"] = gpu
    return key


def _read_cpuinfo() -> str | None:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None


def this_machine_key() -> dict:
    """:func:`machine_key` of this process (imports torch)."""
    import torch

    device = bench_device_name()
    gpu = (torch.cuda.get_device_name() if device.startswith("cuda")
           and torch.cuda.is_available() else None)
    return machine_key(cpu_identity(_read_cpuinfo(), platform.processor(), platform.machine()),
                       os.cpu_count(), torch.__version__, torch.get_num_threads(), device, gpu)


def describe_key(key: Mapping | None) -> str:
    if not key:
        return "unknown CPU (saved before the machine key was recorded)"
    text = (f"{key.get('cpu_model')} [{key.get('isa')}], {key.get('cpu_count')} CPUs, torch "
            f"{key.get('torch_version')} x{key.get('torch_num_threads')} threads, "
            f"{key.get('device')}")
    return text + (f" ({key['gpu']})" if key.get("gpu") else "")


# --- choice of baseline and mode --------------------------------------------------------------

@dataclass(frozen=True)
class Baseline:
    """A saved baseline run: its path, storage folder (pytest-benchmark's machine id) and JSON."""

    path: Path
    folder: str
    data: Mapping

    @property
    def info(self) -> Mapping:
        return self.data.get("machine_info", {}).get("sampler_bench", {})

    @property
    def key(self) -> Mapping | None:
        return self.info.get("machine_key")

    def ratios(self) -> dict[str, float]:
        """Benchmark full name -> calibration ratio, for the benchmarks that recorded one."""
        ratios = {}
        for bench in self.data.get("benchmarks", []):
            value = (bench.get("extra_info") or {}).get(RATIO_FIELD)
            if isinstance(value, int | float) and value > 0 and "fullname" in bench:
                ratios[bench["fullname"]] = float(value)
        return ratios

    def order(self) -> tuple[str, str]:
        """Newest last: the saved date, then the file name (its NNNN counter)."""
        return str(self.data.get("datetime", "")), self.path.name


@dataclass(frozen=True)
class Choice:
    """``mode`` is ``absolute``, ``ratio`` or ``none``; ``note`` is the one-line report."""

    mode: str
    baseline: Baseline | None
    note: str


def choose_baseline(baselines: Sequence[Baseline], key: Mapping, folder: str) -> Choice:
    """The comparison for a run with machine ``key`` whose own storage folder is ``folder``
    (see the module docstring): same key in the same folder -> ``absolute`` with the newest;
    else a baseline with ratios of the same calibration and device -> ``ratio`` (same torch
    thread count first, then newest); else ``none``."""
    newest_first = sorted(baselines, key=Baseline.order, reverse=True)
    for baseline in newest_first:
        if baseline.folder == folder and baseline.key == key:
            return Choice("absolute", baseline,
                          f"perf gate: absolute mode, comparing with {baseline.path} (same "
                          f"machine key: {describe_key(key)})")
    candidates = [baseline for baseline in newest_first
                  if baseline.ratios()
                  and baseline.info.get("calibration") == CALIBRATION_ID
                  and baseline.info.get("device", "cpu") == key["device"]]
    if candidates:
        threads = key["torch_num_threads"]
        baseline = min(candidates, key=lambda b: (b.info.get("torch_num_threads") != threads,
                                                  newest_first.index(b)))
        return Choice("ratio", baseline,
                      f"perf gate: ratio mode (no baseline with this machine key, "
                      f"{describe_key(key)}), comparing median/calibration ratios with "
                      f"{baseline.path} (recorded on {describe_key(baseline.key)}); this run "
                      f"is saved as history, not as this machine's baseline")
    others = len(baselines)
    return Choice("none", None,
                  "perf gate: no baseline saved on this machine yet (none with this machine "
                  f"key, {describe_key(key)}"
                  + (f"; {others} saved baseline(s) not comparable: another machine key or "
                     "platform folder, and no calibration ratios of this kernel and device"
                     if others else "") + ")")


@dataclass(frozen=True)
class RatioComparison:
    name: str
    current: float
    baseline: float | None

    @property
    def change(self) -> float | None:
        """Relative change of the ratio (+0.5: 50% slower relative to the calibration)."""
        return None if self.baseline is None else self.current / self.baseline - 1.0

    def regressed(self, threshold: float) -> bool:
        return self.change is not None and self.change > threshold

    def line(self, threshold: float) -> str:
        if self.baseline is None:
            return f"{self.name}: ratio {self.current:.4g}, not in the baseline (not compared)"
        mark = f" > +{threshold:.0%}: REGRESSED" if self.regressed(threshold) else ""
        return (f"{self.name}: ratio {self.current:.4g} vs {self.baseline:.4g} "
                f"({self.change:+.0%}){mark}")


def compare_ratios(current: Mapping[str, float],
                   baseline: Mapping[str, float]) -> list[RatioComparison]:
    """One comparison per benchmark of this run (by full name), sorted by name."""
    return [RatioComparison(name, float(current[name]),
                            None if name not in baseline else float(baseline[name]))
            for name in sorted(current)]


# --- pytest hooks -----------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--perf-ratio-fail", type=float, default=DEFAULT_RATIO_FAIL_PERCENT,
                     metavar="PERCENT",
                     help="ratio mode of the perf gate (tests/perf/conftest.py): fail when a "
                          "benchmark's median/calibration ratio is more than PERCENT above the "
                          "other machine's baseline (default: %(default)s; only with "
                          "--benchmark-compare-fail)")


def _file_storage(config: pytest.Config) -> Path | None:
    """The storage directory when the storage is a plain path or ``file://`` URI, else None."""
    storage = str(config.getoption("benchmark_storage"))
    if storage.startswith("file://"):
        storage = storage[len("file://"):]
    elif "://" in storage:
        return None  # e.g. elasticsearch: not ours to look into
    return Path(storage)


def load_baselines(storage: Path) -> list[Baseline]:
    """Every readable ``NNNN_baseline.json`` in any folder of ``storage``."""
    baselines = []
    for path in sorted(storage.glob(f"*/[0-9][0-9][0-9][0-9]_{BASELINE_NAME}.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # unreadable file: pytest-benchmark warns about it on its own
        if isinstance(data, dict):
            baselines.append(Baseline(path, path.parent.name, data))
    return baselines


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("benchmark"):
        return
    # A bare --benchmark-compare is stored as True; NNNN / an _id is a string; absent is [].
    if config.getoption("benchmark_compare") is not True:
        return
    storage = _file_storage(config)
    if storage is None:
        return
    from pytest_benchmark.utils import get_machine_id

    choice = choose_baseline(load_baselines(storage), this_machine_key(), get_machine_id())
    if choice.mode == "absolute":
        # pytest-benchmark selects a saved run by its counter prefix within the machine folder.
        config.option.benchmark_compare = choice.baseline.path.name[:4]
        config.stash[_CHOICE] = choice
        return
    # Not pytest-benchmark's comparison: ours (ratio mode) or none at all.
    config.option.benchmark_compare = []
    gate = config.stash[_GATE] = bool(config.getoption("benchmark_compare_fail"))
    config.option.benchmark_compare_fail = None
    if choice.mode == "ratio":
        percent = config.getoption("perf_ratio_fail", DEFAULT_RATIO_FAIL_PERCENT)
        note = (f"; fails when a ratio is more than {percent:g}% worse" if gate
                else "; report only (no --benchmark-compare-fail)")
    else:
        saving = config.getoption("benchmark_save")
        recorded = bool(config.getoption("benchmark_autosave") or saving)
        if recorded and not saving:
            config.option.benchmark_save = BASELINE_NAME
        note = (f" under {storage}; this run is not compared"
                + (" and is saved as the baseline" if recorded
                   else f" (record one with --benchmark-save={BASELINE_NAME})"))
    config.stash[_CHOICE] = Choice(choice.mode, choice.baseline, choice.note + note)


def pytest_report_header(config: pytest.Config) -> str | None:
    choice = config.stash.get(_CHOICE, None)
    return None if choice is None else choice.note


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Ratio mode: compare this run's ratios with the chosen baseline's; a regression beyond
    ``--perf-ratio-fail`` fails the session when ``--benchmark-compare-fail`` was given."""
    config = session.config
    choice = config.stash.get(_CHOICE, None)
    if choice is None or choice.mode != "ratio":
        return
    gate = config.stash[_GATE]
    threshold = config.getoption("perf_ratio_fail", DEFAULT_RATIO_FAIL_PERCENT) / 100.0
    comparisons = compare_ratios(config.stash.get(_RATIOS, {}), choice.baseline.ratios())
    lines = [comparison.line(threshold) for comparison in comparisons]
    regressed = [c.name for c in comparisons if c.regressed(threshold)]
    if not comparisons:
        lines.append("no benchmark recorded a calibration ratio in this run")
    if regressed:
        lines.append(f"Performance has regressed (ratio mode, > +{threshold:.0%}): "
                     + ", ".join(regressed) + ("" if gate else " (report only)"))
        if gate and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    config.stash[_RATIO_LINES] = lines


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    choice = config.stash.get(_CHOICE, None)
    if choice is None:
        return
    terminalreporter.write_sep("-", f"perf gate: {choice.mode} mode")
    terminalreporter.write_line(choice.note)
    for line in config.stash.get(_RATIO_LINES, []):
        terminalreporter.write_line(line)


def bench_device_name() -> str:
    """The device the benchmarks run on: ``$SAMPLER_BENCH_DEVICE`` (default ``cpu``)."""
    return os.environ.get("SAMPLER_BENCH_DEVICE", "cpu")


@pytest.fixture
def device() -> str:
    """Device of the timed tensors; ``SAMPLER_BENCH_DEVICE=cuda`` times the GPU path."""
    import torch

    name = bench_device_name()
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"SAMPLER_BENCH_DEVICE={name} but CUDA is not available")
    return name


# --- calibration ------------------------------------------------------------------------------

def calibration_kernel(device: str = "cpu") -> Callable[[], object]:
    """A fixed workload of a few milliseconds (one CPU thread): a 320x320 float32 matrix product,
    tanh / multiply / add over 2^18 floats, and 50 small-tensor updates (dispatch overhead), on
    the same inputs every time. Its id is :data:`CALIBRATION_ID`; change both together."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(0)
    a, b = (torch.randn(320, 320, generator=generator).to(device) for _ in range(2))
    x = torch.randn(2 ** 18, generator=generator).to(device)
    small = torch.zeros(64, device=device)

    def run() -> object:
        product = a @ b
        wave = torch.tanh(x) * x + 1.0
        y = small
        for _ in range(50):
            y = y * 0.5 + 1.0
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return product, wave, y
    return run


def time_calibration(kernel: Callable[[], object], rounds: int) -> list[float]:
    """``rounds`` wall-clock times (seconds) of ``kernel`` with one torch thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            kernel()
            samples.append(time.perf_counter() - start)
        return samples
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _calibration_ratio(request: pytest.FixtureRequest):
    """Record ``extra_info`` calibration median and ratio of each benchmark (module docstring):
    the calibration is timed just before and just after the benchmark, so load that changes
    during a session affects both the same way."""
    if "benchmark" not in request.fixturenames:
        yield
        return
    benchmark = request.getfixturevalue("benchmark")
    device = request.getfixturevalue("device") if "device" in request.fixturenames else "cpu"
    if benchmark.disabled:
        yield
        return
    kernel = calibration_kernel(device)
    time_calibration(kernel, CALIBRATION_WARMUP)
    before = time_calibration(kernel, CALIBRATION_ROUNDS)
    yield
    if benchmark.stats is None:  # the test ended before timing anything
        return
    calibration = statistics.median(before + time_calibration(kernel, CALIBRATION_ROUNDS))
    ratio = benchmark.stats.stats.median / calibration
    benchmark.extra_info[CALIBRATION_FIELD] = calibration
    benchmark.extra_info[RATIO_FIELD] = ratio
    request.config.stash.setdefault(_RATIOS, {})[benchmark.fullname] = ratio


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record the machine key, the calibration kernel, and (informational) the host name."""
    key = this_machine_key()
    info = {"host": platform.node(), "cpu_count": key["cpu_count"], "device": key["device"],
            "torch_version": key["torch_version"],
            "torch_num_threads": key["torch_num_threads"], "machine_key": key,
            "calibration": CALIBRATION_ID}
    if "gpu" in key:
        info["gpu"] = key["gpu"]
    machine_info["sampler_bench"] = info
