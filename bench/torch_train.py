"""Whole training steps with rnncore.torch against torch.nn, and the bridge's own cost.

    flock /tmp/rnncore-bench.lock python bench/torch_train.py [--cells gru,rnn,lstm]
        [--hidden 64,128,256,512] [--batch 1,8,32] [--steps 50,200] [--threads 1,2] [--rounds 5]
        [--json FILE]
    flock /tmp/rnncore-bench.lock python bench/torch_train.py --bridge

A step: Embedding(64 -> 64) -> 2-layer RNN/LSTM/GRU (hidden H) -> Linear -> cross-entropy ->
backward -> Adam. The rt and torch.nn models (same weights) alternate step by step; the table gives
the median ms per step of each and torch / rt. --bridge times rt.LSTM forward + backward, and its
no_grad forward, against rnncore's kernels called directly on the same arrays and against an
autograd.Function with the same inputs that does no work (H x N x T = 256 x 32 x 100, 64 x 1 x 50,
64 x 1 x 1).

What bounds the ratio, measured in the same run: "rt rnn" is the rt layer's forward + backward
alone (on the step's embedded input, timed in the same rounds), so "rest" = rt step - rt rnn is
the part of a step that is torch's work for both models (embedding, head, loss, Adam, autograd).
"rnn %GEMM" is the layer's multiply-adds (2 per multiply-add, training = 3x the forward's) per
second over the float32 GEMM rate measured right before and right after the row
(rnncore._core.gemm_gflops at the row's thread count, the better of the two: on a shared VM the
rate moves by 20-40% within minutes). "fn ms" is what torch's own machinery costs any layer
written as a Python autograd.Function (rt's eager path) per forward + backward: an empty one with
the rt layer's inputs and outputs (it allocates the outputs and the gradients, does no work),
timed in the same rounds. "bound" = torch step / (rest + fn + the layer's work at the GEMM rate):
the ratio rt would reach if its kernels ran at the GEMM rate and its bridge cost no more than an
empty Function, with nothing else changed: an upper limit for that row (a target above it cannot
be met on that machine by faster kernels or a thinner bridge). At N = 1 a step's recurrent
products (W_hh h forward, dL/dh_t W_hh backward) are matrix-vector products, which read every
weight once per multiply-add and cannot run at a GEMM's rate: there those two thirds of the
recurrent work count at "GEMV GFLOP/s", Eigen's float32 matrix-vector rate on one layer's W_hh
(best of 200 products, the matrix hot in cache: faster than a step, whose caches also hold the
other layer and the activations; Eigen's runs on one thread, and is multiplied by the thread
count: so the bound stays an upper limit), the rest at the GEMM rate.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

import rnncore.torch as rt
from rnncore import _core, benchmark
from rnncore._cli import add_pin_option, pin_if_asked
from rnncore._isa import cpu_model_name

VOCAB = 64
KINDS = {"rnn": (rt.RNN, torch.nn.RNN), "lstm": (rt.LSTM, torch.nn.LSTM), "gru": (rt.GRU, torch.nn.GRU)}


class Model(torch.nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 64)
        self.rnn = rnn
        self.head = torch.nn.Linear(rnn.hidden_size, VOCAB)

    def forward(self, tokens):
        return self.head(self.rnn(self.embed(tokens))[0])


def _pair(kind, hidden):
    torch.manual_seed(0)
    ours = Model(KINDS[kind][0](64, hidden, num_layers=2))
    theirs = Model(KINDS[kind][1](64, hidden, num_layers=2))
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _stepper(model, tokens):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        start = time.perf_counter()
        logits = model(tokens[:-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    return step


def layer_flops(kind, hidden, batch, steps, threads):
    """Floating-point operations of the 2-layer cell's forward + backward, counted as the
    benchmark harness counts them (rnncore.benchmark.Case: training = 3x the forward)."""
    return benchmark.Case(kind, hidden, batch, steps, False, 2, threads, "training", 64).flops()


def gemm_rate(threads):
    """GFLOP/s of the harness's float32 GEMM yardstick at `threads`."""
    return benchmark.measure_peak(threads)[0]


def recurrent_matvec_flops(kind, hidden, batch, steps):
    """The 2-layer cell's recurrent products of a forward + backward (W_hh h_t-1 forward and
    dL/d(gates) W_hh backward, 2 flops per multiply-add): the work that is matrix-vector at N = 1."""
    return 2 * 2 * (2.0 * steps * batch * benchmark.GATES[kind] * hidden * hidden)


