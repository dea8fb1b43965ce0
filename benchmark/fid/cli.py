"""The ``train-classifier`` and ``ebm-reference`` subcommands of ``python -m benchmark``.

:func:`add_commands` registers both on the main parser's subparsers (``benchmark/cli.py``).
Each handler returns an exit code and raises :class:`benchmark.schema.UsageError` for bad
input. Handlers import what they run when called, so registering the commands (every
``python -m benchmark`` start, ``--help`` included) loads no torch.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from benchmark.schema import UsageError


def _command_line(args: argparse.Namespace, name: str) -> str:
    """The canonical command: every option explicit, so a checkpoint says how to remake it."""
    options = " ".join(f"--{key.replace('_', '-')} {shlex.quote(str(value))}"
                       for key, value in vars(args).items()
                       if key not in ("command", "handler") and value is not None)
    return f"python -m benchmark {name} {options}"


def _command_train_classifier(args: argparse.Namespace) -> int:
    # Imports inside the handlers: torch loads only when a command runs (fast CLI start).
    import torch

    from benchmark.fid.evaluation import fid_floor, split_outputs
    from benchmark.fid.features import (
        CHECKPOINT_DIR,
        checkpoint_path,
        load_classifier,
        save_checkpoint,
        train_classifier,
    )
    from targets.datasets import DatasetUnavailable

    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs: expected an integer >= 1, got {args.epochs}")
    if args.floor_repeats < 1:
        raise UsageError(f"--floor-repeats: expected an integer >= 1, got {args.floor_repeats}")
    directory = Path(args.out_dir) if args.out_dir else CHECKPOINT_DIR
    try:
        checkpoint = train_classifier(args.dataset, seed=args.seed, num_epochs=args.epochs,
                                      progress=True)
    except (ValueError, DatasetUnavailable) as error:
        raise UsageError(str(error)) from None
    checkpoint["command"] = _command_line(args, "train-classifier")
    path = checkpoint_path(args.dataset, directory)
    save_checkpoint(checkpoint, path)
    # A process that loaded the old checkpoint (or its features) must see the new one.
    load_classifier.cache_clear()
    split_outputs.cache_clear()
    num_test = len(split_outputs(args.dataset, "test", str(directory))[0])
    num_train = len(split_outputs(args.dataset, "train", str(directory))[0])
    sizes = sorted({n for n in (args.floor_n or [num_test, 500]) if 2 <= n <= num_train})
    floors = []
    for n in sizes:
        mean, std = fid_floor(args.dataset, n, seed=0, num_repeats=args.floor_repeats,
                              directory=str(directory))
        floors.append({"n": n, "mean": mean, "std": std, "num_repeats": args.floor_repeats})
    checkpoint["fid_floor"] = floors
    save_checkpoint(checkpoint, path)
    print(f"trained the {args.dataset} classifier in {checkpoint['seconds']:.1f} s: test "
          f"accuracy {checkpoint['test_accuracy']:.4f} (train {checkpoint['train_accuracy']:.4f})"
          f"; wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    for floor in floors:
        print(f"FID floor (n = {floor['n']} training images vs the {num_test} test images, "
              f"{floor['num_repeats']} subsets): {floor['mean']:.3f} ± {floor['std']:.3f}")
    return 0


def _command_ebm_reference(args: argparse.Namespace) -> int:
    import torch

    from benchmark.fid.reference import make_reference, reference_directory, save_reference
    from benchmark.plan.matrix import check_device
    from targets import make_target

    if args.device is not None:
        check_device(args.device)
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    if args.steps < 1:
        raise UsageError(f"--steps: expected an integer >= 1, got {args.steps}")
    try:
        target = make_target(args.target, device=args.device or "cpu")
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    if target.dataset is None or target.image_shape is None:
        raise UsageError(f"--target: '{args.target}' is not an image energy (no image data set)")
    start = time.perf_counter()
    try:
        samples, info = make_reference(target, args.steps, n=args.n, seed=args.seed,
                                       step_size=args.step_size,
                                       warmup_fraction=args.warmup_fraction,
                                       progress=True)
    except ValueError as error:
        raise UsageError(str(error)) from None
    info["command"] = _command_line(args, "ebm-reference")
    info["wall_seconds"] = time.perf_counter() - start
    info["num_threads"] = torch.get_num_threads()
    directory = save_reference(samples, info,
                               args.out or reference_directory(target.name))
    for label, run in info["runs"].items():
        print(f"{label}: step size {run['step_size']:.4g}, acceptance {run['acceptance_rate']:.3f}"
              f", FID to test data {run['fid_to_test_data']:.2f}, class TV {run['class_tv']:.3f}"
              f", max class share {run['class_max_share']:.3f} ({run['seconds']:.0f} s)")
    print(f"FID between the runs (reference floor, n = {info['n']}): "
          f"{info['fid_between_runs']:.2f}; wrote {directory} in {info['wall_seconds']:.0f} s")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``train-classifier`` and ``ebm-reference`` on the main parser's subparsers."""
    classifier = commands.add_parser(
        "train-classifier", help="train an image dataset's FID feature classifier (training "
                                 "split only) and record its test accuracy and FID floor")
    classifier.add_argument("--dataset", required=True,
                            help="image dataset (digits, mnist5k, fashion_mnist, mnist)")
    classifier.add_argument("--seed", type=int, default=0, help="default: 0")
    classifier.add_argument("--epochs", type=int, help="default: the dataset's recipe")
    classifier.add_argument("--out-dir", help="checkpoint directory (default: "
                                              "benchmark/fid/checkpoints; file <dataset>.pt)")
    classifier.add_argument("--floor-n", type=int, nargs="+",
                            help="sample sizes of the FID floor (default: test-split size, 500)")
    classifier.add_argument("--floor-repeats", type=int, default=10,
                            help="random training subsets per floor (default: 10)")
    classifier.add_argument("--num-threads", type=int, help="torch intra-op threads")
    classifier.set_defaults(handler=_command_train_classifier)

    reference = commands.add_parser(
        "ebm-reference", help="long seeded MALA runs on an image energy (from held-out data "
                              "and from noise): the reference samples of fid_ref")
    reference.add_argument("--target", required=True,
                           help="image energy target (ebm_digits, ebm_mnist16, ebm_mnist5k)")
    reference.add_argument("--steps", type=int, required=True, help="MALA transitions per chain")
    reference.add_argument("--out", help="directory (default: benchmark/fid/references/TARGET)")
    reference.add_argument("--n", type=int,
                           help="chains per run (default: min(500, test-split size))")
    reference.add_argument("--seed", type=int, default=0, help="default: 0")
    reference.add_argument("--step-size", type=float, default=1e-3,
                           help="initial MALA step size before warm-up (default: 1e-3)")
    reference.add_argument("--warmup-fraction", type=float, default=0.2,
                           help="fraction of steps adapting the step size (default: 0.2)")
    reference.add_argument("--device", help="cpu (default), cuda, cuda:1")
    reference.add_argument("--num-threads", type=int, help="torch intra-op threads")
    reference.set_defaults(handler=_command_ebm_reference)
