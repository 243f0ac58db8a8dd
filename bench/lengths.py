"""Variable lengths: what a batch whose sequences end early costs, against the same batch padded
and against PyTorch's PackedSequence, in one run on one machine.

    python bench/lengths.py [--shapes lstm:256x32x100,gru:128x64x200,lstm:64x16x1000]
                            [--threads 1] [--repeats 7] [--modes inference,training] [--json PATH]

Each case draws lengths uniformly between T/10 and T (seeded), so about 55% of the padded
(step, sequence) pairs are real. Per round every contender runs once, interleaved (rnncore with
lengths, rnncore padded, torch packed, torch padded); the medians over the rounds are reported,
and each ratio is the median over the rounds of that round's ratio (the two sides of a ratio ran
seconds apart, so a VM whose speed drifts between rounds moves both alike).
Training is forward + BPTT with every gradient (rnncore: forward + backward with dL/dy = 1;
torch: forward, sum, backward). Columns: 'useful' = sum(lengths) / (T * N); 'vs padded' =
rnncore's time with lengths / its padded time (the target is <= useful + 0.1); 'x torch packed'
= torch's PackedSequence time / rnncore's time with lengths (> 1: rnncore faster).

--tail K,K,... also measures what a step costs when only K sequences are left (the end of a
batch with lengths, where the few-row kernels run): per shape and mode, a batch with K sequences
of T steps and N - K of T/2, against all N of T/2, interleaved; the difference over the last
T - T/2 steps is the cost of a K-row step, printed per step and per row beside a padded step's
cost per row (the padded call's time / (T * N)).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np

import rnncore as rc
from rnncore._cli import add_pin_option, pin_if_asked


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def parse_shapes(text):
    shapes = []
    for item in text.split(","):
        cell, dims = item.split(":")
        H, N, T = (int(v) for v in dims.split("x"))
        shapes.append((cell, H, N, T))
    return shapes


def timed(fn, min_time=0.05):
    """Seconds per call: the calls of one sample batched until it lasts min_time."""
    fn()
    start = time.perf_counter()
    calls = 0
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / calls


def interleaved_samples(calls, repeats):
    """Seconds per call of each of `calls` (name -> function), `repeats` rounds, every call once
    per round in turn."""
    samples = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            samples[name].append(timed(fn))
    return samples


def paired_ratio(numerators, denominators):
    """The median over rounds of numerator / denominator, each pair from the same round."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def contenders(cell, H, N, T, mode, lengths, torch):
    model = {"lstm": rc.LSTM, "gru": rc.GRU, "rnn": rc.RNN}[cell](H, H, seed=0)
    x = np.random.default_rng(1).standard_normal((T, N, H)).astype(np.float32)
    out = {}

    def rnncore_call(lens):
        if mode == "inference":
            return lambda: model(x, None, lens)

        def step():
            y, _, cache = model.forward(x, None, lens)
            model.backward(cache, np.ones_like(y))
        return step

    out["rnncore lengths"] = rnncore_call(lengths)
    out["rnncore padded"] = rnncore_call(None)
    if torch is not None:
        module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](H, H)
        module.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
        xt = torch.from_numpy(x)
        lens_t = torch.tensor(lengths)
        pack = torch.nn.utils.rnn.pack_padded_sequence

        def torch_call(packed):
            def run():
                inp = pack(xt, lens_t, enforce_sorted=False) if packed else xt
                y, _ = module(inp)
                return y.data if packed else y
            if mode == "inference":
                def infer():
                    with torch.no_grad():
                        run()
                return infer

            def train():
                module.zero_grad(set_to_none=True)
                run().sum().backward()
            return train

        out["torch packed"] = torch_call(True)
        out["torch padded"] = torch_call(False)
    return out