def gemv_rate(kind, hidden, threads):
    """GFLOP/s of Eigen's float32 matrix-vector product on one layer's W_hh [G*H, H] (best of
    200; see the module's docstring), times `threads`: Eigen runs a matrix-vector product on one
    thread, and rt's time loop splits it across threads, so perfect scaling is assumed (which
    keeps the bound an upper limit)."""
    return threads * _core.gemm_gflops(1, benchmark.GATES[kind] * hidden, hidden, 200)


class _EmptyFunction(torch.autograd.Function):
    """An autograd.Function with rt.LSTM's inputs and outputs that does no work: what torch's
    own machinery costs a Python-defined layer per forward + backward."""

    @staticmethod
    def forward(ctx, x, *weights):
        ctx.save_for_backward(*weights)
        ctx.shapes = x.shape, weights[1].shape[1]
        (steps, batch, _), hidden = ctx.shapes
        return x.new_zeros(steps, batch, hidden), x.new_zeros(2, batch, hidden), x.new_zeros(2, batch, hidden)

    @staticmethod
    def backward(ctx, grad_y, grad_h, grad_c):
        weights = ctx.saved_tensors
        return (grad_y.new_zeros(ctx.shapes[0]), *[torch.zeros_like(w) for w in weights])


def _layer_timer(model, tokens, empty=False):
    """Times the rt layer's forward + backward alone on the step's embedded input, or (empty) an
    empty autograd.Function with the layer's inputs and outputs (_EmptyFunction, on copies of the
    weights): torch's cost for any Python-defined layer."""
    x = model.embed(tokens[:-1]).detach().requires_grad_(True)
    grad = torch.randn(x.shape[0], x.shape[1], model.rnn.hidden_size)
    params = [p.detach().requires_grad_(True) for p in model.rnn._flat_weights]
    forward = (lambda: _EmptyFunction.apply(x, *params)[0]) if empty else (lambda: model.rnn(x)[0])

    def run():
        start = time.perf_counter()
        forward().backward(grad)
        return time.perf_counter() - start

    return run


def training_table(args):
    rows = []
    print(f"CPU: {cpu_model_name() or platform.processor()}; torch {torch.__version__}; medians of "
          f"{args.rounds} interleaved rounds")
    print("| cell | H | N | T | threads | rt ms | torch.nn ms | torch/rt | rt rnn ms | rest ms | fn ms | "
          "rnn %GEMM | bound | GEMM GFLOP/s | GEMV GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)  # one OpenMP runtime: rnncore's threads too
        rate_before = gemm_rate(threads)
        for kind in args.cells:
            for hidden in args.hidden:
                for batch in args.batch:
                    for steps in args.steps:
                        tokens = torch.randint(0, VOCAB, (steps + 1, batch))
                        models = _pair(kind, hidden)
                        ours, theirs = (_stepper(m, tokens) for m in models)
                        layer = _layer_timer(models[0], tokens)
                        empty = _layer_timer(models[0], tokens, empty=True)
                        for _ in range(2):
                            ours(), theirs(), layer(), empty()
                        a, b, c, e = [], [], [], []
                        for _ in range(args.rounds):
                            a.append(ours())
                            b.append(theirs())
                            c.append(layer())
                            e.append(empty())
                        rate_after = gemm_rate(threads)
                        torch.set_num_threads(threads)
                        rate, rate_before = max(rate_before, rate_after), rate_after
                        ma, mb, mc, me = (statistics.median(v) * 1e3 for v in (a, b, c, e))
                        rest = max(ma - mc, 0.0)
                        flops = layer_flops(kind, hidden, batch, steps, threads)
                        ideal = flops / (rate * 1e9) * 1e3
                        matvec = gemv_rate(kind, hidden, threads) if batch == 1 else None
                        limit = ideal  # the layer's time at the yardsticks
                        if matvec is not None:
                            mv = recurrent_matvec_flops(kind, hidden, batch, steps)
                            limit = ((flops - mv) / rate + mv / min(matvec, rate)) * 1e-6
                        row = dict(cell=kind, hidden=hidden, batch=batch, steps=steps, threads=threads,
                                   rt_ms=ma, torch_ms=mb, ratio=mb / ma, rt_rnn_ms=mc, rest_ms=rest,
                                   fn_ms=me, gemm_gflops=rate, gemv_gflops=matvec,
                                   rnn_pct_gemm=100.0 * ideal / mc, bound=mb / (rest + me + limit))
                        rows.append(row)
                        print(f"| {kind} | {hidden} | {batch} | {steps} | {threads} | {ma:.2f} | {mb:.2f} | "
                              f"{mb / ma:.2f} | {mc:.2f} | {rest:.2f} | {me:.2f} | {row['rnn_pct_gemm']:.0f} | "
                              f"{row['bound']:.2f} | {rate:.0f} | {'-' if matvec is None else f'{matvec:.0f}'} |",
                              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model_name(), "torch": torch.__version__, "rounds": args.rounds,
                       "rows": rows}, f, indent=1)


