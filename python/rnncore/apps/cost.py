"""`rnncore cost`: what the sequential recurrence costs against a feed-forward layer.

An LSTM must run its T steps one after another (step t needs h_{t-1}); a feed-forward Linear
layer of the same width treats the T positions independently, as one matrix product. We time
both over the same input, (T, batch, input) float32, for several T: rnncore's LSTM (weights
packed once, ``LSTM.prepare()``) against ``rnncore.Linear`` (one NumPy GEMM), and, where torch
is installed, ``torch.nn.LSTM`` against ``torch.nn.Linear``, inference only. The ratio
LSTM / Linear is the textbook's ">10x" (512 steps, batch 32, 256 -> 256).

Part of that ratio is arithmetic, not sequence: with input = hidden = n the LSTM does
4n(n + n) multiply-adds per position, the Linear n*n, 8 times fewer. The table shows the
ratio divided by that factor as well: what the sequential recurrence costs per multiply-add.

The second table is the parameter count of one-layer RNN, LSTM and GRU: the closed-form
formula G*(n*i + n*n + 2n) (G = 1, 4, 3 gate blocks; i = input size, n = hidden size; W_ih,
W_hh and the two PyTorch biases) beside the number counted from a constructed model (and
from torch.nn where installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from .._cli import DEFAULT_OUT, INTERRUPTED, add_common, int_at_least, int_list
from .._cli import _threadpool_limits, threads as kernel_threads
from .._plotting import files_line, new_axes, save_figure
from .._progress import progress_bar

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
DEFAULT_LENGTHS = (16, 32, 64, 128, 256, 512, 1024)
DEFAULT_SIZES = (64, 256, 1024)
TEXTBOOK_T = 512
MIN_SECONDS = 0.5  # per T and library: short calls are repeated until their rounds take this long
MAX_ROUNDS = 200


@dataclass
class Timing:
    steps: int
    lstm: float  # seconds per call, median
    linear: float

    @property
    def ratio(self) -> float:
        return self.lstm / self.linear


@dataclass
class CostResult:
    rnncore: list = field(default_factory=list)  # [Timing]
    torch: list = field(default_factory=list)
    interrupted: bool = False


def flop_factor(input_size: int, hidden_size: int) -> float:
    """Multiply-adds of one LSTM position (4 gates of W_ih x + W_hh h) over one Linear(input,
    hidden) position: 4(i + n) n / (i n)."""
    return 4 * (input_size + hidden_size) / input_size


def clock_for(threads: int):
    """(clock, words): on one thread every library does all its work in the calling thread, so
    that thread's CPU time measures a call and other processes on a shared machine do not count;
    on more, the wall time (the parallel speed-up is the point)."""
    if threads == 1:
        return time.thread_time, "CPU time of the calling thread, where one-thread libraries do all their work"
    return time.perf_counter, "wall time"


def median_pair(first, second, repeats: int, min_seconds: float = MIN_SECONDS,
                clock=time.perf_counter) -> tuple[float, float]:
    """Median seconds (by ``clock``) of ``first()`` and of ``second()``, the two calls
    interleaved so that both see the same machine; after one untimed warm-up call each. At
    least ``repeats`` rounds, and more for short calls, until the rounds take about
    ``min_seconds`` (at most MAX_ROUNDS)."""
    start = clock()
    first(), second()
    warm_up = clock() - start
    rounds = min(MAX_ROUNDS, max(repeats, math.ceil(min_seconds / max(warm_up, 1e-9))))
    times_first, times_second = [], []
    for _ in range(rounds):
        for call, times in ((first, times_first), (second, times_second)):
            start = clock()
            call()
            times.append(clock() - start)
    return statistics.median(times_first), statistics.median(times_second)


def rnncore_pair(input_size: int, hidden_size: int, seed: int):
    """(make_calls(x) -> (lstm_call, linear_call)) for rnncore's prepared LSTM and Linear."""
    from ..layers import LSTM
    from ..nn import Linear

    lstm = LSTM(input_size, hidden_size, seed=seed).prepare()
    linear = Linear(input_size, hidden_size, seed=seed + 1)
    return lambda x: (lambda: lstm(x), lambda: linear(x))


