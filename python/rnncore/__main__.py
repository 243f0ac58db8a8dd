"""The `rnncore` command (also `python -m rnncore`)."""

from __future__ import annotations

import argparse
import sys


def _cmd_check(args: argparse.Namespace) -> int:
    from .selfcheck import format_table, run_checks

    rows = run_checks(seed=args.seed)
    print("rnncore self-check: compiled kernels vs the NumPy reference (2 layers, bidirectional,")
    print("unequal lengths; errors are max |a-b| / max(1, max|b|) over outputs/states and all gradients)")
    print(format_table(rows))
    failed = [r for r in rows if not r.ok]
    print("all kernels agree with the reference" if not failed else f"{len(failed)} check(s) FAILED")
    return 1 if failed else 0


def _cmd_info(args: argparse.Namespace) -> int:
    from . import build_info

    for key, value in build_info().items():
        print(f"{key:>12}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnncore", description="Fast CPU recurrent networks: tools and demos.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = sub.add_parser("check", help="compare every cell's compiled kernels with the NumPy reference")
    check.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    check.set_defaults(func=_cmd_check)
    info = sub.add_parser("info", help="version, compiler, SIMD level, threads, CUDA")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
