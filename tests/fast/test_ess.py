"""``ess``: ESS per target evaluation of Markov-chain samplers.

docs/metrics.md#effective-sample-size. The statistic on traces with a known answer (i.i.d.
draws; AR(1) chains), the reasons it gives instead of a value, the trace the runner records
(only when asked, only for chains, without changing the chains), and the table it gets.

Tolerances. ArviZ's bulk ESS divides ``N = chains x draws`` by an estimated integrated
autocorrelation time ``tau`` summed up to a data-chosen window ``M`` (Geyer's initial monotone
sequence), whose relative standard deviation is about ``sqrt(2 (2M + 1) / N)`` (Madras & Sokal
1988). Measured over 40 seeds at ``N = 32 x 1,000`` (this test's shape): i.i.d. draws give
ESS / N = 0.999 with s.d. 0.015; AR(1) with rho = 0.5 gives 0.337 (exact 1/3) with s.d. 0.010
over 20 seeds; rho = 0.9 gives 0.0537 (exact 0.0526) with s.d. 0.0033. Each tolerance below is
at least 4 such standard deviations beyond that bias, a false-failure probability below 1e-4
for any seed (the suite's budget is 1e-3 per test, tests/conftest.py); the seeds are fixed, so
the tests are deterministic.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import Tensor

import benchmark.run.runner as runner
from benchmark.metrics.base import MetricContext, MetricRequirementError
from benchmark.metrics.ess import (
    NO_TRACE_STORED,
    TraceRecorder,
    ess_per_evaluation,
    iid_trace,
)
from benchmark.metrics.info import METRIC_INFO, TRACE_CHAINS, needs_trace
from benchmark.metrics.registry import METRICS, evaluate_metric, reference_floor
from benchmark.plan.matrix import parse_matrix
from benchmark.plan.plan import make_plan
from benchmark.report.ess import ess_frame
from benchmark.report.tables import write_tables
from benchmark.run.evaluate import evaluate_store
from benchmark.run.runner import evaluate_samples, run_matrix
from benchmark.schema import COLUMNS
from benchmark.store import ResultsStore
from samplers import SAMPLERS
from targets import TARGETS
from targets.base import make_generator

CHAINS, DRAWS = 32, 1000


def gaussian():
    """The 2-D standard Gaussian (the metric reads only its dimension and exact sampler)."""
    return TARGETS["gaussian"]()


def ar1(rho: float, chains: int, draws: int, generator: torch.Generator) -> Tensor:
    """``(chains, draws)`` stationary AR(1) chains ``x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t``
    with unit marginal variance: autocorrelation ``rho^k``, so ESS / draws
    ``= (1 - rho) / (1 + rho)``."""
    noise = torch.randn(chains, draws, generator=generator, dtype=torch.float64)
    x = torch.empty_like(noise)
    x[:, 0] = noise[:, 0]  # started at stationarity: no burn-in to discard
    scale = math.sqrt(1.0 - rho * rho)
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + scale * noise[:, t]
    return x


def value_of(trace: Tensor, nfe: float) -> float:
    """``ess`` of a ``(chains, draws, 2)`` trace costing ``nfe`` evaluations per chain."""
    target = gaussian()
    context = MetricContext(None, make_generator(0), trace=trace, trace_nfe=nfe)
    return evaluate_metric("ess", torch.zeros(4, target.dim), target, context)


# -- the statistic -----------------------------------------------------------------------------
def test_iid_draws_give_one_effective_draw_per_evaluation():
    trace = torch.randn(CHAINS, DRAWS, 2, generator=make_generator(1), dtype=torch.float64)
    # One evaluation per draw: ESS per evaluation = ESS / N. Tolerance 0.1 = 6.6 s.d. of the
    # per-coordinate estimate; the minimum of two coordinates sits about 0.6 s.d. lower.
    assert value_of(trace, DRAWS) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize(("rho", "tolerance"), [(0.5, 0.05), (0.9, 0.015)])
def test_ar1_chains_give_the_known_ess_and_the_slowest_coordinate_counts(rho, tolerance):
    generator = make_generator(2)
    slow = ar1(rho, CHAINS, DRAWS, generator)
    fast = torch.randn(CHAINS, DRAWS, generator=generator, dtype=torch.float64)
    trace = torch.stack([fast, slow], dim=-1)  # (chains, draws, 2): i.i.d. beside AR(1)
    expected = (1 - rho) / (1 + rho)
    # rho = 0.5: 0.05 = 4.6 s.d. beyond the +1% bias; rho = 0.9: 0.015 = 4.2 s.d. beyond +2%.
    assert value_of(trace, DRAWS) == pytest.approx(expected, abs=tolerance)
    # The cost divides exactly: two evaluations per draw (an HMC with two leapfrog steps)
    # halve the ESS per evaluation of the same chains.
    assert value_of(trace, 2 * DRAWS) == pytest.approx(value_of(trace, DRAWS) / 2, rel=1e-12)


def test_chains_stuck_in_different_modes_score_low():
    # Every chain jitters around its own mode at -5 or +5 and never crosses: within-chain
    # draws look independent, but bulk ESS uses the between-chain variance and sees that the
    # trace holds about one draw of the mode per chain.
    generator = make_generator(3)
    modes = torch.where(torch.arange(CHAINS) % 2 == 0, -5.0, 5.0).to(torch.float64)
    trace = (modes[:, None, None]
             + 0.1 * torch.randn(CHAINS, DRAWS, 2, generator=generator, dtype=torch.float64))
    assert value_of(trace, DRAWS) < 0.01  # i.i.d. would be ~1


def test_a_coordinate_no_chain_moved_in_has_no_effective_draws():
    trace = torch.randn(CHAINS, 100, 2, generator=make_generator(4), dtype=torch.float64)
    trace[..., 1] = 3.0  # ArviZ alone would count this as 3,200 independent draws
    assert value_of(trace, 100) == 0.0


def test_the_floor_is_the_iid_value():
    target = gaussian()
    trace = iid_trace(target, 1000, make_generator(5))
    assert tuple(trace.positions.shape) == (TRACE_CHAINS, 1000, 2) and trace.nfe == 1000
    assert trace.positions.device.type == "cpu"
    mean, _ = reference_floor("ess", target, 100, make_generator(6))
    assert mean == pytest.approx(1.0, abs=0.1)


# -- what it needs ------------------------------------------------------------------------------
def test_it_is_declared_as_a_metric_of_the_chain():
    info = METRIC_INFO["ess"]
    assert not info.lower_is_better and not info.flag_below_floor
    assert info.requires == frozenset() and info.sampler_requires == {"trace"}
    assert METRICS["ess"].sampler_requires == {"trace"}
    assert needs_trace(["ksd", "ess"]) and not needs_trace(["ksd", "energy_distance"])


def test_without_a_trace_or_with_too_few_draws_it_raises_the_requirement():
    target = gaussian()
    x = torch.zeros(8, 2)
    with pytest.raises(MetricRequirementError, match="chain trace"):
        evaluate_metric("ess", x, target, MetricContext(None, make_generator(0)))
    with pytest.raises(MetricRequirementError, match="at least 4 draws"):
        ess_per_evaluation(x, target, MetricContext(None, make_generator(0),
                                                    trace=torch.zeros(4, 3, 2), trace_nfe=3.0))
    with pytest.raises(ValueError, match="shape"):
        ess_per_evaluation(x, target, MetricContext(None, make_generator(0),
                                                    trace=torch.zeros(4, 10, 3), trace_nfe=1.0))


@pytest.mark.parametrize(("name", "phrase"), [
    ("svgd", "particles interact"),
    ("annealed_langevin", "non-stationary by design"),
    ("sgld", "time-inhomogeneous"),
    ("dft_ns", "neural sampler"),
    ("pis", "neural sampler"),
])
def test_samplers_that_are_not_chains_declare_why(name, phrase):
    assert phrase in SAMPLERS[name]().not_a_chain()


def test_chains_declare_themselves_and_their_warm_up():
    for name in ("ula", "mala", "hmc", "pt"):
        assert SAMPLERS[name]().not_a_chain() is None
    # Adapting samplers: floor(warmup_fraction * K) transitions; ULA adapts nothing.
    assert SAMPLERS["mala"](warmup_fraction=0.3).warmup_steps(101) == 30
    assert SAMPLERS["ula"]().warmup_steps(101) == 0


def test_an_undeclared_iterative_sampler_is_not_a_chain():
    class Plugin(SAMPLERS["ula"]):
        name = "my_plugin"
        markov_chain = False

    assert "does not declare its particles independent Markov chains" in Plugin().not_a_chain()


def test_joint_pyro_nuts_chains_are_not_independent():
    pytest.importorskip("pyro")
    assert SAMPLERS["pyro_nuts"]().not_a_chain() is None
    assert "not independent" in SAMPLERS["pyro_nuts"](chains="joint").not_a_chain()


def test_evaluation_without_a_trace_is_nan_with_the_reason():
    target = gaussian()
    samples = target.sample(16, make_generator(7))
    status, rows = evaluate_samples(samples, target, ["ess", "ksd"], n=16, reference_seed=1,
                                    target_label="gaussian",
                                    no_trace=SAMPLERS["dft_ns"]().not_a_chain())
    assert status == "ok"
    ess, ksd = rows
    assert math.isnan(ess["value"]) and ess["reason"].startswith("not applicable: sampler")
    assert "neural sampler" in ess["reason"] and math.isfinite(ksd["value"])
    # Stored samples (`evaluate`) say why they have none.
    _, rows = evaluate_samples(samples, target, ["ess"], n=16, reference_seed=1,
                               target_label="gaussian")
    assert rows[0]["reason"] == f"not applicable: {NO_TRACE_STORED}"


# -- the trace the runner records ---------------------------------------------------------------
class CountingStub:
    """Stands in for the run's CountingTarget: ``per_step`` evaluations per chain a step."""

    def __init__(self, per_step: float) -> None:
        self.per_step, self.steps = per_step, 0

    def nfe_per_particle(self, n: int) -> float:
        return 1.0 + self.per_step * self.steps  # init's evaluation, then each transition