def torch_pair(input_size: int, hidden_size: int, seed: int):
    """The same for torch.nn.LSTM and torch.nn.Linear, without autograd."""
    import torch

    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(input_size, hidden_size).eval()
    linear = torch.nn.Linear(input_size, hidden_size).eval()

    def calls(x: np.ndarray):
        tensor = torch.from_numpy(x)

        def run_lstm():
            with torch.no_grad():
                lstm(tensor)

        def run_linear():
            with torch.no_grad():
                linear(tensor)

        return run_lstm, run_linear

    return calls


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def time_lengths(pairs: dict, lengths, batch: int, input_size: int, repeats: int, seed: int,
                 progress: bool, clock=time.perf_counter) -> CostResult:
    """Time every pair (name -> make_calls) at every T; Ctrl-C keeps the rows done."""
    result = CostResult()
    rng = np.random.default_rng(seed)
    bar = progress_bar(len(lengths) * len(pairs), desc="cost", disable=not progress)
    try:
        for steps in lengths:
            x = rng.standard_normal((steps, batch, input_size)).astype(np.float32)
            for name, make_calls in pairs.items():
                lstm_seconds, linear_seconds = median_pair(*make_calls(x), repeats, clock=clock)
                getattr(result, name).append(Timing(steps, lstm_seconds, linear_seconds))
                bar.update(1)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
    return result


def format_timings(result: CostResult, factor: float) -> str:
    rows = {name: {t.steps: t for t in getattr(result, name)} for name in ("rnncore", "torch")}
    names = [n for n in ("rnncore", "torch") if rows[n]]
    header = f"{'T':>5}"
    for name in names:
        header += f" | {name + ' LSTM ms':>16} {'Linear ms':>9} {'ratio':>6} {'/flops':>6}"
    lines = [header]
    for steps in sorted(set().union(*(rows[n].keys() for n in names))):
        line = f"{steps:>5}"
        for name in names:
            t = rows[name].get(steps)
            if t is None:
                line += " | " + " " * 41
            else:
                line += (f" | {1e3 * t.lstm:>16.3f} {1e3 * t.linear:>9.3f} {t.ratio:>6.1f} "
                         f"{t.ratio / factor:>6.2f}")
        lines.append(line)
    return "\n".join(lines)


def verdict(timings: list, name: str, factor: float) -> str:
    """The textbook's claim (>10x at T=512) checked on one library's rows."""
    at = {t.steps: t for t in timings}
    row = at.get(TEXTBOOK_T) or min(timings, key=lambda t: abs(math.log(t.steps / TEXTBOOK_T)))
    claim = "agrees with" if round(row.ratio, 1) >= 10 else "DISAGREES with"  # as printed
    ratios = [t.ratio for t in timings]
    return (f"{name}: the LSTM takes {row.ratio:.1f}x the Linear's time at T={row.steps} ({claim} the "
            f"textbook's >10x); {row.ratio / factor:.2f}x per multiply-add; over T={timings[0].steps}"
            f"..{timings[-1].steps} the ratio runs {min(ratios):.1f}-{max(ratios):.1f}x")


@dataclass
class CountRow:
    cell: str
    hidden: int
    input: int
    formula: str
    closed_form: int
    counted: int
    torch_counted: int | None

    @property
    def per_square(self) -> float:
        return self.counted / self.hidden ** 2


def closed_form(cell: str, input_size: int, hidden_size: int) -> int:
    gates = GATES[cell]
    return gates * (hidden_size * input_size + hidden_size * hidden_size + 2 * hidden_size)


