"""A neural training stopped part-way and resumed from its last snapshot is bit-for-bit the
uninterrupted training: weights, optimiser moments, EMA, plateau rule, generator state,
evaluation counts and history (tiny networks, a dozen iterations: about a second each)."""

from __future__ import annotations

import io

import pytest
import torch

from samplers import SAMPLERS
from samplers.base import TrainingCheckpoint, run_training
from targets import CountingTarget, make_generator, make_target

ITERATIONS = 12
STOP_AT = 7  # the iteration whose before_step call ends the first run

#: Every neural sampler's training state, with the pieces that make resuming hard switched on:
#: EMA, learning-rate warm-up, score warm start, the held-out monitor and its plateau rule.
IMPLICIT = dict(hidden_width=16, hidden_depth=2, batch_size=32, log_every=4, score_warmup=2,
                warmup_iterations=5, ema_decay=0.9, monitor_every=3, monitor_batch=32,
                patience=1, max_lr_decays=5)
CONFIGS = {
    "dft_ns": IMPLICIT,
    "kl_ns": IMPLICIT,
    "fisher_ns": IMPLICIT,
    "pis": dict(hidden_width=16, hidden_depth=1, batch_size=16, num_train_steps=4,
                warmup_iterations=5, ema_decay=0.9, log_every=4),
}


class Stopped(Exception):
    """Ends the first run, as a killed process or a cell deadline would."""


def _stop_at(count: int):
    """A ``before_step`` that raises :class:`Stopped` at its ``count``-th call."""
    calls = 0

    def before_step() -> None:
        nonlocal calls
        calls += 1
        if calls == count:
            raise Stopped

    return before_step


def _tensors(state: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a (nested) state dict, by dotted path: the weights and buffers."""
    found = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            found[prefix + key] = value
        elif isinstance(value, dict):
            found.update(_tensors(value, f"{prefix}{key}."))
    return found


def _without_seconds(history: list[dict]) -> list[dict]:
    return [row for row in history if row["metric"] != "train_seconds"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_resumed_training_is_the_uninterrupted_one(name, single_thread):
    expected_target = CountingTarget(make_target("mog2"))
    expected = SAMPLERS[name](**CONFIGS[name])
    expected_history = run_training(expected, expected_target, make_generator(3), ITERATIONS)

    target = CountingTarget(make_target("mog2"))
    saved: list[bytes] = []

    def save(snapshot: dict) -> None:  # through bytes: what a file round trip gives
        buffer = io.BytesIO()
        torch.save({**snapshot, "counts": target.num_evaluations}, buffer)
        saved.append(buffer.getvalue())

    with pytest.raises(Stopped):
        run_training(SAMPLERS[name](**CONFIGS[name]), target, make_generator(3), ITERATIONS,
                     before_step=_stop_at(STOP_AT),
                     checkpoint=TrainingCheckpoint(save=save, every_seconds=0.0))
    # every_seconds = 0: one snapshot before each iteration that ran (STOP_AT - 1 of them).
    assert len(saved) == STOP_AT - 1
    snapshot = torch.load(io.BytesIO(saved[-1]), weights_only=True)

    resumed_target = CountingTarget(make_target("mog2"))
    resumed_target.num_evaluations = snapshot["counts"]
    resumed = SAMPLERS[name](**CONFIGS[name])
    history = run_training(resumed, resumed_target, make_generator(99), ITERATIONS,
                           checkpoint=TrainingCheckpoint(save=lambda s: None,
                                                         resume_from=snapshot))

    weights, reference = _tensors(resumed.state_dict()), _tensors(expected.state_dict())
    assert weights.keys() == reference.keys() and reference
    for key, tensor in reference.items():  # exactly equal, not merely close
        assert torch.equal(tensor, weights[key]), key
    assert _without_seconds(history) == _without_seconds(expected_history)
    assert resumed_target.num_evaluations == expected_target.num_evaluations
    assert resumed.ledger["train_iterations"] == expected.ledger["train_iterations"]
    assert resumed.ledger["train_seconds"] > 0


def test_the_harness_resumes_a_stopped_training_from_its_partial_snapshot(
        tmp_path, single_thread, monkeypatch):
    from benchmark.plan.matrix import parse_matrix
    from benchmark.plan.plan import make_plan
    from benchmark.run import runner
    from benchmark.run.deadline import CellTimeout
    from benchmark.run.runner import run_matrix
    from benchmark.store import ResultsStore

    matrix = parse_matrix({
        "seeds": [0], "n": 64, "metrics": ["energy_distance"], "targets": ["gaussian"],
        "samplers": [{"name": "dft_ns", "budgets": [1],
                      "params": dict(IMPLICIT, num_iterations=ITERATIONS)}]})

    def run(root, deadline=None) -> ResultsStore:
        store = ResultsStore(root / "store")
        with monkeypatch.context() as patch:
            if deadline is not None:  # stop the training part-way, snapshotting every step
                patch.setattr(runner.Deadline, "after", classmethod(lambda cls, s: deadline))
                patch.setattr(runner, "CHECKPOINT_SECONDS", 0.0)
            list(run_matrix(make_plan(matrix, store, force=True), store,
                            cache_dir=root / "cache"))
        return store

    class StopAfter:
        """A deadline that passes at its ``count``-th check (the runner checks it before each
        training iteration, then before each metric)."""

        seconds = 1.0

        def __init__(self, count: int) -> None:
            self.count, self.calls = count, 0

        def check(self) -> None:
            self.calls += 1
            if self.calls >= self.count:
                raise CellTimeout("exceeded 1 s")

    def dft_rows(store: ResultsStore):
        rows = store.load()
        return rows[rows["sampler"].eq("dft_ns")].reset_index(drop=True)

    expected = dft_rows(run(tmp_path / "uninterrupted"))
    stopped = dft_rows(run(tmp_path / "resumed", deadline=StopAfter(STOP_AT)))
    assert len(stopped) and (stopped["status"] == "failed").all()
    partials = list((tmp_path / "resumed" / "cache").glob("*.partial.pt"))
    assert len(partials) == 1
    # Stopped part-way: the snapshot is of a training that had taken some iterations.
    iteration = torch.load(partials[0], weights_only=True)["sampler"]["state"]["iteration"]
    assert 0 < iteration < ITERATIONS

    resumed = dft_rows(run(tmp_path / "resumed"))
    assert len(resumed) and (resumed["status"] == "ok").all()
    for column in ("value", "train_nfe", "train_hvp", "train_iterations"):
        assert resumed[column].tolist() == expected[column].tolist(), column
    assert not partials[0].exists()  # the finished training replaced its snapshot
