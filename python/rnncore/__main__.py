"""The `rnncore` command (also `python -m rnncore`).

    rnncore demo       the adding problem: vanilla RNN vs LSTM vs GRU (the main demo)
    rnncore gradflow   ||dL/dx_t|| from the last step back to t=0, per cell
    rnncore charlm     a character-level LSTM language model (bits per character, samples)
    rnncore seq2seq    encoder-decoder with and without attention, accuracy against source length
    rnncore tag        bidirectional vs one-way LSTM tagging
    rnncore forecast   LSTM/GRU forecasts vs last value, seasonal naive and linear AR
    rnncore nextword   word-level LSTM language model vs unigram/bigram, next-word top 5
    rnncore cost       the sequential-computation cost: LSTM over T steps vs Linear, parameter counts
    rnncore bench      the benchmark harness (rnncore.apps.benchmark)
    rnncore check      compiled kernels vs the NumPy reference
    rnncore info       version, compiler, the kernels' instruction set and this CPU's, threads, CUDA

Bad arguments and unreadable files end the command with one line on stderr and a non-zero
status (2 for usage errors, 1 for failures); Ctrl-C stops a run, prints what was reached and
exits with status 130.
"""

from __future__ import annotations

import argparse
import sys

from . import apps
from ._cli import INTERRUPTED, CommandError, OneLineParser as _Parser, add_common as _add_common
from ._cli import restart_with_one_blas_thread as _restart_with_one_blas_thread


# ---------------------------------------------------------------- check / info
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
    from . import _core, _isa, build_info, get_thread_plan

    info = build_info()
    cpu_features = _core.cpu_isa_features()
    lacking = _isa.missing(info["isa_features"], cpu_features)
    if cpu_features is None:
        cpu_isa = "unknown (this build cannot ask the CPU)"
    else:
        cpu_isa = _isa.describe(info["arch"], cpu_features)
        cpu_isa += f": LACKS {', '.join(lacking)}" if lacking else ": runs these kernels"
    vector_floats = info["vector_bytes"] // 4
    rows = [
        ("version", info["version"]),
        ("compiler", info["compiler"]),
        ("eigen", info["eigen"]),
        ("kernel_isa", f"{info['isa']}, fixed when built (RNNCORE_ARCH)"),
        ("simd", f"{8 * info['vector_bytes']}-bit vectors ({vector_floats} floats); "
                 f"weight panels {info['panel_floats']} floats wide"),
        ("cpu", _isa.cpu_model_name()),
        ("cpu_isa", cpu_isa),
        ("openmp", info["openmp"]),
        ("max_threads", info["max_threads"]),
        ("cuda", f"{info['cuda']}" + (f" (CUDA {info['cuda_version']}; device: {info['cuda_device']})"
                                     if info["cuda"] else " (built without RNNCORE_CUDA)")),
        ("thread_plan", get_thread_plan()),
        ("l2_per_core", f"{_core.l2_cache_bytes() / 1024:.0f} KiB (weighed by the time-loop split)"),
    ]
    for key, value in rows:
        print(f"{key:>12}: {value}")
    if lacking:
        print(f"rnncore info: warning: this CPU lacks {', '.join(lacking)}, which the kernels were "
              "built for: they stop with an illegal instruction here. Rebuild for this CPU "
              "(pip install . -Ccmake.define.RNNCORE_ARCH=auto, or =generic for any x86-64)",
              file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- bench
def _cmd_bench(argv: list[str]) -> int:
    import importlib

    try:
        benchmark = importlib.import_module(f"{__package__ or 'rnncore'}.apps.benchmark")
    except ModuleNotFoundError as error:
        if error.name != f"{__package__ or 'rnncore'}.apps.benchmark":
            raise  # the harness exists but something it imports is missing: show it
        print("rnncore bench: error: the benchmark harness (rnncore.benchmark) is not available "
              "in this installation", file=sys.stderr)
        return 1
    try:
        return int(benchmark.main(argv) or 0)
    except SystemExit as exit_:  # its own --help or usage error: a status, not an exit, in-process
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rnncore", description="Fast CPU recurrent networks: tools and demos. "
                     "Start with `rnncore demo`.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    apps.register_all(sub)

    sub.add_parser("bench", add_help=False, help="benchmark harness (rnncore.apps.benchmark; `rnncore bench --help`)")

    check = sub.add_parser("check", help="compare every cell's compiled kernels with the NumPy reference")
    _add_common(check, threads=False)
    check.set_defaults(func=_cmd_check)
    info = sub.add_parser("info", help="version, compiler, the kernels' instruction set and this CPU's, "
                                      "threads and thread plan, CUDA")
    info.set_defaults(func=_cmd_info)
    parser.set_defaults(commands=sub.choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default: this program's arguments) and return its status.

    Only a call without ``argv``, the program itself, may restart the process to limit the BLAS
    threads (see _restart_with_one_blas_thread); a call with a list runs in place.
    """
    as_program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":  # the harness parses its own arguments
        try:
            return _cmd_bench(argv[1:])
        except KeyboardInterrupt:
            print("\nrnncore bench: interrupted", file=sys.stderr)
            return INTERRUPTED
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the subcommand's parser, so the message names the command
            command = args.commands.get(getattr(args, "command", None), parser)
            command.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exit_:  # --help (0) or a usage error (2): return instead of exiting
        return exit_.code if isinstance(exit_.code, int) else 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    prog = f"rnncore {args.command}"
    if as_program and hasattr(args, "threads"):
        _restart_with_one_blas_thread()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except CommandError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # e.g. --out names a file, or a folder we may not write to
        where = f" {error.filename!r}" if error.filename else ""
        print(f"{prog}: error: cannot use{where}: {error.strerror or error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
