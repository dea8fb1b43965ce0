"""The paper-scale MDSM command (Res12_Quadratic, width 64, batch 128 on 32×32 MNIST-5k) runs.

Training it for real (100k iterations) needs a GPU and is not done here; this smoke test runs
the documented command for 2 iterations (~40 s on one CPU core, hence the golden tier) and
checks the checkpoint it writes.
"""

from __future__ import annotations

import math

import pytest

from benchmark.cli import main
from targets.ebm.mdsm import load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")


def test_paper_scale_training_command_runs_two_iterations(tmp_path, capsys):
    out = tmp_path / "mnist5k_w64.pt"
    code = main(["train-ebm", "--dataset", "mnist5k", "--width", "64", "--iterations", "2",
                 "--batch-size", "128", "--seed", "0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    stored = load_checkpoint(out)
    assert stored["architecture"] == "res12_quadratic" and stored["width"] == 64
    assert stored["image_shape"] == [1, 32, 32] and stored["iterations_done"] == 2
    # 11.4 M parameters: the ~43 MiB float32 checkpoint of the paper-scale network.
    assert 11_000_000 < stored["num_parameters"] < 12_000_000
    assert math.isfinite(stored["final_loss"])
