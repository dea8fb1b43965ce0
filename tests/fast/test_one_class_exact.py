"""The one-class calibration tool (``benchmark.tools.one_class_exact``)."""

from __future__ import annotations

import pytest
import torch

from benchmark.tools.one_class_exact import class_samples, main, one_class_table
from targets import make_generator
from targets.mfa import MFADigits

pytestmark = pytest.mark.usefixtures("single_thread")


class LabelledDraws:
    """Stands in for an image MFA: draw ``i`` is the row ``(label_i,)``, labels uniform over
    three classes of weights 0.2 / 0.3 / 0.5, so a kept row shows its own class."""

    name = "labelled_draws"
    class_weights = torch.tensor([0.2, 0.3, 0.5])

    def sample_classes(self, n, generator):
        labels = torch.multinomial(self.class_weights, n, replacement=True, generator=generator)
        return labels[:, None].double(), labels


@pytest.mark.parametrize("label", [0, 1, 2])
def test_rejection_keeps_exactly_n_draws_of_the_class(label):
    x = class_samples(LabelledDraws(), label, 37, make_generator(0))
    assert x.shape == (37, 1)
    assert bool((x == label).all())


def test_a_class_without_weight_is_refused():
    draws = LabelledDraws()
    draws.class_weights = torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="class 0 has no weight"):
        class_samples(draws, 0, 4, make_generator(0))


def test_one_class_rows_cover_one_component_and_the_exact_row_all():
    """On the shipped digits fit (one component per class). Deterministic outcomes, not
    statistical ones: a one-class row's samples all get their own component from the exact
    posterior (test_mfa measured 5,000 of 5,000), so exactly one mode of ten has its weight
    (recall 0.1); the mean image is one image, so one class holds every sample."""
    table = one_class_table(MFADigits(), 64, 0,
                            metrics=("energy_distance", "class_max_share", "mode_recall"))
    assert list(table.index) == [f"class {c} only" for c in range(10)] + ["exact (floor)",
                                                                          "mean image"]
    one_class = table.iloc[:10]
    # Recall is a float32 count ratio: 1 mode of 10, to float32 rounding.
    eps32 = torch.finfo(torch.float32).eps
    assert one_class["mode_recall"].tolist() == pytest.approx([0.1] * 10, rel=0, abs=eps32)
    assert table.loc["mean image", "class_max_share"] == 1.0
    # The exact row is the floor of energy distance: below every collapsed row.
    assert table.loc["exact (floor)", "energy_distance"] < one_class["energy_distance"].min()
    assert table.loc["exact (floor)", "energy_distance"] < table.loc["mean image",
                                                                     "energy_distance"]


def test_cli_writes_the_table_and_refuses_other_targets(tmp_path, capsys):
    out = tmp_path / "one_class.csv"
    assert main(["mfa_digits", "--n", "16", "--out", str(out)]) == 0
    assert out.read_text().startswith("samples,energy_distance,fid_exact")
    with pytest.raises(SystemExit) as error:
        main(["donut"])
    assert error.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'donut' has no exact class-conditional sampler" in message
    assert "mfa_digits, mfa_mnist, mfa_fashion" in message


def test_a_metric_without_its_data_set_is_nan_and_its_reason_printed_once(monkeypatch, capsys):
    import benchmark.tools.one_class_exact as tool
    from targets.datasets import DatasetUnavailable

    real = tool.evaluate_metric

    def without_test_images(name, samples, target, context):
        if name == "class_tv":
            raise DatasetUnavailable("digits test images: not installed (stand-in)")
        return real(name, samples, target, context)

    monkeypatch.setattr(tool, "evaluate_metric", without_test_images)
    assert main(["mfa_digits", "--n", "16"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("class_tv: nan in every row: digits test images") == 1
    table = one_class_table(MFADigits(), 16, 0, metrics=("class_tv", "class_max_share"))
    assert table["class_tv"].isna().all() and table["class_max_share"].notna().all()
    assert table.attrs["skipped"] == {"class_tv": "digits test images: not installed (stand-in)"}
