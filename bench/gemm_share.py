"""Training (forward + BPTT) as a share of the GEMM rate measured beside each call.

The 2-vCPU VM this project is measured on runs in phases: the same training call and the same
GEMM yardstick both move by 25% from one minute to the next, in thread CPU time too (another
tenant on the same physical core), so a GEMM rate taken at the start of a run and a call timed
later can disagree by that much (stop 23 read GRU 512x16x25 training as 69% of GEMM that way).
Here every training call is paired with the yardstick timed just before and just after it, in
thread CPU time, and its share is its rate over the faster of the two; the table gives the
median and quartiles of those shares over the rounds. The call is the harness's (rnncore's
`rnncore bench` / bench/compare.py training runner: forward with cache + backward, every
gradient), its flops the harness's count (training = 3x the forward); the yardstick is
bench/cpu_time.py's (Eigen float32 GEMM, C[2048, 1024] = A[2048, 512] B[1024, 512]^T).

    python bench/gemm_share.py [--shapes 256x32x100,512x16x25] [--cells lstm,gru] [--rounds 30]
"""
from __future__ import annotations

import argparse
import statistics
import time

from cpu_time import gemm_rate, harness

from rnncore._cli import add_pin_option, pin_if_asked


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="256x32x100,512x16x25", help="HxNxT,...")
    parser.add_argument("--cells", default="lstm,gru", help="lstm,gru,rnn")
    parser.add_argument("--rounds", type=int, default=30)
    add_pin_option(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    pin_if_asked(parser, args.pin_cpu, [1])
    from rnncore import _core

    _core.set_num_threads(1)
    bench = harness()
    cases = []
    for cell in args.cells.split(","):
        for shape in args.shapes.split(","):
            hidden, batch, steps = (int(v) for v in shape.split("x"))
            case = bench.Case(cell, hidden, batch, steps, mode="training")
            cases.append((case, bench._runners(case, None, None, [], prepared=True)["rnncore"]))
    for _, call in cases:
        call()  # first calls (allocation, thread plan) left out
    shares = {case.name: [] for case, _ in cases}
    rates = []
    for _ in range(args.rounds):
        for case, call in cases:
            before = gemm_rate(_core, samples=2)
            start = time.thread_time()
            call()
            took = time.thread_time() - start
            after = gemm_rate(_core, samples=2)
            rates += [before, after]
            shares[case.name].append(case.flops() / took * 1e-9 / max(before, after))
    print(f"# thread CPU time, 1 thread, {args.rounds} rounds; GEMM yardstick beside each call "
          f"{min(rates):.1f}-{max(rates):.1f} GFLOP/s")
    print(f"{'case':<28} {'median':>7} {'quartiles':>12}")
    for name, values in shares.items():
        q1, q2, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
        print(f"{name:<28} {q2 * 100:6.0f}% {q1 * 100:5.0f}-{q3 * 100:.0f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
