"""The ``convgrad`` command (also ``python -m convgrad``).

Usage errors (an unknown option, a missing data directory, a model that does not fit the dataset, an
unusable checkpoint) print one line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys

from .conv import ALGORITHMS


class UsageError(Exception):
    """A problem with what the user asked for: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


# --- train ---------------------------------------------------------------------------------------

def _make_optimizer(name: str, params, lr: float, weight_decay: float, momentum: float):
    from . import optim

    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return optim.OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay)


def _resolve(args) -> dict:
    """The run's settings: the dataset's recipe, overridden by the command line (and a resumed run)."""
    from . import checkpoint, models

    resumed = checkpoint.load(args.resume) if args.resume else None
    saved = resumed.training if resumed else {}
    dataset = args.dataset or saved.get("dataset") or "digits"
    if resumed and dataset != saved.get("dataset"):
        raise UsageError(f"checkpoint {args.resume} was trained on {saved.get('dataset')!r}, not {dataset!r}")
    recipe = models.RECIPES[dataset]
    settings = {"dataset": dataset, "model": recipe.model, "epochs": recipe.epochs, "batch_size": recipe.batch_size,
                "optimizer": recipe.optimizer, "lr": recipe.lr, "weight_decay": recipe.weight_decay,
                "momentum": recipe.momentum, "shuffle": recipe.shuffle, "seed": 0}
    settings.update({k: saved[k] for k in settings if k in saved})
    overrides = {k: getattr(args, k) for k in settings if getattr(args, k, None) is not None}
    if resumed:
        fixed = [k for k in ("model", "optimizer", "batch_size", "seed") if k in overrides and overrides[k] != settings[k]]
        if fixed:
            raise UsageError(f"checkpoint {args.resume} was made with {', '.join(f'{k}={settings[k]!r}' for k in fixed)}; "
                             "a resumed run keeps them")
    settings.update(overrides)
    return {"settings": settings, "checkpoint": resumed}


def _train(args) -> int:
    from . import data, models, report
    from ._random import manual_seed
    from .train import Trainer, TrainingDiverged, TrainingInterrupted, confusion_matrix, evaluate

    resolved = _resolve(args)
    s, resumed = resolved["settings"], resolved["checkpoint"]
    dataset = data.load(s["dataset"], args.data_dir)
    if resumed:
        model = resumed.build_model()
    else:
        manual_seed(s["seed"])
        model = models.build(s["model"], dataset.input_shape, len(dataset.classes))
    optimizer = _make_optimizer(s["optimizer"], model.parameters(), s["lr"], s["weight_decay"], s["momentum"])
    out = pathlib.Path(args.out) if args.out else (
        pathlib.Path(args.resume).parent if args.resume
        else pathlib.Path("runs") / f"{s['dataset']}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(model, optimizer, dataset, batch_size=s["batch_size"], seed=s["seed"], shuffle=s["shuffle"],
                      checkpoint_path=out / "model.npz", meta=s)
    if resumed:
        trainer.restore(resumed)
    print(f"training {s['model']} on {s['dataset']} ({len(dataset.x_train)} train, {len(dataset.x_test)} test) "
          f"for {s['epochs']} epochs: {s['optimizer']} lr {s['lr']}, batch {s['batch_size']}, seed {s['seed']}"
          f"{'' if s['shuffle'] else ', batches in order'}")
    try:
        history = trainer.fit(s["epochs"])
    except TrainingDiverged as error:
        print(f"convgrad: training stopped: {error}", file=sys.stderr)
        return 1
    except TrainingInterrupted as error:
        print(f"convgrad: {error}; checkpoint saved to {out / 'model.npz'} (continue with --resume)", file=sys.stderr)
        return 130
    _, accuracy, predictions = evaluate(model, dataset.x_test, dataset.y_test)
    confusion = confusion_matrix(dataset.y_test, predictions, len(dataset.classes))
    report.write_metrics(out / "metrics.json", dataset=s["dataset"], model=s["model"], epochs=s["epochs"],
                         test_accuracy=accuracy, history=history, confusion=confusion, settings=s,
                         train_seconds=sum(h["seconds"] for h in history))
    report.plot_curves(out / "curves.png", history)
    report.plot_confusion(out / "confusion.png", confusion, dataset.classes)
    print(f"final test accuracy: {accuracy:.4f} ({accuracy * 100:.2f}%)")
    print(f"wrote {out}/metrics.json, model.npz, curves.png, confusion.png")
    return 0


