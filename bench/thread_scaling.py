"""Does a second thread ever make rnncore slower? A sweep over small and medium shapes.

    python bench/thread_scaling.py                      # the default grid, ~40 s
    python bench/thread_scaling.py --cells gru --hidden 64,256 --batch 1,16 --steps 100
    python bench/thread_scaling.py --json out.json
    python bench/thread_scaling.py --layers 2           # stacks: the wavefront over layers
    python bench/thread_scaling.py --splits             # also each split of the time loop
    python bench/thread_scaling.py --plans              # also 2 threads without the measured plan
    python bench/thread_scaling.py --versus RNNCORE_PARALLEL_PACK=0   # a knob's effect

For every (cell, H, N, T, mode) it times rnncore at 1 and at 2 threads, interleaved the way
bench/compare.py interleaves its peers (rnncore.benchmark.measure_interleaved), and prints the
medians and the speed-up t1/t2. Rows where the second thread loses more
than --tolerance (default 5%, the noise of these machines) are flagged "SLOWER"; the exit code
is 1 when any is. Input size = hidden size unless --input-size is given. The rule: two
threads never slower than one;
at small sizes the kernels must pick fewer threads rather than lose.

--splits also times 2 threads with the time loop's split forced (RNNCORE_TIME_LOOP=units: every
thread takes a share of the hidden units, a barrier per step; =rows: a share of the sequences, no
barrier; =one) and prints which one rnncore picks by itself (rnncore._core.time_loop_split) and
which one was fastest: the data behind sequence.cpp's plan_time_loop.

--plans also times 2 threads with the measured thread plan off (rnncore.set_thread_plan("fixed"):
every call takes the threads the size rules give it) beside the default ("measured": a call that
may use two threads times itself against one and runs the faster), interleaved with the rest.

--versus VAR=VALUE (repeatable) also times 2 threads with that environment variable set for the
call, e.g. RNNCORE_PARALLEL_PACK=0 (pack the weights on one thread), against 2 threads without
it, both with the fixed plan (so that the measured plan's choice does not mix into the knob's
effect); implies --plans.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys

import numpy as np

import rnncore as rc
from rnncore import _core
from rnncore.benchmark import measure_interleaved


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def measure(cell: str, hidden: int, batch: int, steps: int, mode: str, rounds: int,
            min_seconds: float, layers: int = 1, splits: bool = False, plans: bool = False,
            input_size: int | None = None, versus: tuple[str, ...] = ()) -> dict:
    inputs = hidden if input_size is None else input_size
    model = {"rnn": rc.RNN, "lstm": rc.LSTM, "gru": rc.GRU}[cell](inputs, hidden, num_layers=layers,
                                                                  seed=0)
    x = np.random.default_rng(0).standard_normal((steps, batch, inputs)).astype(np.float32)
    grad_y = np.ones((steps, batch, hidden), np.float32)

    # "2 threads" runs the plan in force (measured unless RNNCORE_THREAD_PLAN=fixed); with
    # --plans, measured against fixed.
    found_plan = rc.get_thread_plan()

    plans = plans or bool(versus)
    default_plan = "measured" if plans else found_plan
    found_env = {spec.split("=", 1)[0]: os.environ.get(spec.split("=", 1)[0]) for spec in versus}

    def at(threads: int, split: str = "", plan: str | None = None, env: str = ""):
        def call():
            rc.set_num_threads(threads)  # ~0.1 us: nothing beside the calls it times
            rc.set_thread_plan(plan or default_plan)
            if splits:
                os.environ["RNNCORE_TIME_LOOP"] = split  # "" = by size
            for name in found_env:
                os.environ.pop(name, None)
            if env:
                name, value = env.split("=", 1)
                os.environ[name] = value
            _core._reload_thread_settings()  # the library reads RNNCORE_* once otherwise
            if mode == "inference":
                model(x)
            else:
                _, _, cache = model.forward(x)
                model.backward(cache, grad_y)
        return call

    runners = {1: at(1), 2: at(2)}
    if splits:
        runners.update({"one": at(2, "one"), "units": at(2, "units")})
        if batch >= 2:
            runners["rows"] = at(2, "rows")
    if plans:
        runners["fixed"] = at(2, plan="fixed")
    for spec in versus:
        runners[spec] = at(2, plan="fixed", env=spec)
    # No pause between samples: there is no peer whose thread pool must park first, and a pause
    # would let the second core go idle, timing its wake-up rather than the kernels.
    try:
        seconds = measure_interleaved(runners, rounds, min_seconds, settle_seconds=0.0)
    finally:
        os.environ.pop("RNNCORE_TIME_LOOP", None)
        for name, value in found_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _core._reload_thread_settings()
        rc.set_thread_plan(found_plan)
    row = {"cell": cell, "hidden": hidden, "input_size": inputs, "batch": batch, "steps": steps,
           "layers": layers,
           "mode": mode, "ms_1_thread": seconds[1] * 1e3, "ms_2_threads": seconds[2] * 1e3,
           "speedup": seconds[1] / seconds[2]}
    if plans:
        row["ms_2_threads_fixed"] = seconds["fixed"] * 1e3
        row["speedup_fixed"] = seconds[1] / seconds["fixed"]
    if versus:
        # > 1: the knob makes two threads slower than without it.
        row["versus"] = {spec: {"ms": seconds[spec] * 1e3, "vs_fixed": seconds[spec] / seconds["fixed"]}
                         for spec in versus}
    if splits:
        from rnncore._spec import CELL_CODES

        rc.set_num_threads(2)
        code = CELL_CODES["rnn_tanh" if cell == "rnn" else cell]
        row["chosen"] = rc._core.time_loop_split(code, hidden, steps, batch)[1]
        row["ms_split"] = {k: seconds[k] * 1e3 for k in ("one", "units", "rows") if k in seconds}
        row["fastest"] = min(row["ms_split"], key=row["ms_split"].get)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", default="rnn,lstm,gru")
    p.add_argument("--hidden", type=_ints, default=[32, 64, 128, 256])
    p.add_argument("--batch", type=_ints, default=[1, 4, 16, 64])
    p.add_argument("--steps", type=_ints, default=[100])
    p.add_argument("--layers", type=_ints, default=[1], help="stacked layers, e.g. 1,2")
    p.add_argument("--input-size", type=_ints, default=None,
                   help="input sizes (default: each hidden size)")
    p.add_argument("--modes", default="inference,training")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per case (median)")
    p.add_argument("--min-time", type=float, default=0.03, help="seconds per timed sample")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="flag rows where 2 threads are more than this fraction slower")
    p.add_argument("--splits", action="store_true",
                   help="also time each split of the time loop at 2 threads (one/units/rows)")
    p.add_argument("--plans", action="store_true",
                   help='also time 2 threads with the measured thread plan off ("fixed")')
    p.add_argument("--versus", metavar="VAR=VALUE", action="append", default=[],
                   help="also time 2 threads with this environment variable set (repeatable; "
                        "implies --plans)")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    for spec in args.versus:
        if "=" not in spec or not spec.split("=", 1)[0]:
            p.error(f"--versus: expected VAR=VALUE, got {spec!r}")
    args.plans = args.plans or bool(args.versus)
    cells = [c for c in args.cells.split(",") if c]
    modes = [m for m in args.modes.split(",") if m]
    for c in cells:
        if c not in ("rnn", "lstm", "gru"):
            p.error(f"--cells: expected a subset of rnn,lstm,gru, got {c!r}")
    for m in modes:
        if m not in ("inference", "training"):
            p.error(f"--modes: expected a subset of inference,training, got {m!r}")

    rows = []
    print(f"{'case':34s} {'1 thread ms':>12s} {'2 threads ms':>13s} {'speed-up':>9s}"
          + ("  fixed plan: 2 threads ms, speed-up" if args.plans else "")
          + ("  2 threads: one / units / rows ms, chosen, fastest" if args.splits else ""))
    for mode in modes:
        for cell in cells:
            for h in args.hidden:
                for n in args.batch:
                    for t in args.steps:
                        for layers, i in itertools.product(args.layers, args.input_size or [None]):
                            r = measure(cell, h, n, t, mode, args.rounds, args.min_time, layers,
                                        args.splits, args.plans, i, tuple(args.versus))
                            r["slower"] = r["speedup"] < 1.0 - args.tolerance
                            rows.append(r)
                            name = (f"{mode[:5]} {cell} {h}x{n}x{t}" + (f"x{i}" if i is not None else "")
                                    + (f" L{layers}" if layers > 1 else ""))
                            flag = "  SLOWER" if r["slower"] else ""
                            if args.plans:
                                fixed_slower = r["speedup_fixed"] < 1.0 - args.tolerance
                                flag += (f"  {r['ms_2_threads_fixed']:.3f} {r['speedup_fixed']:.2f}"
                                         + (" (slower)" if fixed_slower else ""))
                            for spec, v in r.get("versus", {}).items():
                                flag += f"  {spec}: {v['ms']:.3f} ({v['vs_fixed']:.2f}x fixed)"
                            if args.splits:
                                ms = r["ms_split"]
                                flag += "  " + " / ".join(
                                    f"{ms[k]:.3f}" if k in ms else "-" for k in ("one", "units", "rows"))
                                flag += f"  {r['chosen']}, {r['fastest']}"
                            print(f"{name:34s} {r['ms_1_thread']:12.3f} {r['ms_2_threads']:13.3f} "
                                  f"{r['speedup']:9.2f}{flag}", flush=True)
    slower = [r for r in rows if r["slower"]]
    speedups = [r["speedup"] for r in rows]
    print(f"# {len(rows)} cases: speed-up min {min(speedups):.2f}, median "
          f"{statistics.median(speedups):.2f}, max {max(speedups):.2f}; "
          f"{len(slower)} slower than 1 thread by more than {args.tolerance:.0%}")
    if args.plans:
        fixed = [r["speedup_fixed"] for r in rows]
        ratio = [r["ms_2_threads_fixed"] / r["ms_2_threads"] for r in rows]
        print(f"# fixed plan: speed-up min {min(fixed):.2f}, median {statistics.median(fixed):.2f}; "
              f"{sum(v < 1.0 - args.tolerance for v in fixed)} slower than 1 thread; fixed / measured "
              f"time: median {statistics.median(ratio):.2f}, min {min(ratio):.2f}, max {max(ratio):.2f}")
    for spec in args.versus:
        ratio = [r["versus"][spec]["vs_fixed"] for r in rows]
        print(f"# {spec}: time / fixed plan's without it: median {statistics.median(ratio):.2f}, "
              f"min {min(ratio):.2f}, max {max(ratio):.2f}")
    if args.splits:
        # How much the chosen split leaves on the table against the fastest forced one.
        losses = [r["ms_split"].get(r["chosen"], r["ms_2_threads"]) / r["ms_split"][r["fastest"]]
                  for r in rows]
        agree = sum(r["chosen"] == r["fastest"] for r in rows)
        print(f"# split chosen = fastest in {agree} of {len(rows)}; chosen / fastest time: median "
              f"{statistics.median(losses):.2f}, max {max(losses):.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "tolerance": args.tolerance, "build": rc.build_info()}, f, indent=1)
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
