"""A hostile user's corpus: malformed matrices, CLI calls and corrupted stores.

Every case must end the same way: exit code 2, exactly one line on stderr starting with
``error:``, and no traceback. Cases run in-process through :func:`benchmark.cli.main`, so an
uncaught exception fails the test with its traceback (it would have been a traceback for the
user too). Matrix cases use ``--dry-run``: validation must be complete before anything runs.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import torch

from benchmark.cli import main

HERE = Path(__file__).resolve().parent

BASE = """
name = "bad"
seeds = [0]
n = 16
metrics = ["ksd"]
targets = ["gaussian"]
"""
ULA = """
[[samplers]]
name = "ula"
budgets = [2]
"""


def _with_sampler(body: str) -> str:
    return BASE + "\n[[samplers]]\n" + textwrap.dedent(body)


def _replace(key: str, value: str) -> str:
    """BASE + ULA with the top-level ``key`` set to ``value`` (TOML text)."""
    lines = [line for line in BASE.splitlines() if not line.startswith(f"{key} =")]
    return "\n".join([f"{key} = {value}", *lines]) + ULA


# (id, matrix text) — each must be refused by validation.
MATRICES: list[tuple[str, str]] = [
    # top-level keys and values
    ("unknown-key", BASE + "colour = 1\n" + ULA),
    ("no-samplers", BASE),
    ("no-targets", 'metrics = ["ksd"]\n' + ULA),
    ("seed-string", _replace("seed", '"x"')),
    ("seed-bool", _replace("seed", "true")),
    ("seeds-empty", _replace("seeds", "[]")),
    ("seeds-negative", _replace("seeds", "[-1]")),
    ("seeds-repeated", _replace("seeds", "[1, 1]")),
    ("seeds-float", _replace("seeds", "[0.5]")),
    ("seeds-not-list", _replace("seeds", "3")),
    ("n-zero", _replace("n", "0")),
    ("n-one", _replace("n", "1")),
    ("n-string", _replace("n", '"many"')),
    ("n-float", _replace("n", "10.5")),
    ("n-bool", _replace("n", "true")),
    ("device-meta", _replace("device", '"meta"')),
    ("device-mps", _replace("device", '"mps"')),
    ("device-bogus", _replace("device", '"gpu0"')),
    ("device-number", _replace("device", "0")),
    ("device-cuda-missing", _replace("device", '"cuda:7"')),
    ("dtype-half", _replace("dtype", '"float16"')),
    ("dtype-number", _replace("dtype", "32")),
    ("threads-zero", _replace("num_threads", "0")),
    ("threads-bool", _replace("num_threads", "true")),
    ("threads-string", _replace("num_threads", '"2"')),
    ("timeout-zero", _replace("cell_timeout", "0")),
    ("timeout-inf", _replace("cell_timeout", "inf")),
    ("timeout-nan", _replace("cell_timeout", "nan")),
    ("timeout-string", _replace("cell_timeout", '"1h"')),
    ("save-samples-string", _replace("save_samples", '"yes"')),
    ("metrics-empty", _replace("metrics", "[]")),
    ("metrics-unknown", _replace("metrics", '["frobenius"]')),
    ("metrics-duplicate", _replace("metrics", '["ksd", "ksd"]')),
    ("metrics-number", _replace("metrics", "[1]")),
    ("metrics-string", _replace("metrics", '"ksd"')),
    ("name-traversal", _replace("name", '"../../x"')),
    ("name-empty", _replace("name", '""')),
    ("name-slash", _replace("name", '"a/b"')),
    ("name-space", _replace("name", '"my run"')),
    ("name-number", _replace("name", "5")),
    ("description-number", _replace("description", "5")),
    # targets
    ("targets-empty", _replace("targets", "[]")),
    ("targets-string", _replace("targets", '"gaussian"')),
    ("target-unknown", _replace("targets", '["gausian"]')),
    ("target-number", _replace("targets", "[5]")),
    ("target-name-number", _replace("targets", "[{name = 5}]")),
    ("target-no-name", _replace("targets", '[{label = "x"}]')),
    ("target-unknown-key", _replace("targets", '[{name = "gaussian", colour = 1}]')),
    ("target-params-number", _replace("targets", '[{name = "gaussian", params = 5}]')),
    ("target-params-string", _replace("targets", '[{name = "gaussian", params = "x"}]')),
    ("target-unknown-param", _replace("targets", '[{name = "gaussian", params = {dim = 3}}]')),
    ("target-dim-negative", _replace("targets", '[{name = "gaussian_d", params = {dim = -3}}]')),
    ("target-dim-zero", _replace("targets", '[{name = "gaussian_d", params = {dim = 0}}]')),
    ("target-dim-string", _replace("targets", '[{name = "gaussian_d", params = {dim = "ten"}}]')),
    ("target-dim-float", _replace("targets", '[{name = "gaussian_d", params = {dim = 2.5}}]')),
    ("target-dim-bool", _replace("targets", '[{name = "funnel_d", params = {dim = true}}]')),
    ("target-n-one", _replace("targets", '[{name = "gaussian", n = 1}]')),
    ("target-label-newline", _replace("targets", '[{name = "gaussian", label = "a\\nb"}]')),
    ("target-label-pipe", _replace("targets", '[{name = "gaussian", label = "a|b"}]')),
    ("target-label-backslash", _replace("targets", '[{name = "gaussian", label = "a\\\\b"}]')),
    ("target-label-dollar", _replace("targets", '[{name = "gaussian", label = "$x$"}]')),
    ("target-label-empty", _replace("targets", '[{name = "gaussian", label = ""}]')),
    ("target-label-duplicate", _replace("targets", '["gaussian", "gaussian"]')),
    ("target-colon-only", _replace("targets", '[":foo"]')),
    ("target-evilmod", _replace("targets", '["evilmod:Target"]')),
    ("target-os-system", _replace("targets", '["os:system"]')),
    ("target-torch-hub", _replace("targets", '["torch.hub:load"]')),
    ("target-relative-import", _replace("targets", '[".toy:Thing"]')),
    ("target-path-import", _replace("targets", '["../x:Thing"]')),
    ("target-sampler-class", _replace("targets", '["samplers.langevin:MALA"]')),
    ("ebm-missing-checkpoint",
     _replace("targets", '[{name = "ebm_digits", params = {checkpoint = "nowhere.pt"}}]')),
    ("ebm-garbage-checkpoint",
     _replace("targets", '[{name = "ebm_digits", params = {checkpoint = "garbage.pt"}}]')),
    ("ebm-checkpoint-number",
     _replace("targets", '[{name = "ebm_digits", params = {checkpoint = 5}}]')),
    ("mfa-missing-params",
     _replace("targets", '[{name = "mfa_digits", params = {params = "nowhere.pt"}}]')),
    ("blr-bad-dataset", _replace("targets", '[{name = "blr", params = {dataset = "nope"}}]')),
    ("blr-bad-path", _replace("targets", '[{name = "blr", params = {path = "nowhere.csv"}}]')),
    ("blr-num-data-string", _replace("targets", '[{name = "blr", params = {num_data = "x"}}]')),
    # samplers
    ("sampler-unknown", BASE + '[[samplers]]\nname = "ulaa"\nbudgets = [2]\n'),
    ("sampler-no-name", BASE + "[[samplers]]\nbudgets = [2]\n"),
    ("sampler-no-budgets", BASE + '[[samplers]]\nname = "ula"\n'),
    ("sampler-name-number", BASE + "[[samplers]]\nname = 5\nbudgets = [2]\n"),
    ("sampler-unknown-key", _with_sampler('name = "ula"\nbudgets = [2]\ncolour = 1')),
    ("sampler-params-number", _with_sampler('name = "ula"\nbudgets = [2]\nparams = 5')),
    ("sampler-params-string", _with_sampler('name = "ula"\nbudgets = [2]\nparams = "x"')),
    ("sampler-unknown-param", _with_sampler('name = "ula"\nbudgets = [2]\nparams = {bogus = 1}')),
    ("sampler-step-inf", _with_sampler('name = "ula"\nbudgets = [2]\nparams = {step_size = inf}')),
    ("sampler-step-nan", _with_sampler('name = "ula"\nbudgets = [2]\nparams = {step_size = nan}')),
    ("sampler-step-negative",
     _with_sampler('name = "ula"\nbudgets = [2]\nparams = {step_size = -0.1}')),
    ("sampler-step-string",
     _with_sampler('name = "ula"\nbudgets = [2]\nparams = {step_size = "big"}')),
    ("sampler-budgets-empty", _with_sampler('name = "ula"\nbudgets = []')),
    ("sampler-budgets-zero", _with_sampler('name = "ula"\nbudgets = [0]')),
    ("sampler-budgets-float", _with_sampler('name = "ula"\nbudgets = [1.5]')),
    ("sampler-budgets-string", _with_sampler('name = "ula"\nbudgets = "10"')),
    ("sampler-neural-budget", _with_sampler('name = "dft_ns"\nbudgets = [10]')),
    ("sampler-label-pipe", _with_sampler('name = "ula"\nlabel = "a|b"\nbudgets = [2]')),
    ("sampler-label-newline", _with_sampler('name = "ula"\nlabel = "a\\nb"\nbudgets = [2]')),
    ("sampler-label-reference", _with_sampler('name = "ula"\nlabel = "reference"\nbudgets = [2]')),
    ("sampler-label-duplicate", BASE + ULA + ULA),
    ("sampler-targets-unknown", _with_sampler('name = "ula"\nbudgets = [2]\ntargets = ["x"]')),
    ("sampler-targets-empty", _with_sampler('name = "ula"\nbudgets = [2]\ntargets = []')),
    ("sampler-seeds-foreign", _with_sampler('name = "ula"\nbudgets = [2]\nseeds = [7]')),
    ("sampler-denoise-string", _with_sampler('name = "ula"\nbudgets = [2]\ndenoise = "yes"')),
    ("sampler-denoise-no-sigma", _with_sampler('name = "ula"\nbudgets = [2]\ndenoise = true')),
    ("sampler-os-system", _with_sampler('name = "os:system"\nbudgets = [2]')),
    ("sampler-subprocess-run", _with_sampler('name = "subprocess:run"\nbudgets = [2]')),
    ("sampler-evilmod", _with_sampler('name = "evilmod:Sampler"\nbudgets = [2]')),
    ("sampler-target-class", _with_sampler('name = "targets.toy2d:Donut"\nbudgets = [2]')),
    ("sampler-missing-attribute", _with_sampler('name = "samplers.langevin:Nope"\nbudgets = [2]')),
    ("sampler-neural-choice",
     _with_sampler('name = "dft_ns"\nbudgets = [1]\nparams = {generator_architecture = "gan"}')),
    # overrides
    ("overrides-number", BASE + ULA + "overrides = 5\n"),
    ("override-no-reason",
     BASE + ULA + '[[overrides]]\nsampler = "ula"\ntarget = "gaussian"\nparams = {}\n'),
    ("override-empty-reason", BASE + ULA + '[[overrides]]\nsampler = "ula"\ntarget = "gaussian"'
                                           '\nparams = {}\nreason = " "\n'),
    ("override-params-number", BASE + ULA + '[[overrides]]\nsampler = "ula"\ntarget = '
                                            '"gaussian"\nparams = 5\nreason = "r"\n'),
    ("override-unknown-sampler", BASE + ULA + '[[overrides]]\nsampler = "mala"\ntarget = '
                                              '"gaussian"\nparams = {}\nreason = "r"\n'),
    ("override-unknown-target", BASE + ULA + '[[overrides]]\nsampler = "ula"\ntarget = "donut"'
                                             '\nparams = {}\nreason = "r"\n'),
    ("override-bad-value", BASE + ULA + '[[overrides]]\nsampler = "ula"\ntarget = "gaussian"'
                                        '\nparams = {step_size = -1}\nreason = "r"\n'),
    # not TOML at all
    ("toml-syntax", BASE + "[[samplers]\n"),
    ("toml-unclosed-string", 'name = "bad\n'),
]


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as stop:  # argparse's own exits
        code = stop.code
    return code, capsys.readouterr().err


def _assert_one_clean_line(code: int, err: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and "Traceback" not in err, err


@pytest.mark.parametrize(("text",), [(text,) for _, text in MATRICES],
                         ids=[case for case, _ in MATRICES])
def test_malformed_matrix_exits_2_with_one_line(text, tmp_path, capsys, monkeypatch):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    # A module that must never be imported: it sits in the working directory, not beside the
    # matrix, so the import-path policy refuses it.
    work = tmp_path / "cwd"
    work.mkdir()
    (work / "evilmod.py").write_text("raise SystemExit('evilmod was imported')\n")
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    matrix = tmp_path / "matrix" / "bad.toml"
    matrix.parent.mkdir()
    matrix.write_text(text.replace('"garbage.pt"', f'"{tmp_path / "garbage.pt"}"'))
    code, err = _cli(["run", matrix, "--dry-run", "--out", tmp_path / "out"], capsys)
    _assert_one_clean_line(code, err)


@pytest.mark.parametrize("content", [b"\x00\x01\x02\xff\xfe binary", "name = 'caf\xe9'".encode(
    "latin-1")], ids=["binary", "latin-1"])
def test_a_matrix_that_is_not_utf8_text_is_refused(content, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    _assert_one_clean_line(*_cli(["run", path, "--dry-run"], capsys))


def test_a_plugin_beside_the_matrix_is_allowed_whatever_the_working_directory(tmp_path, capsys,
                                                                               monkeypatch):
    shutil.copy(HERE / "toy_plugins.py", tmp_path)
    matrix = tmp_path / "ok.toml"
    matrix.write_text(_with_sampler('name = "toy_plugins:RaisingSampler"\nbudgets = [2]'))
    monkeypatch.chdir(HERE.parent)  # somewhere else
    code, err = _cli(["run", matrix, "--dry-run", "--out", tmp_path / "out"], capsys)
    assert code == 0, err


def test_dry_run_never_imports_a_module_from_the_working_directory(tmp_path, capsys,
                                                                    monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    other = tmp_path / "matrices"
    other.mkdir()
    (other / "m.toml").write_text(_replace("targets", '["evilmod:Target"]'))
    _assert_one_clean_line(*_cli(["run", other / "m.toml", "--dry-run"], capsys))
    assert not marker.exists()


# -- command lines ----------------------------------------------------------------------------
def _valid_matrix(tmp_path: Path) -> Path:
    path = tmp_path / "ok.toml"
    path.write_text(BASE + ULA)
    return path


CLI_CASES: list[tuple[str, list[str]]] = [
    ("no-command", []),
    ("unknown-command", ["frobnicate"]),
    ("unknown-option", ["run", "{ok}", "--frob"]),
    ("unknown-matrix", ["run", "no-such-matrix"]),
    ("missing-file", ["run", "{tmp}/missing.toml"]),
    ("directory-matrix", ["run", "{tmp}"]),
    ("workers-zero", ["run", "{ok}", "--workers", "0", "--dry-run"]),
    ("workers-text", ["run", "{ok}", "--workers", "x"]),
    ("workers-and-scheduler", ["run", "{ok}", "--workers", "1", "--scheduler", "tcp://x:1"]),
    ("shard-bad", ["run", "{ok}", "--shard", "3/2", "--dry-run"]),
    ("shard-text", ["run", "{ok}", "--shard", "a", "--dry-run"]),
    ("device-mps", ["run", "{ok}", "--device", "mps", "--dry-run"]),
    ("device-meta", ["run", "{ok}", "--device", "meta", "--dry-run"]),
    ("device-cuda", ["run", "{ok}", "--device", "cuda:3", "--dry-run"]),
    ("target-unknown", ["run", "{ok}", "--target", "donut", "--dry-run"]),
    ("out-is-file", ["run", "{ok}", "--out", "{file}", "--dry-run"]),
    ("out-under-file", ["run", "{ok}", "--out", "{file}/sub", "--dry-run"]),
    ("table-missing", ["table", "{tmp}/nowhere"]),
    ("table-empty-dir", ["table", "{tmp}"]),
    ("plot-missing", ["plot", "{tmp}/nowhere"]),
    ("evaluate-missing", ["evaluate", "{tmp}/nowhere"]),
    ("compare-missing", ["compare", "{tmp}/a", "{tmp}/b"]),
    ("compare-k-negative", ["compare", "{tmp}", "{tmp}", "--k", "-1"]),
    ("compare-k-nan", ["compare", "{tmp}", "{tmp}", "--k", "nan"]),
    ("compare-abs-text", ["compare", "{tmp}", "{tmp}", "--abs-tol", "x"]),
    ("train-ebm-no-args", ["train-ebm"]),
    ("train-ebm-bad-dataset", ["train-ebm", "--dataset", "nope", "--width", "4",
                               "--iterations", "1", "--out", "{tmp}/e.pt"]),
    ("train-ebm-width-text", ["train-ebm", "--dataset", "digits", "--width", "x",
                              "--iterations", "1", "--out", "{tmp}/e.pt"]),
]


@pytest.mark.parametrize(("argv",), [(argv,) for _, argv in CLI_CASES],
                         ids=[case for case, _ in CLI_CASES])
def test_bad_command_line_exits_2_with_one_line(argv, tmp_path, capsys):
    ok = _valid_matrix(tmp_path)
    file = tmp_path / "a-file"
    file.write_text("x")
    argv = [a.format(ok=ok, tmp=tmp_path, file=file) for a in argv]
    _assert_one_clean_line(*_cli(argv, capsys))


# -- corrupted stores -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    matrix = root / "m.toml"
    matrix.write_text(BASE.replace('["ksd"]', '["ksd", "energy_distance"]') + ULA)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["run", str(matrix), "--out", str(root / "store"), "--cache",
                     str(root / "cache"), "--save-samples", "--no-figures"]) == 0
    finally:
        torch.set_num_threads(previous)
    return root / "store"


def _copy(store: Path, tmp_path: Path) -> Path:
    target = tmp_path / "store"
    shutil.copytree(store, target)
    return target


CORRUPTIONS = {
    "garbage-csv": lambda p: p.write_bytes(b"\x00\xff\x00garbage\n1,2\n1,2,3,4\n"),
    "ragged-csv": lambda p: p.write_text(p.read_text() + "only,three,fields,and,more,x,y,z\n"),
    "empty-csv": lambda p: p.write_text(""),
    "missing-columns": lambda p: p.write_text("a,b\n1,2\n"),
}


@pytest.mark.parametrize("command", ["table", "plot", "compare"])
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupted_cell_file_is_named_in_one_line(good_store, tmp_path, capsys, command,
                                                     corruption):
    store = _copy(good_store, tmp_path)
    victim = sorted((store / "cells").glob("*.csv"))[0]
    CORRUPTIONS[corruption](victim)
    argv = [command, store] + ([good_store] if command == "compare" else [])
    code, err = _cli(argv, capsys)
    _assert_one_clean_line(code, err)
    assert victim.name in err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing-key"])
def test_a_damaged_samples_file_is_named_by_evaluate(good_store, tmp_path, capsys, damage):
    store = _copy(good_store, tmp_path)
    victim = sorted((store / "samples").glob("*.pt"))[0]
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:40])
    elif damage == "garbage":
        victim.write_bytes(b"PK\x03\x04 not a torch file")
    else:
        payload = torch.load(victim, weights_only=True)
        del payload["reference_seed"]
        torch.save(payload, victim)
    code, err = _cli(["evaluate", store], capsys)
    _assert_one_clean_line(code, err)
    assert victim.name in err


def test_evaluate_refuses_a_store_row_naming_an_import_path_outside_the_policy(
        good_store, tmp_path, capsys, monkeypatch):
    store = _copy(good_store, tmp_path)
    marker = tmp_path / "imported"
    (tmp_path / "evilstore.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for path in (store / "cells").glob("*.csv"):
        path.write_text(path.read_text().replace(",gaussian,{}", ",evilstore:Target,{}"))
    code, err = _cli(["evaluate", store], capsys)
    _assert_one_clean_line(code, err)
    assert not marker.exists()


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    import benchmark.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_command_list", interrupted)  # main() builds the parser anew
    code = cli.main(["list"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and len(err) == 1 and err[0].startswith("interrupted:")


def test_progress_lines_without_a_terminal_report_done_total_and_eta(capsys, monkeypatch):
    from benchmark import cli

    clock = iter([0.0, 10.0, 40.0, 50.0, 100.0])
    monkeypatch.setattr(cli.time, "perf_counter", lambda: next(clock))
    lines = cli.ProgressLines(3, enabled=True, every=30.0)
    lines.finished(0)  # at 10 s: within 30 s of the start, quiet
    lines.finished(1)  # at 40 s: a line
    lines.finished(1)  # at 50 s: the last cell, a line
    out = capsys.readouterr().out.splitlines()
    assert out == ["progress: 2/3 cells, 1 failed, elapsed 0m40s, ETA 0m20s",
                   "progress: 3/3 cells, 1 failed, elapsed 0m50s, ETA 0m00s"]


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("python -m benchmark ")
