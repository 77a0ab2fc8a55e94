"""The ``convgrad`` command (also ``python -m convgrad``)."""

from __future__ import annotations

import argparse
import sys

from .conv import ALGORITHMS


def _verify(args: argparse.Namespace) -> int:
    from . import verify

    return 0 if verify.run(args.algorithms, seed=args.seed) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convgrad", description="Convolutional networks in NumPy with every gradient derived by hand and checked."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    verify = commands.add_parser(
        "verify", help="check every convolution algorithm against numerical gradients on this machine"
    )
    verify.add_argument("--algorithms", nargs="+", choices=tuple(ALGORITHMS), default=tuple(ALGORITHMS))
    verify.add_argument("--seed", type=int, default=0)
    verify.set_defaults(run=_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
