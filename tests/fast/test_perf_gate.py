"""The perf gate's decisions (``tests/perf/conftest.py``): machine key, choice of baseline and
mode, ratio comparison. Pure functions on made-up inputs; nothing here is timed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).parents[1] / "perf" / "conftest.py"


def _load_gate():
    spec = importlib.util.spec_from_file_location("perf_gate_conftest", CONFTEST)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


gate = _load_gate()

FLAGS_AVX512 = "fpu sse sse2 ssse3 fma avx avx2 avx512f avx512dq avx512bw avx512vl"
FLAGS_AVX2 = "fpu sse sse2 ssse3 fma avx avx2"


def cpuinfo(model: str, flags: str, processors: int = 2) -> str:
    return "\n".join(f"processor\t: {index}\nvendor_id\t: AuthenticAMD\nmodel name\t: {model}\n"
                     f"flags\t\t: {flags}\n" for index in range(processors))


ARM_CPUINFO = ("processor\t: 0\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd evtstrm aes sve\n"
               "CPU implementer\t: 0x41\nCPU part\t: 0xd0c\n")


def key(cpu_model="AMD EPYC", isa="avx avx2 fma avx512f", threads=2, device="cpu", **changes):
    base = gate.machine_key({"cpu_model": cpu_model, "isa": isa}, 2, "2.13.0+cpu", threads,
                            device)
    return {**base, **changes}


def baseline(name, machine_key, datetime="2026-11-27T13:00:00", ratios=None, folder="Linux-A",
             calibration=None, threads=2, device="cpu"):
    info = {"host": "vm", "cpu_count": 2, "torch_num_threads": threads, "device": device}
    if machine_key is not None:
        info["machine_key"] = machine_key
    if ratios is not None:
        info["calibration"] = calibration or gate.CALIBRATION_ID
    benchmarks = [{"fullname": full, "stats": {"median": 1.0},
                   "extra_info": {} if ratios is None else {gate.RATIO_FIELD: ratios[full]}}
                  for full in (ratios or {"t::a": None})]
    data = {"machine_info": {"sampler_bench": info}, "benchmarks": benchmarks,
            "datetime": datetime}
    return gate.Baseline(Path("store") / folder / f"{name}_baseline.json", folder, data)


# --- machine key ------------------------------------------------------------------------------

def test_cpuinfo_gives_the_first_model_name_and_the_flags():
    model, flags = gate.parse_cpuinfo(cpuinfo("AMD  EPYC 9B14  96-Core", FLAGS_AVX512))
    assert model == "AMD EPYC 9B14 96-Core"  # whitespace collapsed
    assert {"avx2", "avx512f", "fma"} <= flags
    assert gate.parse_cpuinfo(ARM_CPUINFO) == (None, frozenset(
        {"fp", "asimd", "evtstrm", "aes", "sve"}))


def test_the_same_cpu_model_without_avx512_is_another_machine():
    # The measured case: same model string and CPU count, no AVX-512, 100x slower KSD.
    with_512 = gate.cpu_identity(cpuinfo("AMD EPYC", FLAGS_AVX512))
    without = gate.cpu_identity(cpuinfo("AMD EPYC", FLAGS_AVX2))
    assert with_512 == {"cpu_model": "AMD EPYC", "isa": "avx avx2 fma avx512f"}
    assert without == {"cpu_model": "AMD EPYC", "isa": "avx avx2 fma"}
    assert (gate.machine_key(with_512, 2, "2.13.0", 2, "cpu")
            != gate.machine_key(without, 2, "2.13.0", 2, "cpu"))


def test_without_cpuinfo_the_platform_names_the_cpu():
    assert gate.cpu_identity(None, "Intel64 Family 6", "x86_64") == {
        "cpu_model": "Intel64 Family 6", "isa": "unknown"}
    assert gate.cpu_identity(None, "", "arm64") == {"cpu_model": "arm64", "isa": "unknown"}
    assert gate.cpu_identity("", "", "") == {"cpu_model": "unknown", "isa": "unknown"}
    arm = gate.cpu_identity(ARM_CPUINFO, "", "aarch64")
    assert arm == {"cpu_model": "aarch64", "isa": "asimd sve"}


def test_key_holds_torch_threads_and_device_but_not_the_host():
    machine = key()
    assert set(machine) == {"cpu_model", "isa", "cpu_count", "torch_version",
                            "torch_num_threads", "device"}
    assert key(threads=1) != machine and key(device="cuda") != machine
    gpu = gate.machine_key({"cpu_model": "x", "isa": "avx"}, 16, "2.11", 16, "cuda", "H100")
    assert gpu["gpu"] == "H100"


# --- choice of baseline and mode --------------------------------------------------------------

def test_same_key_in_the_same_folder_is_absolute_mode_with_the_newest():
    old = baseline("0001", key(), "2026-11-27T10:00:00")
    new = baseline("0004", key(), "2026-12-06T10:00:00")
    other = baseline("0005", key(isa="avx avx2 fma"), "2026-12-07T10:00:00", {"t::a": 1.0})
    choice = gate.choose_baseline([new, other, old], key(), "Linux-A")
    assert choice.mode == "absolute" and choice.baseline is new
    assert "absolute mode" in choice.note and "comparing with" in choice.note
    assert "0004_baseline" in choice.note


def test_another_machine_with_ratios_is_ratio_mode():
    foreign = baseline("0002", key(isa="avx avx2 fma"), ratios={"t::a": 2.0})
    choice = gate.choose_baseline([foreign], key(), "Linux-A")
    assert choice.mode == "ratio" and choice.baseline is foreign
    assert "ratio mode" in choice.note and "avx avx2 fma]" in choice.note
    # Same key but another storage folder (another Python): pytest-benchmark cannot load it
    # for the absolute comparison, so its ratios are used.
    elsewhere = baseline("0001", key(), ratios={"t::a": 2.0}, folder="Linux-B")
    assert gate.choose_baseline([elsewhere], key(), "Linux-A").mode == "ratio"


def test_ratio_mode_prefers_the_same_thread_count_then_the_newest():
    two = baseline("0001", key(cpu_model="X"), "2026-11-01T00:00:00", {"t::a": 1.0}, threads=2)
    one = baseline("0002", key(cpu_model="Y"), "2026-12-01T00:00:00", {"t::a": 1.0}, threads=1)
    newer_two = baseline("0003", key(cpu_model="Z"), "2026-11-15T00:00:00", {"t::a": 1.0})
    assert gate.choose_baseline([two, one, newer_two], key(), "Linux-A").baseline is newer_two
    assert gate.choose_baseline([two, one], key(threads=1), "Linux-A").baseline is one


def test_unknown_cpu_baselines_without_ratios_are_not_comparable():
    # Saved before the machine key existed: no key, no ratios -> record a new baseline.
    legacy = baseline("0001", None)
    choice = gate.choose_baseline([legacy], key(), "Linux-A")
    assert choice.mode == "none" and choice.baseline is None
    assert "no baseline saved on this machine yet" in choice.note
    assert "1 saved baseline(s) not comparable" in choice.note
    assert gate.choose_baseline([], key(), "Linux-A").mode == "none"


def test_unknown_cpu_baselines_with_ratios_are_ratio_mode():
    legacy = baseline("0001", None, ratios={"t::a": 1.0})
    choice = gate.choose_baseline([legacy], key(), "Linux-A")
    assert choice.mode == "ratio" and "unknown CPU" in choice.note


def test_ratios_need_the_same_calibration_kernel_and_device():
    other_kernel = baseline("0001", key(cpu_model="X"), ratios={"t::a": 1.0},
                            calibration="matmul256/v0")
    gpu = baseline("0002", key(cpu_model="X", device="cuda"), ratios={"t::a": 1.0},
                   device="cuda")
    assert gate.choose_baseline([other_kernel, gpu], key(), "Linux-A").mode == "none"


# --- ratio comparison -------------------------------------------------------------------------

def test_ratio_comparison_fails_only_beyond_the_threshold():
    current = {"t::slow": 1.6, "t::edge": 1.5, "t::fast": 0.5, "t::new": 1.0}
    saved = {"t::slow": 1.0, "t::edge": 1.0, "t::fast": 1.0, "t::gone": 1.0}
    comparisons = {c.name: c for c in gate.compare_ratios(current, saved)}
    assert list(comparisons) == sorted(current)  # only this run's benchmarks
    assert comparisons["t::slow"].change == pytest.approx(0.6)
    threshold = gate.DEFAULT_RATIO_FAIL_PERCENT / 100
    assert [name for name, c in comparisons.items() if c.regressed(threshold)] == ["t::slow"]
    assert comparisons["t::new"].change is None and not comparisons["t::new"].regressed(0.0)
    assert "not in the baseline" in comparisons["t::new"].line(threshold)
    assert "REGRESSED" in comparisons["t::slow"].line(threshold)
    assert "REGRESSED" not in comparisons["t::edge"].line(threshold)
    # A tighter threshold (e.g. --perf-ratio-fail=20) catches the smaller slow-down too.
    assert comparisons["t::edge"].regressed(0.2)


def test_baseline_ratios_come_from_extra_info():
    saved = baseline("0001", key(), ratios={"t::a": 2.0, "t::b": 0.5})
    assert saved.ratios() == {"t::a": 2.0, "t::b": 0.5}
    assert baseline("0002", key()).ratios() == {}
