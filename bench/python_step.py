"""The Python step's overhead over the C++ step, measured in one run on the same stream.

    python bench/python_step.py [--rounds 200] [--cases lstm:1:16,gru:128:128]

For each case (float32, batch 1, one thread, the state carried) it alternates two blocks of
steps on the same stream and frame: `time_steps` (the C++ Stream::step called in a C++ loop,
timed there) and the Python loop `for _ in itertools.repeat(None, n): s.step(x, out=y)`, timed with
perf_counter_ns (the loop's own cost counts as Python's). A block lasts ~50 us; the medians over
the rounds are printed, and overhead = Python - C++ per step. It also checks that step(x, out=)
allocates nothing: `allocated` is the peak of Python's allocations (tracemalloc) during 1000
steps beyond what was held before, in bytes.

Where the overhead goes: the C++ loop is also run with each step timed on its own, once with
nothing between steps but one cache line written ("C++ 1 line") and once with 32 KiB written
("C++ 32K"), about the memory a Python call moves through the cache. `evicted` = C++ 32K - C++ 1
line is what the step itself loses when its weights and state have been partly pushed out of L1
and L2 between calls; what remains of the overhead is the binding's own cost.
"""

from __future__ import annotations

import argparse
import itertools
import time
import tracemalloc

import numpy as np

import rnncore as rc
from rnncore._cli import add_pin_option, pin_if_asked
from lengths import cpu_name  # (bench/ is on sys.path when this script runs)

DEFAULT_CASES = "lstm:1:16,lstm:1:64,lstm:1:128,lstm:128:128,gru:1:16,gru:1:64,gru:1:128,gru:128:128"


def python_block(stream, x: np.ndarray, y: np.ndarray, n: int) -> float:
    clock = time.perf_counter_ns
    steps = itertools.repeat(None, n)
    start = clock()
    for _ in steps:
        stream.step(x, out=y)
    return (clock() - start) / n / 1e3


def allocated_bytes(stream, x: np.ndarray, y: np.ndarray, n: int) -> int:
    """Bytes allocated at the peak of n steps beyond what was held before (0: allocation-free)."""
    tracemalloc.start()
    try:
        for _ in itertools.repeat(None, 10):
            stream.step(x, out=y)
        steps = itertools.repeat(None, n)  # (range would allocate its ints past 256)
        tracemalloc.reset_peak()
        held, _ = tracemalloc.get_traced_memory()
        for _ in steps:
            stream.step(x, out=y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - held


TOUCH = 32 * 1024  # bytes written between C++ steps in the "C++ 32K" column


def measure(cell: str, I: int, H: int, rounds: int) -> tuple[float, float, int]:
    model = (rc.LSTM if cell == "lstm" else rc.GRU)(I, H, seed=0)
    stream = model.stream(1)
    x = np.random.default_rng(1).standard_normal(I).astype(np.float32)
    y = np.empty(H, np.float32)
    impl = stream._impl
    per_step = impl.time_steps(x, y, 2000) / 2000
    n = max(20, int(50e-6 / max(per_step, 1e-8)))
    cpp, py, one_line, touched = [], [], [], []
    for _ in range(rounds):
        cpp.append(impl.time_steps(x, y, n) / n * 1e6)
        py.append(python_block(stream, x, y, n))
        one_line.append(impl.time_steps(x, y, n, 64) / n * 1e6)
        touched.append(impl.time_steps(x, y, n, TOUCH) / n * 1e6)
    medians = [float(np.median(v)) for v in (cpp, py, one_line, touched)]
    return (*medians, allocated_bytes(stream, x, y, 1000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--cases", default=DEFAULT_CASES, help="cell:input:hidden,...")
    add_pin_option(parser)
    args = parser.parse_args()
    pin_if_asked(parser, args.pin_cpu, [1])
    print(f"Stream.step from Python vs C++, float32, batch 1, one thread; CPU: {cpu_name()}")
    print(f"medians of {args.rounds} alternating rounds, microseconds per step")
    print(f"{'case':<14} {'C++':>8} {'Python':>8} {'overhead':>9} {'allocated':>10} | "
          f"{'C++ 1 line':>10} {'C++ 32K':>8} {'evicted':>8} {'binding':>8}")
    worst = 0.0
    for case in args.cases.split(","):
        cell, I, H = case.split(":")
        cpp, py, one_line, touched, allocated = measure(cell, int(I), int(H), args.rounds)
        worst = max(worst, py - cpp)
        evicted = touched - one_line
        print(f"{cell.upper() + ' ' + I + '->' + H:<14} {cpp:8.3f} {py:8.3f} {py - cpp:9.3f} {allocated:10d} | "
              f"{one_line:10.3f} {touched:8.3f} {evicted:8.3f} {py - cpp - evicted:8.3f}")
    print(f"largest overhead: {worst:.3f} us (Python step(x, out=) including its loop, minus the C++ step)")
    print("evicted: C++ step with 32 KiB written between steps minus with one line (each step timed "
          "alone); binding: overhead - evicted")


if __name__ == "__main__":
    main()
