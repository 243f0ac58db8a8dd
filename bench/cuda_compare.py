"""rnncore's CUDA kernels against cuDNN (through torch.nn.RNN / LSTM / GRU on a CUDA device),
float32, one layer, input size = hidden size: training (forward + backward) and inference, and
the streaming step against torch.nn.LSTMCell. Needs a GPU, a CUDA build of rnncore's C++ tests
(bench/gpu_check.sh builds bench/cuda_bench.cpp as rnncore_cuda_bench) and torch with CUDA.

    python bench/cuda_compare.py --bench BUILD/rnncore_cuda_bench [--quick] [--budget SECONDS]

Each point is timed on both sides in the same run, one after the other (rnncore first), as the
median of --reps wall-clock reps after a warm-up, each rep ending in a device synchronisation.
torch's TF32 is turned off (rnncore computes in plain float32). Writes
bench/results/cuda_compare_<gpu name>.json (every point measured so far, rewritten after each
point, so a run stopped by its budget or a timeout keeps what it measured) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HIDDEN = [256, 512, 1024, 2048]
BATCH = [1, 8, 64, 256]
STEPS = [100, 500]
CELLS = ["lstm", "gru", "rnn_tanh"]


def torch_time(torch, cell, H, N, T, mode, reps):
    """Median milliseconds of torch.nn on CUDA (cuDNN) for one point."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    if mode == "stream":
        module = torch.nn.LSTMCell(H, H).to(dev)
    else:
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN}[cell]
        module = cls(H, H).to(dev)
    x = torch.randn(T, N, H, device=dev, requires_grad=(mode == "train"))

    def once():
        if mode == "infer":
            with torch.no_grad():
                module(x)
        elif mode == "train":
            y, _ = module(x)
            y.backward(torch.ones_like(y))
        else:
            with torch.no_grad():
                h = torch.zeros(N, H, device=dev)
                c = torch.zeros(N, H, device=dev)
                for t in range(T):
                    h, c = module(x[t], (h, c))
        torch.cuda.synchronize()

    once()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        once()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def points(quick):
    grid = []
    cells = CELLS[:1] if quick else CELLS
    for mode in ("infer", "train"):
        for cell in cells:
            for T in STEPS[:1] if quick else STEPS:
                for H in HIDDEN:
                    for N in BATCH:
                        grid.append((cell, H, N, T, mode))
    grid += [("lstm", 256, 1, 100, "stream"), ("lstm", 256, 256, 100, "stream")]
    # The streaming points, then LSTM's grid, GRU's and the RNN's, each cheapest first, so that a
    # budget cut drops the other cells' largest points first.
    return sorted(grid, key=lambda p: (p[4] != "stream", CELLS.index(p[0]), p[1] * p[1] * p[2] * p[3]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", required=True, help="path to rnncore_cuda_bench")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="LSTM only, T = 100")
    parser.add_argument("--budget", type=float, default=240.0, help="stop starting points after this many seconds")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("cuda_compare: torch sees no CUDA device; nothing measured")
        return 77
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gpu = torch.cuda.get_device_name(0)
    path = os.path.join(args.out, "cuda_compare_" + re.sub(r"[^A-Za-z0-9]+", "_", gpu).strip("_") + ".json")
    os.makedirs(args.out, exist_ok=True)
    bench = subprocess.Popen([args.bench], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    result = {"gpu": gpu, "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
              "command": " ".join(sys.argv), "reps": args.reps, "dtype": "float32",
              "timing": "median wall-clock ms per call after one warm-up, synchronised", "points": []}
    start = time.time()
    print(f"{'cell':>8} {'mode':>6} {'H':>5} {'N':>4} {'T':>4} {'path':>10} {'rnncore ms':>11} {'torch ms':>9} {'speedup':>8}")
    for cell, H, N, T, mode in points(args.quick):
        if time.time() - start > args.budget:
            print(f"cuda_compare: budget of {args.budget:.0f} s reached; later points not measured")
            break
        bench.stdin.write(f"{cell} {H} {N} {T} {mode} {args.reps}\n")
        bench.stdin.flush()
        line = bench.stdout.readline()
        if not line:
            print("cuda_compare: rnncore_cuda_bench stopped", file=sys.stderr)
            return 1
        ours = json.loads(line)
        ours_ms = statistics.median(ours["ms"])
        theirs_ms = torch_time(torch, cell, H, N, T, mode, args.reps)
        point = {"cell": cell, "H": H, "N": N, "T": T, "mode": mode, "path": ours["path"],
                 "rnncore_ms": ours_ms, "torch_ms": theirs_ms, "speedup": theirs_ms / ours_ms}
        result["points"].append(point)
        print(f"{cell:>8} {mode:>6} {H:>5} {N:>4} {T:>4} {ours['path']:>10} {ours_ms:>11.3f} "
              f"{theirs_ms:>9.3f} {theirs_ms / ours_ms:>7.2f}x", flush=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    bench.stdin.close()
    bench.wait(timeout=60)
    print(f"cuda_compare: {len(result['points'])} points written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