def bridge(args):
    """rt.LSTM (2 layers) against rnncore's kernels called directly on the same arrays, and an
    empty autograd.Function with the same inputs: per call, training (forward + backward) and
    inference (no_grad forward)."""
    torch.set_num_threads(args.threads[0])
    print(f"CPU: {cpu_model_name() or platform.processor()}; torch {torch.__version__}; "
          f"{args.threads[0]} thread(s); medians of {args.rounds * 4} interleaved rounds")
    print("| LSTM 2 layers, H x N x T | mode | rt.LSTM us | kernels direct us | bridge us | bridge % "
          "| empty Function us |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for hidden, batch, steps in ((256, 32, 100), (64, 1, 50), (64, 1, 1)):
        torch.manual_seed(0)
        layer = rt.LSTM(hidden, hidden, num_layers=2)
        x = torch.randn(steps, batch, hidden, requires_grad=True)
        grad = torch.randn(steps, batch, hidden)
        weights = [w.detach().numpy() for w in layer._flat_weights]
        cfg = _core.ModelConfig("lstm", hidden, hidden, 2, False, True)
        xn, gn = x.detach().numpy(), grad.numpy()
        params = list(layer._flat_weights)

        def timed(fn):
            def run():
                start = time.perf_counter()
                fn()
                return time.perf_counter() - start
            return run

        def rt_training():
            y, _ = layer(x)
            y.backward(grad)

        def direct_training():
            _, _, _, cache = _core.forward(cfg, weights, xn, None, None, None, True)
            _core.backward(cache, weights, gn, None, None)

        def empty_training():
            y, _, _ = _EmptyFunction.apply(x, *params)
            y.backward(grad)

        def rt_inference():
            with torch.no_grad():
                layer(x)

        def direct_inference():
            _core.forward(cfg, weights, xn, None, None, None, False)

        def empty_inference():
            with torch.no_grad():
                _EmptyFunction.apply(x, *params)

        for mode, fns in (("training", (rt_training, direct_training, empty_training)),
                          ("inference", (rt_inference, direct_inference, empty_inference))):
            runs = [timed(fn) for fn in fns]
            repeat = 1 if steps * batch * hidden >= 100_000 else 20  # (short calls timed in blocks)
            for _ in range(3):
                for run in runs:
                    run()
            times = [[] for _ in runs]
            for r in range(args.rounds * 4):
                # Each round in another order: a call after the empty Function (which allocates
                # its outputs anew) found a colder cache than one after the other two.
                for i in range(r, r + len(runs)):
                    times[i % len(runs)].append(sum(runs[i % len(runs)]() for _ in range(repeat)) / repeat)
            ours, direct, empty = (statistics.median(v) * 1e6 for v in times)
            print(f"| {hidden} x {batch} x {steps} | {mode} | {ours:.0f} | {direct:.0f} | {ours - direct:+.0f} | "
                  f"{(ours / direct - 1) * 100:+.1f}% | {empty:.0f} |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    p.add_argument("--cells", type=lambda s: s.split(","), default=["gru", "rnn", "lstm"])
    p.add_argument("--hidden", type=ints, default=[64, 128, 256, 512])
    p.add_argument("--batch", type=ints, default=[1, 8, 32])
    p.add_argument("--steps", type=ints, default=[50, 200])
    p.add_argument("--threads", type=ints, default=[1, 2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--bridge", action="store_true")
    p.add_argument("--json", help="also write the rows to this JSON file")
    add_pin_option(p)
    args = p.parse_args()
    pin_if_asked(p, args.pin_cpu, args.threads)
    bridge(args) if args.bridge else training_table(args)


if __name__ == "__main__":
    main()
