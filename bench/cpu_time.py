"""LSTM inference and training against ONNX Runtime and PyTorch, timed in thread CPU time.

On a shared machine (the 2-vCPU VM this project is measured on runs other jobs' builds beside a
benchmark) wall-clock samples of a 20-200 ms call include the time slices the OS gave to other
processes, and the harness's GEMM yardstick drops with them: in one run the same Eigen GEMM
measured 88 GFLOP/s at the start and 36 at the end. The CPU time of the calling thread leaves
those slices out. Every implementation here runs on the calling thread (rnncore and PyTorch at
one thread, ONNX Runtime with intra_op_num_threads = 1), so its thread CPU time is its cost.

Per case, rounds rotate which implementation goes first; in a round each one runs until it has
spent --budget seconds of CPU, and its round figure is the fastest call. The table gives the
median over rounds. The yardstick is Eigen's float32 GEMM (rnncore._core.gemm_gflops' product,
C[2048, 1024] = A[2048, 512] B[1024, 512]^T) timed the same way: the CPU time of a call with 6
products minus that of a call with 1, over 5.

    python bench/cpu_time.py [--shapes 256x32x100,64x8x200,512x16x25] [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

from rnncore._cli import add_pin_option, pin_if_asked


def fastest_call(fn, budget: float) -> float:
    fn()
    best, spent = float("inf"), 0.0
    while spent < budget:
        start = time.thread_time()
        fn()
        took = time.thread_time() - start
        best, spent = min(best, took), spent + took
    return best


def gemm_rate(core, samples: int = 7) -> float:
    """GFLOP/s of the yardstick product in thread CPU time (setup and warm-up subtracted)."""
    m, n, k = 2048, 1024, 512
    best = float("inf")
    for _ in range(samples):
        start = time.thread_time()
        core.gemm_gflops(m, n, k, 1)
        one = time.thread_time() - start
        start = time.thread_time()
        core.gemm_gflops(m, n, k, 6)
        six = time.thread_time() - start
        if six > one:
            best = min(best, (six - one) / 5)
    return 2.0 * m * n * k / best * 1e-9


def harness():
    """rnncore's benchmark harness module (its runners are the ones timed here)."""
    try:
        from rnncore import benchmark
    except ImportError:  # the harness as an app module
        from rnncore.apps import benchmark
    return benchmark


def runners(torch, ort, hidden: int, batch: int, steps: int) -> dict:
    """{"<mode> <implementation>": call}: the harness's runners (rnncore inference on
    model.prepare()), for inference and training."""
    bench, out = harness(), {}
    for mode in ("inference", "training"):
        case = bench.Case("lstm", hidden, batch, steps, mode=mode)
        for name, fn in bench._runners(case, torch, ort, [], prepared=True).items():
            out[f"{mode[:5]} {name}"] = fn
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="256x32x100,64x8x200,512x16x25", help="HxNxT,...")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.3, help="CPU seconds per sample")
    add_pin_option(parser)
    args = parser.parse_args(argv)
    pin_if_asked(parser, args.pin_cpu, [1])
    from rnncore import _core

    try:
        import torch
    except ImportError:
        torch = None
    try:
        import onnxruntime as ort
        import onnx  # noqa: F401 - torch.onnx.export needs it
    except ImportError:
        ort = None
    _core.set_num_threads(1)
    if torch is not None:
        torch.set_num_threads(1)
    peak = gemm_rate(_core)
    print(f"# thread CPU time, 1 thread, medians of {args.rounds} rounds; GEMM (Eigen float32, "
          f"CPU time) {peak:.1f} GFLOP/s at the start", flush=True)
    print(f"{'case':<22} {'rnncore ms':>10} {'%GEMM':>6} {'torch ms':>9} {'x torch':>8} "
          f"{'ort ms':>8} {'x ort':>6}")
    for shape in args.shapes.split(","):
        hidden, batch, steps = (int(v) for v in shape.split("x"))
        flops = 2.0 * steps * batch * 2 * hidden * 4 * hidden  # forward; training counts 3x
        fns = runners(torch, ort, hidden, batch, steps)
        names = list(fns)
        samples = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                samples[name].append(fastest_call(fns[name], args.budget))
        ms = {name: statistics.median(v) * 1e3 for name, v in samples.items()}
        for mode, factor in (("infer", 1.0), ("train", 3.0)):
            own = ms[f"{mode} rnncore"]
            rate = factor * flops / own * 1e-6 / peak * 100
            line = f"{mode} lstm {shape:<12} {own:10.3f} {rate:5.0f}%"
            if f"{mode} torch" in ms:
                line += f" {ms[f'{mode} torch']:9.3f} {ms[f'{mode} torch'] / own:8.2f}"
            if f"{mode} ort" in ms:
                line += f" {ms[f'{mode} ort']:8.3f} {ms[f'{mode} ort'] / own:6.2f}"
            print(line, flush=True)
    print(f"# GEMM at the end: {gemm_rate(_core):.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