def _evaluate(args) -> int:
    from . import checkpoint, data, report
    from .train import confusion_matrix, evaluate

    loaded = checkpoint.load(args.checkpoint)
    name = args.dataset or loaded.training.get("dataset")
    if name is None:
        raise UsageError(f"checkpoint {args.checkpoint} does not say its dataset: give --dataset")
    dataset = data.load(name, args.data_dir)
    model = loaded.build_model()
    try:
        _, accuracy, predictions = evaluate(model, dataset.x_test, dataset.y_test)
    except ValueError as error:
        raise UsageError(f"the model in {args.checkpoint} does not fit dataset {name!r}: {error}") from None
    print(f"{name} test accuracy: {accuracy:.4f} ({accuracy * 100:.2f}%) on {len(dataset.y_test)} examples")
    print(report.format_confusion(confusion_matrix(dataset.y_test, predictions, len(dataset.classes)), dataset.classes))
    return 0


def _sizes(text: str):
    """``"2"`` -> 2, ``"2x1"`` -> (2, 1); padding may also be ``same`` or ``valid``."""
    from .explain.derivation import parse_sizes

    if text in ("same", "valid"):
        return text
    try:
        return parse_sizes(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or integers joined by x (like 2 or 2x1), got {text!r}") from None


def _explain(args) -> int:
    from .explain import explain

    document = explain(args.input, args.kernel, args.stride, args.padding, args.dilation, args.format)
    if args.out:
        pathlib.Path(args.out).write_text(document, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(document)
    return 0


def _bench(args) -> int:
    from . import bench

    return bench.from_args(args)


def _verify(args) -> int:
    from . import verify

    return 0 if verify.run(args.algorithms, seed=args.seed) else 1


# --- the parser ----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from .data import DATASETS
    from .models import MODELS
    from .optim import OPTIMIZERS

    parser = _Parser(prog="convgrad",
                     description="Convolutional networks in NumPy with every gradient derived by hand and checked.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="train a CNN (default: digits-cnn on scikit-learn's digits)")
    train.add_argument("--dataset", choices=DATASETS, help="default: digits, or the resumed run's")
    train.add_argument("--model", choices=tuple(MODELS), help="default: the dataset's recipe")
    train.add_argument("--epochs", type=_positive_int)
    train.add_argument("--batch-size", dest="batch_size", type=_positive_int)
    train.add_argument("--lr", type=float)
    train.add_argument("--optimizer", choices=tuple(OPTIMIZERS))
    train.add_argument("--weight-decay", dest="weight_decay", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--data-dir", dest="data_dir", help="directory of MNIST IDX files or CIFAR-10 batches")
    train.add_argument("--out", help="output directory (default: runs/<dataset>-<time>/)")
    train.add_argument("--resume", help="continue from this checkpoint (model.npz)")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="test accuracy and confusion matrix of a checkpoint")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--dataset", choices=DATASETS)
    evaluate.add_argument("--data-dir", dest="data_dir")
    evaluate.set_defaults(run=_evaluate)

    explain = commands.add_parser(
        "explain", help="derive and verify the forward and backward equations of a small convolution")
    explain.add_argument("--input", required=True, type=_sizes, help="input size: 4 (1-D) or 4x4 (2-D)")
    explain.add_argument("--kernel", required=True, type=_sizes, help="kernel size: 2 or 2x2")
    explain.add_argument("--stride", type=_sizes, default=1)
    explain.add_argument("--padding", type=_sizes, default=0, help="zeros on each side, 1x2 per dim, same or valid")
    explain.add_argument("--dilation", type=_sizes, default=1)
    from .explain import FORMATS

    explain.add_argument("--format", choices=FORMATS, default="text")
    explain.add_argument("--out", help="write the document to this file instead of printing it")
    explain.set_defaults(run=_explain)

    bench = commands.add_parser("bench", help="time convolutions and training steps against PyTorch (if installed)")
    from .bench import add_arguments

    add_arguments(bench)
    bench.set_defaults(run=_bench)

    verify = commands.add_parser("verify", help="check every convolution algorithm against numerical gradients")
    verify.add_argument("--algorithms", nargs="+", choices=tuple(ALGORITHMS), default=tuple(ALGORITHMS))
    verify.add_argument("--seed", type=int, default=0)
    verify.set_defaults(run=_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (UsageError, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"convgrad {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
