"""Matrix validation: every malformed matrix is one line naming the key, exit code 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from benchmark.cli import main
from benchmark.plan.matrix import load_matrix, parse_matrix
from benchmark.schema import MatrixError

VALID = {
    "seeds": [0],
    "n": 50,
    "metrics": ["ksd"],
    "targets": ["gaussian"],
    "samplers": [{"name": "mala", "budgets": [5]}],
}


def with_changes(**changes):
    data = {**VALID, **changes}
    return {k: v for k, v in data.items() if v is not None}


MALFORMED = [
    (with_changes(bogus=1), "unknown key 'bogus'"),
    (with_changes(targets=None), "missing key 'targets'"),
    (with_changes(targets=["nope"]), "unknown target 'nope'; valid choices:"),
    (with_changes(samplers=[{"name": "nope", "budgets": [1]}]), "unknown sampler 'nope'"),
    (with_changes(samplers=[{"name": "mala"}]), "missing key 'budgets'"),
    (with_changes(samplers=[{"name": "mala", "budgets": [0]}]), "expected integers >= 1"),
    (with_changes(samplers=[{"name": "mala", "budgets": [5], "params": {"stepsize": 1}}]),
     "unknown parameter 'stepsize' for sampler 'mala'; valid parameters:"),
    (with_changes(samplers=[{"name": "mala", "budgets": [5], "colour": 1}]),
     "unknown key 'colour'"),
    (with_changes(samplers=[{"name": "dft_ns", "budgets": [10]}]), "budgets must be [1]"),
    (with_changes(metrics=["accuracy_typo"]), "unknown metric 'accuracy_typo'"),
    (with_changes(n=1), "n: expected an integer >= 2"),
    (with_changes(seeds=[]), "seeds: expected a non-empty list"),
    (with_changes(seeds=[1, 1]), "repeated values"),
    (with_changes(dtype="float16"), "unknown dtype 'float16'; valid choices: float32, float64"),
    (with_changes(device="tpu9"), "device:"),
    (with_changes(targets=[{"name": "gaussian", "params": {"width": 2}}]),
     "unknown parameter 'width' for target 'gaussian'"),
    (with_changes(samplers=[{"name": "mala", "budgets": [5]}, {"name": "mala", "budgets": [5]}]),
     "label 'mala' is used twice"),
    (with_changes(overrides=[{"sampler": "svgd", "target": "gaussian", "params": {},
                              "reason": "x"}]), "unknown sampler label 'svgd'"),
    (with_changes(overrides=[{"sampler": "mala", "target": "gaussian",
                              "params": {"step_size": 0.1}}]), "missing key 'reason'"),
    (with_changes(samplers=[{"name": "mala", "budgets": [5]},
                            {"name": "mala", "budgets": [5], "denoise": True}],
                  overrides=[{"sampler": "mala+dn", "target": "gaussian",
                              "params": {"step_size": 0.1}, "reason": "x"}]),
     "'mala+dn' is the denoised twin of 'mala'; name 'mala'"),
    (with_changes(samplers=[{"name": "no.such.module:Thing", "budgets": [1]}]),
     "module 'no' of 'no.such.module:Thing' is not an installed package"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED,
                         ids=[m.split(":")[0][:30] for _, m in MALFORMED])
def test_malformed_matrix_is_a_one_line_error(data, message):
    with pytest.raises(MatrixError) as info:
        parse_matrix(data)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_valid_matrix_parses_with_defaults():
    matrix = parse_matrix(VALID, default_name="tiny")
    assert matrix.name == "tiny" and matrix.device == "cpu" and matrix.dtype == "float32"
    assert matrix.samplers[0].kind == "iterative" and matrix.samplers[0].budgets == (5,)


def test_overrides_apply_to_their_pair_only():
    data = with_changes(targets=["gaussian", "mog2"], overrides=[
        {"sampler": "mala", "target": "mog2", "params": {"step_size": 0.3}, "reason": "test"}])
    matrix = parse_matrix(data)
    gaussian, mog2 = matrix.targets
    assert "step_size" not in matrix.sampler_params(matrix.samplers[0], gaussian)
    assert matrix.sampler_params(matrix.samplers[0], mog2)["step_size"] == 0.3


def test_an_override_applies_to_both_denoising_twins():
    # The +dn twin trains the same network and draws the same random numbers as its pair,
    # so an override of the pair must reach it too (else it silently trains another sampler).
    from benchmark.plan.cells import plan_cells

    data = with_changes(targets=["mfa_digits"],
                        samplers=[{"name": "dft_ns", "budgets": [1]},
                                  {"name": "dft_ns", "budgets": [1], "denoise": True}],
                        overrides=[{"sampler": "dft_ns", "target": "mfa_digits",
                                    "params": {"sampler_lr": 1e-3}, "reason": "test"}])
    plain, denoised = [c for c in plan_cells(parse_matrix(data)) if c.sampler is not None]
    assert denoised.denoise and not plain.denoise
    assert plain.params["sampler_lr"] == denoised.params["sampler_lr"] == 1e-3
    assert plain.train_key == denoised.train_key and plain.cell_seed == denoised.cell_seed


def test_import_path_names_a_user_sampler():
    data = with_changes(samplers=[{"name": "samplers.langevin:MALA", "budgets": [2]}])
    assert parse_matrix(data).samplers[0].name == "samplers.langevin:MALA"


def test_every_shipped_matrix_is_valid():
    from benchmark.plan.matrix import MATRIX_DIR

    paths = sorted(MATRIX_DIR.glob("*.toml"))
    assert paths, "no shipped matrices"
    for path in paths:
        load_matrix(str(path))


def test_cli_reports_a_bad_matrix_with_exit_code_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent("""
        targets = ["gaussian"]
        metrics = ["ksd"]
        [[samplers]]
        name = "mala"
        budgets = [3]
        params = {bogus = 1}
    """))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: samplers[0].params: unknown parameter 'bogus'")
    assert len(err.splitlines()) == 1


def test_cli_unknown_matrix_name_lists_shipped_ones(capsys):
    assert main(["run", "no-such-matrix"]) == 2
    assert "shipped matrices: " in capsys.readouterr().err


def test_cli_error_has_no_traceback(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("targets = [\n")
    result = subprocess.run([sys.executable, "-m", "benchmark", "run", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "invalid TOML" in result.stderr
