"""The `rnncore` command (also `python -m rnncore`).

    rnncore demo       the adding problem: vanilla RNN vs LSTM vs GRU (the main demo)
    rnncore gradflow   ||dL/dx_t|| from the last step back to t=0, per cell
    rnncore charlm     a character-level LSTM language model (bits per character, samples)
    rnncore bench      the benchmark harness (rnncore.benchmark)
    rnncore check      compiled kernels vs the NumPy reference
    rnncore info       version, compiler, the kernels' instruction set and this CPU's, threads, CUDA

Bad arguments and unreadable files end the command with one line on stderr and a non-zero
status (2 for usage errors, 1 for failures); Ctrl-C stops a run, prints what was reached and
exits with status 130.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys

from . import apps
from ._cli import DEFAULT_OUT, INTERRUPTED, OneLineParser as _Parser, add_common as _add_common
from ._cli import cell_list as _cell_list, float_range as _float_range, int_at_least as _int_at_least
from ._cli import restart_with_one_blas_thread as _restart_with_one_blas_thread, threads as _threads
from .charlm import CharLMConfig, TextError
from .demo import DemoConfig

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


# ---------------------------------------------------------------- demo
def _cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    config = demo.DemoConfig(steps_per_sequence=args.T, train_steps=args.steps, lstm_hidden=args.hidden,
                             cells=args.cells, seed=args.seed, batch=args.batch, lr=args.lr,
                             eval_every=args.eval_every, test_size=args.test_size,
                             progress=args.progress)
    os.makedirs(args.out, exist_ok=True)  # fail on a bad --out before training, not after
    sizes = demo.matched_hidden_sizes(args.hidden, args.cells)
    half = args.T // 2
    print(f"rnncore demo: the adding problem (Hochreiter & Schmidhuber 1997), T={args.T}")
    print(f"  input: {args.T} steps of (value ~ U[0,1], marker); one marker in steps 0-{half - 1}, "
          f"one in {half}-{args.T - 1}")
    print(f"  target: the sum of the two marked values; always predicting 1.0 gives MSE "
          f"{demo.BASELINE_MSE:.3f}; solved: test MSE < {demo.SOLVED_MSE}")
    print(f"  model: cell -> Linear head on the last hidden state, MSE; Adam lr {args.lr:g}, "
          f"clip 1.0, batch {args.batch}, {args.steps} steps, seed {args.seed}, {args.threads} thread(s)")
    counts = ", ".join(f"{demo.CELL_NAMES[c]} H={sizes[c]}: {demo.model_parameter_count(c, sizes[c])}"
                       for c in args.cells)
    print(f"  parameters (hidden sizes matched to the LSTM's count, head included): {counts}")
    print(f"  test set: {args.test_size} sequences, evaluated every {args.eval_every} steps", flush=True)

    with _threads(args.threads):
        results = demo.run_demo(config)
    interrupted = any(r.interrupted for r in results)
    print()
    if interrupted:
        done = ", ".join(r.cell for r in results)
        print(f"interrupted: results so far ({done}; {results[-1].cell} stopped at step "
              f"{results[-1].steps_done} of {args.steps})")
    print(demo.format_table(results))
    csv_path = os.path.join(args.out, "adding_curves.csv")
    with open(csv_path, "w", encoding="utf-8") as handle:
        handle.write("cell,hidden,step,test_mse\n")
        for r in results:
            handle.writelines(f"{r.cell},{r.hidden_size},{step},{value:.6g}\n" for step, value in r.curve)
    png_path = os.path.join(args.out, "adding_curves.png")
    if args.plot and demo.plot_curves(results, config, png_path):
        print(f"learning curves: {png_path} (data: {csv_path})")
    else:
        reason = "--no-plot" if not args.plot else "install matplotlib (pip install 'rnncore[plot]') for the PNG"
        print(f"learning curves: {csv_path} ({reason})")
    if not interrupted:
        solved = [r.cell for r in results if r.solved]
        unsolved = [r.cell for r in results if not r.solved]
        print(f"solved (test MSE < {demo.SOLVED_MSE}): {', '.join(solved) or 'none'}; "
              f"not solved: {', '.join(unsolved) or 'none'}")
        if len(results) > 1:
            print("every cell had the same data, steps, learning rate and seed")
        if "RNN" in unsolved and solved:
            print("why the vanilla RNN fails: see `rnncore gradflow` (the gradient per input step)")
    return INTERRUPTED if interrupted else 0


# ---------------------------------------------------------------- gradflow
def _cmd_gradflow(args: argparse.Namespace) -> int:
    from . import gradflow
    from .demo import matched_hidden_sizes

    if args.plot:
        os.makedirs(args.out, exist_ok=True)
    sizes = matched_hidden_sizes(args.hidden, args.cells)
    state = "at initialisation" if args.train_steps == 0 else f"after {args.train_steps} training steps"
    print(f"rnncore gradflow: ||dL/dx_t|| for the adding-problem model {state}, T={args.T}")
    print(f"  loss: MSE of a Linear head on the last hidden state; geometric mean over {args.batches} "
          f"random batches of {args.batch}, float64; model seed {args.seed}")
    print("  hidden sizes matched to the LSTM's parameter count: "
          + ", ".join(f"{c.upper()} H={sizes[c]}" for c in args.cells), flush=True)
    flows = []
    with _threads(args.threads):
        for cell in args.cells:
            flows.append(gradflow.measure(cell, sizes[cell], steps=args.T, batch=args.batch,
                                          batches=args.batches, seed=args.seed,
                                          train_steps=args.train_steps, progress=args.progress))
    print(gradflow.format_table(flows, every=args.every))
    for f in flows:
        print(f"  {f.cell}: the gradient at t=0 {gradflow.first_against_last(f.decay, args.T - 1)}")
    if args.train_steps == 0:
        print("  (PyTorch's default initialisation; to see what training on the adding problem changes, "
              "add --train-steps 1500, about a minute)")
    png_path = os.path.join(args.out, "gradflow.png")
    if args.plot and gradflow.plot_norms(flows, png_path, f"Gradient norm per input step, T={args.T}, {state}"):
        print(f"plot: {png_path}")
    elif args.plot:
        print("plot: install matplotlib (pip install 'rnncore[plot]') for the PNG")
    return 0


# ---------------------------------------------------------------- charlm
def _cmd_charlm(args: argparse.Namespace) -> int:
    import numpy as np

    from . import charlm

    if args.text is None:
        text, label = charlm.default_corpus(args.max_chars)
    else:
        text, label = charlm.read_text(args.text, args.max_chars)
    config = charlm.CharLMConfig(steps=args.steps, batch=args.batch, bptt=args.bptt, hidden=args.hidden,
                                 embedding=args.embedding, lr=args.lr, seed=args.seed,
                                 eval_every=args.eval_every, progress=args.progress)
    vocab = charlm.Vocabulary(text)
    ids = vocab.encode(text)
    train_ids, held_ids = charlm.split_text(ids, config)
    if len(train_ids) < 2 * args.batch or len(held_ids) < 2:
        raise charlm.TextError(f"text too short: {len(text)} characters (need a few thousand)")
    model = charlm.CharLM(len(vocab), args.embedding, args.hidden, seed=args.seed)
    print(f"rnncore charlm: character-level LSTM on {label}")
    print(f"  {len(text)} characters, vocabulary {len(vocab)}; training on the first {len(train_ids)}, "
          f"scoring the last {len(held_ids)}")
    print(f"  model: Embedding({len(vocab)}, {args.embedding}) -> LSTM({args.embedding}, {args.hidden}) -> "
          f"Linear({args.hidden}, {len(vocab)}), {model.num_parameters()} parameters")
    print(f"  truncated BPTT: {args.batch} streams x {args.bptt} characters per step, state carried; "
          f"Adam lr {args.lr:g}, clip 1.0, {args.steps} steps, seed {args.seed}", flush=True)
    uniform = math.log2(len(vocab))
    with _threads(args.threads):
        result = charlm.train(model, train_ids, held_ids, config)
        text_out = charlm.sample(model, vocab, args.prime, args.sample_chars, args.temperature,
                                 np.random.default_rng(args.seed))
    if result.interrupted:
        print(f"interrupted at step {result.steps_done} of {args.steps}: what was reached so far")
    speed = result.steps_done * args.batch * args.bptt / result.seconds if result.seconds else float("nan")
    print(f"held-out bits per character: {result.curve[-1][1]:.3f} after {result.steps_done} steps "
          f"(uniform guess: {uniform:.3f}; training, running mean: {result.train_loss:.3f}); "
          f"{speed:,.0f} characters/s trained")
    print(f"--- sample (temperature {args.temperature:g}, primed with {args.prime!r}) ---")
    print(text_out)
    print("---")
    return INTERRUPTED if result.interrupted else 0


# ---------------------------------------------------------------- bench
def _cmd_bench(argv: list[str]) -> int:
    import importlib

    try:
        benchmark = importlib.import_module(f"{__package__ or 'rnncore'}.benchmark")
    except ModuleNotFoundError as error:
        if error.name != f"{__package__ or 'rnncore'}.benchmark":
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

    demo = sub.add_parser(
        "demo", help="the adding problem: vanilla RNN vs LSTM vs GRU (a minute or two)",
        description="Train a vanilla RNN, an LSTM and a GRU of about the same parameter count on the "
                    "adding problem (Hochreiter & Schmidhuber 1997; one marker in each half of the "
                    "sequence) and compare their test MSE with the 0.167 of always predicting 1.0. "
                    "Writes learning curves (CSV, and a PNG with matplotlib) to --out.")
    demo.add_argument("--T", type=_int_at_least(2), default=DemoConfig.steps_per_sequence,
                      help=f"sequence length (default {DemoConfig.steps_per_sequence})")
    demo.add_argument("--steps", type=_int_at_least(1), default=DemoConfig.train_steps,
                      help=f"training steps per cell (default {DemoConfig.train_steps})")
    demo.add_argument("--hidden", type=_int_at_least(1), default=DemoConfig.lstm_hidden,
                      help="LSTM hidden size; the RNN's and GRU's are matched to its parameter count "
                           f"(default {DemoConfig.lstm_hidden})")
    demo.add_argument("--cells", type=_cell_list, default=("rnn", "lstm", "gru"),
                      help="comma-separated cells to train (default rnn,lstm,gru)")
    demo.add_argument("--batch", type=_int_at_least(1), default=DemoConfig.batch,
                      help=f"batch size (default {DemoConfig.batch})")
    demo.add_argument("--lr", type=_float_range(0.0), default=DemoConfig.lr,
                      help=f"Adam learning rate (default {DemoConfig.lr:g})")
    demo.add_argument("--eval-every", type=_int_at_least(1), default=DemoConfig.eval_every,
                      help=f"steps between test-set evaluations (default {DemoConfig.eval_every})")
    demo.add_argument("--test-size", type=_int_at_least(1), default=DemoConfig.test_size,
                      help=f"test sequences (default {DemoConfig.test_size})")
    demo.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    demo.add_argument("--no-plot", dest="plot", action="store_false", help="do not write the PNG")
    _add_common(demo)
    demo.set_defaults(func=_cmd_demo)

    flow = sub.add_parser(
        "gradflow", help="gradient norm per input step for RNN, LSTM and GRU",
        description="||dL/dx_t|| for every input step t of the adding-problem model (loss on the last "
                    "output), from t=T-1 back to t=0, per cell: a table and a log-scale PNG. "
                    "Measured at initialisation (or after --train-steps of training), as the "
                    "geometric mean over --batches random batches.")
    flow.add_argument("--T", type=_int_at_least(2), default=100, help="sequence length (default 100)")
    flow.add_argument("--hidden", type=_int_at_least(1), default=32,
                      help="LSTM hidden size; the others are matched to its parameter count (default 32)")
    flow.add_argument("--cells", type=_cell_list, default=("rnn", "lstm", "gru"),
                      help="comma-separated cells (default rnn,lstm,gru)")
    flow.add_argument("--batch", type=_int_at_least(1), default=64, help="batch size (default 64)")
    flow.add_argument("--batches", type=_int_at_least(1), default=8,
                      help="random batches to average over (default 8)")
    flow.add_argument("--train-steps", type=_int_at_least(0), default=0,
                      help="train this many adding-problem steps first (default 0: at initialisation)")
    flow.add_argument("--every", type=_int_at_least(1), default=10, help="table row every k steps (default 10)")
    flow.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    flow.add_argument("--no-plot", dest="plot", action="store_false", help="do not write the PNG")
    _add_common(flow)
    flow.set_defaults(func=_cmd_gradflow)

    lm = sub.add_parser(
        "charlm", help="character-level LSTM language model (bits per character, samples)",
        description="Train Embedding -> LSTM -> Linear on the characters of a text with truncated BPTT, "
                    "report bits per character on the held-out tail and sample text. Without --text, "
                    "uses Python standard-library sources already on this machine.")
    lm.add_argument("--text", metavar="FILE", help="a UTF-8 text file (default: Python stdlib sources)")
    lm.add_argument("--max-chars", type=_int_at_least(100), default=400_000,
                    help="read at most this many characters (default 400000)")
    lm.add_argument("--steps", type=_int_at_least(1), default=CharLMConfig.steps,
                    help=f"training steps (default {CharLMConfig.steps})")
    lm.add_argument("--batch", type=_int_at_least(1), default=CharLMConfig.batch,
                    help=f"parallel streams (default {CharLMConfig.batch})")
    lm.add_argument("--bptt", type=_int_at_least(1), default=CharLMConfig.bptt,
                    help=f"characters per chunk (default {CharLMConfig.bptt})")
    lm.add_argument("--hidden", type=_int_at_least(1), default=CharLMConfig.hidden,
                    help=f"LSTM hidden size (default {CharLMConfig.hidden})")
    lm.add_argument("--embedding", type=_int_at_least(1), default=CharLMConfig.embedding,
                    help=f"embedding size (default {CharLMConfig.embedding})")
    lm.add_argument("--lr", type=_float_range(0.0), default=CharLMConfig.lr,
                    help=f"Adam learning rate (default {CharLMConfig.lr:g})")
    lm.add_argument("--eval-every", type=_int_at_least(1), default=CharLMConfig.eval_every,
                    help=f"steps between held-out evaluations (default {CharLMConfig.eval_every})")
    lm.add_argument("--temperature", type=_float_range(0.0, low_inclusive=True), default=0.8,
                    help="sampling temperature; 0 = always the most likely (default 0.8)")
    lm.add_argument("--sample-chars", type=_int_at_least(0), default=400,
                    help="characters to sample (default 400)")
    lm.add_argument("--prime", default="def ", help="text the sample starts from (default 'def ')")
    _add_common(lm)
    lm.set_defaults(func=_cmd_charlm)

    apps.register_all(sub)

    sub.add_parser("bench", add_help=False, help="benchmark harness (rnncore.benchmark; `rnncore bench --help`)")

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
    except TextError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # e.g. --out names a file, or a folder we may not write to
        where = f" {error.filename!r}" if error.filename else ""
        print(f"{prog}: error: cannot use{where}: {error.strerror or error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
