"""Perf tier plumbing: which saved run a new run is compared with, and what a saved run records.

``tox -e perf`` (see ``results/perf/README.md``) runs::

    python -m pytest tests/perf -m perf --benchmark-storage=results/perf --benchmark-autosave \
        --benchmark-compare --benchmark-compare-fail=median:20%

Left alone, pytest-benchmark would (a) compare with the newest run saved under
``results/perf/<system>-<python>-<bits>/`` whichever computer wrote it, and whether or not that
run itself regressed (a run is saved before it is compared), and (b) stop with a usage error
when nothing has been saved yet. This conftest pins a bare ``--benchmark-compare`` to the
newest *baseline* (a run saved as ``NNNN_baseline.json``) recorded *on this machine* (same host
name and CPU count, stored in every saved run by :func:`pytest_benchmark_update_machine_info`).
When there is none, comparison and ``--benchmark-compare-fail`` are turned off for this run and,
if it is autosaved, it is saved as ``NNNN_baseline.json`` instead: the first run records the
machine's baseline. Later runs are autosaved as history and never replace the baseline; a new
baseline is recorded on purpose with ``--benchmark-save=baseline``. An explicit
``--benchmark-compare=NNNN`` is left as given.

This works because it runs in ``pytest_configure`` before pytest-benchmark's own (``trylast``)
one, which is the case when this file is an *initial* conftest, i.e. when ``tests/perf`` (or a
file in it) is on the command line.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import pytest

_BASELINE_NOTE = pytest.StashKey[str]()
#: Save name of a baseline run (pytest-benchmark prefixes the counter: ``0003_baseline.json``).
BASELINE_NAME = "baseline"


def _this_machine() -> dict:
    """What makes timings comparable across runs: the host and how many CPUs it has."""
    return {"host": platform.node(), "cpu_count": os.cpu_count(), "device": bench_device_name()}


def _same_machine(machine_info: dict) -> bool:
    # Runs saved before the device was recorded were all CPU runs.
    recorded = {"device": "cpu", **machine_info.get("sampler_bench", {})}
    current = _this_machine()
    return all(recorded.get(key) == value for key, value in current.items())


def _file_storage(config: pytest.Config) -> Path | None:
    """The storage directory when the storage is a plain path or ``file://`` URI, else None."""
    storage = str(config.getoption("benchmark_storage"))
    if storage.startswith("file://"):
        storage = storage[len("file://"):]
    elif "://" in storage:
        return None  # e.g. elasticsearch: not ours to look into
    return Path(storage)


def latest_baseline(storage: Path) -> Path | None:
    """The newest baseline run (highest ``NNNN_`` counter) recorded on this machine, if any."""
    from pytest_benchmark.utils import get_machine_id

    pattern = f"[0-9][0-9][0-9][0-9]_{BASELINE_NAME}.json"
    for path in sorted((storage / get_machine_id()).glob(pattern), reverse=True):
        try:
            machine_info = json.loads(path.read_text())["machine_info"]
        except (OSError, ValueError, KeyError):
            continue  # unreadable file: pytest-benchmark warns about it on its own
        if _same_machine(machine_info):
            return path
    return None


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("benchmark"):
        return
    # A bare --benchmark-compare is stored as True; NNNN / an _id is a string; absent is [].
    if config.getoption("benchmark_compare") is not True:
        return
    storage = _file_storage(config)
    if storage is None:
        return
    baseline = latest_baseline(storage)
    if baseline is None:
        config.option.benchmark_compare = []
        config.option.benchmark_compare_fail = None
        recorded = bool(config.getoption("benchmark_autosave")
                        or config.getoption("benchmark_save"))
        if recorded and not config.getoption("benchmark_save"):
            config.option.benchmark_save = BASELINE_NAME
        config.stash[_BASELINE_NOTE] = (
            f"perf baseline: no baseline saved on this machine yet under {storage}; this run "
            + ("is not compared and is saved as the baseline" if recorded else
               f"is not compared (record one with --benchmark-save={BASELINE_NAME})"))
    else:
        # pytest-benchmark selects a saved run by its counter prefix within the machine folder.
        config.option.benchmark_compare = baseline.name[:4]
        config.stash[_BASELINE_NOTE] = f"perf baseline: comparing with {baseline}"


def pytest_report_header(config: pytest.Config) -> str | None:
    return config.stash.get(_BASELINE_NOTE, None)


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


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record the machine identity used above, and the torch build, threads and device timed."""
    info = dict(_this_machine())
    info["device"] = bench_device_name()
    torch = sys.modules.get("torch")  # imported by the benchmarks themselves; never import here
    if torch is not None:
        info.update(torch_version=torch.__version__, torch_num_threads=torch.get_num_threads())
        if info["device"].startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    machine_info["sampler_bench"] = info