def count_parameters(sizes, input_size: int | None, use_torch: bool) -> list[CountRow]:
    """For each size n and cell: the formula, its value, and the count of a constructed model."""
    from ..layers import GRU, LSTM, RNN

    makers = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
    torch_makers = None
    if use_torch:
        import torch

        torch_makers = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    rows = []
    for n in sizes:
        i = input_size or n
        for cell, gates in GATES.items():
            model = makers[cell](i, n, seed=0)
            counted = sum(p.size for p in model.parameters().values())
            torch_count = None
            if torch_makers is not None:
                torch_count = sum(p.numel() for p in torch_makers[cell](i, n).parameters())
            formula = f"{gates}*({n}*{i} + {n}^2 + 2*{n})" if gates > 1 else f"{n}*{i} + {n}^2 + 2*{n}"
            rows.append(CountRow(cell.upper(), n, i, formula, closed_form(cell, i, n), counted, torch_count))
    return rows


def format_counts(rows: list[CountRow]) -> str:
    with_torch = any(r.torch_counted is not None for r in rows)
    width = max(len(r.formula) for r in rows)
    header = (f"{'cell':<5} {'n':>5} {'input':>5}  {'closed form G*(n*i + n^2 + 2n)':<{width}} {'= value':>10} "
              f"{'counted':>10}" + (f" {'torch':>10}" if with_torch else "") + f" {'counted/n^2':>11}")
    lines = [header]
    for r in rows:
        line = (f"{r.cell:<5} {r.hidden:>5} {r.input:>5}  {r.formula:<{max(width, 30)}} {r.closed_form:>10} "
                f"{r.counted:>10}")
        if with_torch:
            line += f" {r.torch_counted if r.torch_counted is not None else '-':>10}"
        lines.append(line + f" {r.per_square:>11.3f}")
    return "\n".join(lines)