def tail_costs(cell, H, N, T, mode, ks, repeats):
    """Microseconds per step with k sequences left, for each k in ks (see --tail), and a padded
    step's cost per row."""
    half = T // 2
    model_calls = {}
    base = contenders(cell, H, N, T, mode, [half] * N, None)
    model_calls["half"] = base["rnncore lengths"]
    model_calls["padded"] = base["rnncore padded"]
    for k in ks:
        model_calls[k] = contenders(cell, H, N, T, mode, [T] * k + [half] * (N - k),
                                    None)["rnncore lengths"]
    samples = interleaved_samples(model_calls, repeats)
    med = {name: statistics.median(v) for name, v in samples.items()}
    per_row_padded = 1e6 * med["padded"] / (T * N)
    rows = []
    for k in ks:
        per_step = 1e6 * (med[k] - med["half"]) / (T - half)
        rows.append(dict(rows_left=k, us_per_step=per_step, us_per_row=per_step / k,
                         padded_us_per_row=per_row_padded))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="lstm:256x32x100,gru:128x64x200,lstm:64x16x1000",
                        help="cell:HxNxT,... (input size = hidden size)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--modes", default="inference,training")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--tail", metavar="K,K,...",
                        help="also time a step with only K sequences left (see above), e.g. 1,2,3,4,8")
    add_pin_option(parser)
    args = parser.parse_args(argv)
    tail_ks = []
    if args.tail:
        try:
            tail_ks = [int(v) for v in args.tail.split(",")]
        except ValueError:
            parser.error(f"--tail takes row counts like 1,2,4, got {args.tail!r}")
    shapes = parse_shapes(args.shapes)
    for cell, H, N, T in shapes:
        bad = [k for k in tail_ks if not 1 <= k <= N]
        if bad:
            parser.error(f"--tail row counts must be 1..{N} for {cell}:{H}x{N}x{T}, got {bad}")
        if tail_ks and T < 2:
            parser.error(f"--tail needs at least 2 steps (T/2 of them shared), got {cell}:{H}x{N}x{T}")
    pin_if_asked(parser, args.pin_cpu, [args.threads])

    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: F811
            torch.set_num_threads(args.threads)
        except ImportError:
            print("(torch not installed: rnncore only)", file=sys.stderr)
    rc.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}; {args.threads} thread(s); rnncore {rc.__version__}"
          + (f", torch {torch.__version__}" if torch is not None else "")
          + f"; medians of {args.repeats} interleaved rounds, ms per call")
    header = (f"{'case':<22} {'mode':<9} {'useful':>6} {'lengths':>9} {'padded':>9} {'vs padded':>9} "
              f"{'target':>6} {'torch pk':>9} {'x torch pk':>10}")
    print(header)
    results = []
    for cell, H, N, T in shapes:
        rng = np.random.default_rng(2)
        lengths = rng.integers(max(1, T // 10), T + 1, N).tolist()
        useful = sum(lengths) / (T * N)
        for mode in args.modes.split(","):
            calls = contenders(cell, H, N, T, mode, lengths, torch)
            samples = interleaved_samples(calls, args.repeats)
            ms = {name: 1e3 * statistics.median(v) for name, v in samples.items()}
            ratio = paired_ratio(samples["rnncore lengths"], samples["rnncore padded"])
            row = dict(cell=cell, hidden=H, batch=N, steps=T, mode=mode, useful=useful, ms=ms,
                       vs_padded=ratio, target=useful + 0.1,
                       rounds_ms={name: [1e3 * t for t in v] for name, v in samples.items()})
            torch_pk = ms.get("torch packed")
            if torch_pk is not None:
                row["x_torch_packed"] = paired_ratio(samples["torch packed"], samples["rnncore lengths"])
            results.append(row)
            print(f"{cell} {H}x{N}x{T:<11} {mode:<9} {useful:6.2f} {ms['rnncore lengths']:9.2f} "
                  f"{ms['rnncore padded']:9.2f} {ratio:9.2f} {useful + 0.1:6.2f} "
                  + (f"{torch_pk:9.2f} {row['x_torch_packed']:10.2f}" if torch_pk is not None else ""),
                  flush=True)
            if tail_ks:
                row["tail"] = tail_costs(cell, H, N, T, mode, tail_ks, args.repeats)
                for t in row["tail"]:
                    print(f"  {t['rows_left']:>2} sequence(s) left: {t['us_per_step']:8.2f} us per step, "
                          f"{t['us_per_row']:7.2f} per row (a padded step: "
                          f"{t['padded_us_per_row']:.2f} per row)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "threads": args.threads, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
