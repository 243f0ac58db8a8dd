"""Per-step latency of Stream.step from Python, against torch's LSTMCell / GRUCell in a loop.

    python examples/python_stream_latency.py [--hidden 64] [--steps 20000]

Prints p50 / p99 per step (each step timed alone with perf_counter_ns, whose own cost, ~50 ns,
is included) for rnncore with and without out=, for torch when it is installed, and for 64
streams stepping together.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import rnncore as rc


def percentiles(fn, steps: int) -> tuple[float, float]:
    for _ in range(min(steps, 2000)):
        fn()
    samples = np.empty(steps)
    clock = time.perf_counter_ns
    for i in range(steps):
        start = clock()
        fn()
        samples[i] = clock() - start
    return float(np.percentile(samples, 50)) / 1e3, float(np.percentile(samples, 99)) / 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--input", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20000)
    args = parser.parse_args()
    H, I, steps = args.hidden, args.input, args.steps
    rows = []
    for name, cls in (("LSTM", rc.LSTM), ("GRU", rc.GRU)):
        model = cls(I, H, seed=0)
        stream = model.stream()
        x = np.random.default_rng(0).standard_normal(I).astype(np.float32)
        out = np.empty(H, np.float32)
        rows.append((f"rnncore {name} step(x, out=)", *percentiles(lambda: stream.step(x, out), steps)))
        rows.append((f"rnncore {name} step(x)", *percentiles(lambda: stream.step(x), steps)))
        batched = model.stream(64)
        xb = np.random.default_rng(0).standard_normal((64, I)).astype(np.float32)
        outb = np.empty((64, H), np.float32)
        rows.append((f"rnncore {name} 64 streams, out=", *percentiles(lambda: batched.step(xb, outb), steps // 4)))
        try:
            import torch
        except ImportError:
            continue
        torch.set_num_threads(1)
        cell = (torch.nn.LSTMCell if name == "LSTM" else torch.nn.GRUCell)(I, H)
        xt = torch.from_numpy(x[None])
        state = [(torch.zeros(1, H), torch.zeros(1, H)) if name == "LSTM" else torch.zeros(1, H)]

        def torch_step():
            state[0] = cell(xt, state[0])

        with torch.inference_mode():
            rows.append((f"torch {name}Cell loop (inference_mode)", *percentiles(torch_step, steps // 4)))
    print(f"input {I}, hidden {H}, batch 1 unless stated; microseconds per step")
    print(f"{'':42s} {'p50':>8s} {'p99':>8s}")
    for label, p50, p99 in rows:
        print(f"{label:42s} {p50:8.2f} {p99:8.2f}")


if __name__ == "__main__":
    main()