def write_csv(result: CostResult, path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("library,T,lstm_seconds,linear_seconds,ratio\n")
        for name in ("rnncore", "torch"):
            handle.writelines(f"{name},{t.steps},{t.lstm:.6g},{t.linear:.6g},{t.ratio:.4g}\n"
                              for t in getattr(result, name))


def plot_ratios(result: CostResult, factor: float, title: str, path: str) -> bool:
    """The ratio LSTM / Linear against T (log-scale T); False when matplotlib is absent."""
    plot = new_axes()
    if plot is None:
        return False
    plt, figure, axes = plot
    for name, marker in (("rnncore", "o"), ("torch", "s")):
        timings = getattr(result, name)
        if timings:
            axes.plot([t.steps for t in timings], [t.ratio for t in timings], marker=marker,
                      label=f"{name}: LSTM time / Linear time")
    axes.axhline(factor, color="gray", linestyle="--", label=f"multiply-add ratio ({factor:g}x)")
    axes.axhline(10, color="gray", linestyle=":", label="the textbook's 10x")
    axes.set_xscale("log", base=2)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("sequence length T")
    axes.set_ylabel("LSTM / Linear time")
    axes.set_title(title)
    save_figure(plt, figure, axes, path)
    return True


def run(args: argparse.Namespace) -> int:
    os.makedirs(args.out, exist_ok=True)  # fail on a bad --out before timing, not after
    use_torch = args.torch and torch_available()
    factor = flop_factor(args.input, args.hidden)
    print(f"rnncore cost: LSTM over T steps vs a feed-forward Linear over the same T positions")
    print(f"  input (T, {args.batch}, {args.input}) float32; LSTM({args.input}, {args.hidden}) (rnncore: "
          f"weights packed once, LSTM.prepare()) vs Linear({args.input}, {args.hidden}); inference")
    clock, clock_words = clock_for(args.threads)
    print(f"  median of at least {args.repeats} interleaved calls per T (short ones repeated for ~"
          f"{MIN_SECONDS:g} s); {args.threads} thread(s) for every library; the LSTM does {factor:g}x "
          "the Linear's multiply-adds per position")
    print(f"  times: {clock_words}")
    if args.threads > 1 and _threadpool_limits() is None:
        print(f"  note: without threadpoolctl NumPy's BLAS (the rnncore Linear) keeps the threads it "
              f"started with (one, when run as the rnncore program), not {args.threads}")
    if not args.torch:
        print("  torch.nn: skipped (--no-torch)")
    elif not use_torch:
        print("  torch.nn: not installed, rnncore only")
    pairs = {"rnncore": rnncore_pair(args.input, args.hidden, args.seed)}
    if use_torch:
        import torch

        pairs["torch"] = torch_pair(args.input, args.hidden, args.seed)
        previous_torch_threads = torch.get_num_threads()
        torch.set_num_threads(args.threads)
    try:
        with kernel_threads(args.threads, blas=args.threads):
            result = time_lengths(pairs, args.lengths, args.batch, args.input, args.repeats,
                                  args.seed, args.progress, clock)
    finally:
        if use_torch:
            torch.set_num_threads(previous_torch_threads)
    print()
    if result.interrupted:
        print("interrupted: the lengths timed so far")
    if result.rnncore:
        print(format_timings(result, factor))
        print("(ratio = LSTM / Linear; /flops = that ratio divided by the multiply-add ratio "
              f"{factor:g})")
        for name in ("rnncore", "torch"):
            if getattr(result, name):
                print(verdict(getattr(result, name), name, factor))
        csv_path = os.path.join(args.out, "cost_ratio.csv")
        write_csv(result, csv_path)
        png_path = os.path.join(args.out, "cost_ratio.png")
        title = f"LSTM vs Linear, batch {args.batch}, {args.input} -> {args.hidden}, {args.threads} thread(s)"
        wrote = args.plot and plot_ratios(result, factor, title, png_path)
        print(files_line(wrote, args.plot, png_path, [csv_path]))
    if result.interrupted:
        return INTERRUPTED
    print()
    rows = count_parameters(args.sizes, args.count_input, use_torch)
    which = f"input size {args.count_input}" if args.count_input else "input size = hidden size n"
    print(f"parameters of one layer ({which}; W_ih, W_hh, b_ih, b_hh as in PyTorch):")
    print(format_counts(rows))
    if not args.count_input:
        print("with input = hidden = n the counts are 2n^2 + 2n (RNN), 8n^2 + 8n (LSTM), 6n^2 + 6n (GRU): "
              "the textbook's ~n^2, ~4n^2, ~3n^2 count W_hh alone, and W_ih doubles them when input = "
              "hidden; the ratios 1 : 4 : 3 hold either way")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cost", help="the sequential cost: LSTM over T steps vs a Linear over T positions; parameter counts",
        description="Time an LSTM over T steps against a feed-forward Linear layer of the same width "
                    "over the same T positions (rnncore, and torch.nn where installed), print the "
                    "ratio against T and plot it (CSV and, with matplotlib, PNG in --out); then the "
                    "parameter counts of RNN, LSTM and GRU, the closed-form formula beside the "
                    "counted number.")
    parser.add_argument("--lengths", type=int_list(1), default=DEFAULT_LENGTHS,
                        help="comma-separated sequence lengths T (default "
                             f"{','.join(map(str, DEFAULT_LENGTHS))})")
    parser.add_argument("--batch", type=int_at_least(1), default=32, help="batch size (default 32)")
    parser.add_argument("--input", type=int_at_least(1), default=256, help="input size (default 256)")
    parser.add_argument("--hidden", type=int_at_least(1), default=256,
                        help="LSTM hidden size = Linear output size (default 256)")
    parser.add_argument("--repeats", type=int_at_least(1), default=5,
                        help="timed calls per T and library at the least, median taken; short calls "
                             f"are repeated for about {MIN_SECONDS:g} s (default 5)")
    parser.add_argument("--sizes", type=int_list(1), default=DEFAULT_SIZES,
                        help="hidden sizes n for the parameter counts (default "
                             f"{','.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--count-input", type=int_at_least(1), default=None,
                        help="input size for the parameter counts (default: n, each row's hidden size)")
    parser.add_argument("--no-torch", dest="torch", action="store_false",
                        help="time rnncore only, even where torch is installed")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="do not write the PNG")
    add_common(parser)
    parser.set_defaults(func=run)