def drive(recorder: TraceRecorder, num_steps: int, rows: int,
          per_step: float = 1.0) -> CountingStub:
    """Feed ``recorder`` states whose every entry is the transition's index."""
    counting = CountingStub(per_step)
    for step in range(1, num_steps + 1):
        counting.steps = step
        state = SimpleNamespace(x=torch.full((rows, 3), float(step)))
        recorder.record(state, counting)
    return counting


def test_the_recorder_keeps_the_second_half_thinned_with_its_cost(monkeypatch):
    monkeypatch.setattr("benchmark.metrics.ess.TRACE_DRAWS", 100)
    recorder = TraceRecorder(n=40, num_steps=401)
    drive(recorder, 401, rows=40, per_step=10.0)  # e.g. HMC with 10 leapfrog steps
    trace = recorder.result()
    # start = 401 // 2 = 200; 201 traced transitions thinned by ceil(201 / 100) = 3: the
    # states after transitions 203, 206, ..., 401 -- 67 draws of the first 32 chains.
    assert tuple(trace.positions.shape) == (TRACE_CHAINS, 67, 3)
    steps = trace.positions[0, :, 0]
    assert steps[0] == 203 and steps[-1] == 401 and bool((steps.diff() == 3).all())
    # The cost of the 201 transitions the draws span, per chain: 10 evaluations each.
    assert trace.nfe == pytest.approx(10.0 * 201)


def test_the_recorder_waits_for_a_longer_warm_up_and_reads_pt_rows():
    recorder = TraceRecorder(n=8, num_steps=100, warmup=80)
    # A PT state holds K n rows, temperature-major: the first n are the T = 1 chains.
    drive(recorder, 100, rows=3 * 8)
    trace = recorder.result()
    assert tuple(trace.positions.shape) == (8, 20, 3)
    assert trace.positions[0, 0, 0] == 81 and trace.nfe == pytest.approx(20.0)


TINY = {
    "name": "tiny-ess", "seeds": [0, 1], "n": 40, "metrics": ["ess", "ksd"],
    "targets": ["gaussian"],
    "samplers": [{"name": "mala", "budgets": [40]}, {"name": "svgd", "budgets": [5]},
                 {"name": "annealed_langevin", "budgets": [5]}],
}


def run_tiny(root, metrics, monkeypatch) -> tuple[ResultsStore, list[TraceRecorder]]:
    """Run TINY with ``metrics`` into ``root``; the recorders the runner made."""
    made = []

    class Spy(TraceRecorder):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(runner, "TraceRecorder", Spy)
    store = ResultsStore(root)
    matrix = parse_matrix({**TINY, "metrics": metrics})
    list(run_matrix(make_plan(matrix, store), store, cache_dir=root / "cache"))
    return store, made


@pytest.fixture(scope="module")
def ess_store(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    try:
        yield run_tiny(tmp_path_factory.mktemp("ess"), TINY["metrics"], monkeypatch)
    finally:
        monkeypatch.undo()


def test_the_runner_traces_chains_only_when_a_metric_asks(ess_store, tmp_path, monkeypatch,
                                                          single_thread):
    store, made = ess_store
    # One recorder per MALA cell (2 seeds), none for SVGD, annealed Langevin or the floors.
    assert len(made) == 2 and all(r.steps == 40 for r in made)
    assert all(tuple(r.result().positions.shape) == (32, 20, 2) for r in made)
    rows = store.load()
    ess = rows[rows["metric"].eq("ess")].set_index(["sampler", "seed"])
    assert (ess.loc["mala", "value"] > 0).all() and (ess.loc["reference", "value"] > 0.8).all()
    assert ess.loc["svgd", "value"].isna().all()
    assert ess.loc["svgd", "reason"].str.contains("particles interact").all()
    assert ess.loc["annealed_langevin", "reason"].str.contains("non-stationary").all()
    # Without a metric of the chain no trace is recorded, and recording one changes no chain:
    # the other metrics are the same numbers.
    plain, made_plain = run_tiny(tmp_path / "plain", ["ksd"], monkeypatch)
    assert made_plain == []
    ksd = rows[rows["metric"].eq("ksd")].set_index(["sampler", "budget", "seed"])["value"]
    other = plain.load()
    assert set(other["metric"]) == {"ksd"}
    pd.testing.assert_series_equal(
        ksd.sort_index(), other.set_index(["sampler", "budget", "seed"])["value"].sort_index())


def test_evaluate_leaves_stored_ess_values_alone(tmp_path, single_thread):
    # Stored samples keep no trace: recomputing the cell's metrics must not turn its stored
    # ESS into NaN, and asking for ESS by name says why it cannot be recomputed.
    matrix = parse_matrix({**TINY, "seeds": [0], "save_samples": True,
                           "samplers": [{"name": "mala", "budgets": [40]}]})
    store = ResultsStore(tmp_path / "store")
    list(run_matrix(make_plan(matrix, store), store, cache_dir=tmp_path / "cache"))
    stored = store.load()
    cell = next(c for c in evaluate_store(store) if c.stored["sampler"].iloc[0] == "mala")
    assert [row["metric"] for row in cell.rows] == ["ksd"]
    merged = {row["metric"]: row["value"] for row in cell.merged()}
    mala = stored[stored["sampler"].eq("mala")].set_index("metric")["value"]
    assert merged["ess"] == mala["ess"] > 0 and merged["ksd"] == mala["ksd"]
    asked = next(c for c in evaluate_store(store, ["ess"]) if c.cell_id == cell.cell_id)
    assert math.isnan(asked.rows[0]["value"])
    assert asked.rows[0]["reason"] == f"not applicable: {NO_TRACE_STORED}"


# -- the table ----------------------------------------------------------------------------------
def test_a_store_with_ess_gets_its_table(ess_store, tmp_path):
    store, _ = ess_store
    rows = store.load()
    texts = write_tables(rows, tmp_path)
    text = (tmp_path / "ess.md").read_text()
    assert texts["ess"] == text and (tmp_path / "ess.tex").exists()
    header = next(line for line in text.splitlines() if line.startswith("| target"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == [
        "target", "sampler@budget", "min ESS / evaluation", "min ESS / s", "NFE", "sample s"]
    assert "| gaussian | mala@40" in text.replace("  ", " ").replace("  ", " ")
    assert "reference (floor)" in text and "svgd@5" not in text.split("\n\n", 1)[1]
    assert "(omitted): annealed_langevin@5, svgd@5" in text
    assert "python -m benchmark run tiny-ess" in text


def test_ess_per_second_is_the_rate_of_all_chains():
    rows = []
    for seed, (value, seconds) in enumerate([(0.01, 2.0), (0.03, 4.0)]):
        row = {column: math.nan for column in COLUMNS}
        row.update(matrix="m", cell_id=f"c{seed}", target="t", target_name="t",
                   target_params="{}", sampler="mala", sampler_name="mala", params="{}",
                   budget=99, seed=seed, cell_seed=seed, n=50, status="ok", metric="ess",
                   value=value, reason="", nfe=100.0, sample_seconds=seconds)
        rows.append(row)
    table, omitted = ess_frame(pd.DataFrame(rows, columns=list(COLUMNS)))
    # value x n x NFE / seconds: 0.01 x 50 x 100 / 2 = 25 and 0.03 x 50 x 100 / 4 = 37.5;
    # mean 31.25, s.e. = sd / sqrt(2) = 8.84 / 1.414 = 6.25.
    entry = table.loc[("t", "mala@99")]
    assert entry["min ESS / s"] == "31.2 ± 6.2"
    assert entry["min ESS / evaluation"] == "0.02 ± 0.01"
    assert entry["NFE"] == "100" and omitted == []


def test_a_store_without_ess_gets_no_ess_table(tmp_path):
    row = {column: math.nan for column in COLUMNS}
    row.update(matrix="m", cell_id="c", target="t", target_name="t", target_params="{}",
               sampler="mala", sampler_name="mala", params="{}", budget=9, seed=0, cell_seed=0,
               n=10, status="ok", metric="ksd", value=0.5, reason="", nfe=10.0)
    texts = write_tables(pd.DataFrame([row], columns=list(COLUMNS)), tmp_path)
    assert "ess" not in texts and not (tmp_path / "ess.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aggregate.csv", "ksd.md", "ksd.tex"]
