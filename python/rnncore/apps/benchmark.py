"""rnncore against its CPU peers: PyTorch (nn.RNN/LSTM/GRU, oneDNN on) and ONNX Runtime.

    python bench/compare.py                 # quick preset (about a minute)
    python bench/compare.py --full          # the whole grid (long)
    python bench/compare.py --cells lstm --shapes 256x32x100,128x1x1000 --threads 1,2 \\
        --json out.json --png out.png

Every case runs each implementation in turn, `--repeats` rounds interleaved (so load from other
processes hits all of them alike), and reports medians: milliseconds, GFLOP/s (multiply-adds
count 2; training = forward + backward with every gradient counts 3x the forward), the percent
of the float32 GEMM rate of Eigen measured in the same run at the same threads ("% peak"), and
peer/rnncore time ratios (above 1: rnncore is faster). With ONNX Runtime (and `onnx`) present, its
own MatMul is timed on the yardstick's shape too: its LSTM and GRU run on that GEMM, not Eigen's.
PyTorch and ONNX Runtime are optional: a missing one becomes an empty column and a note.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np

from .._cli import OneLineParser, add_pin_option, pin_if_asked
from .._isa import cpu_model_name

__all__ = ["Case", "main", "run_cases", "measure_interleaved", "format_table", "ort_matmul_gflops",
           "QUICK_SHAPES", "FULL_SHAPES"]

# (hidden H, batch N, steps T); input size = H.
FULL_SHAPES = [(256, 32, 100), (512, 64, 50), (1024, 16, 25), (128, 1, 1000), (64, 8, 200),
               (32, 1, 672), (64, 1, 96), (256, 1, 150)]
QUICK_SHAPES = [(256, 32, 100), (128, 1, 1000), (64, 8, 200), (64, 1, 96)]
CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
# The yardstick GEMM: C[2048, 1024] = A[2048, 512] B[1024, 512]^T.
PEAK_SHAPE = (2048, 1024, 512)


@dataclass
class Case:
    cell: str
    hidden: int
    batch: int
    steps: int
    bidirectional: bool = False
    layers: int = 1
    threads: int = 1
    mode: str = "inference"  # or "training"
    input_size: Optional[int] = None  # None: the hidden size

    @property
    def inputs(self) -> int:
        return self.hidden if self.input_size is None else self.input_size

    @property
    def name(self) -> str:
        shape = f"{self.hidden}x{self.batch}x{self.steps}" + (f"x{self.inputs}" if self.inputs != self.hidden else "")
        extra = ("/bi" if self.bidirectional else "") + (f"/l{self.layers}" if self.layers > 1 else "")
        return f"{self.mode[:5]} {self.cell} {shape}{extra} t{self.threads}"

    def forward_flops(self) -> float:
        directions = 2 if self.bidirectional else 1
        total = 0.0
        for layer in range(self.layers):
            width = self.inputs if layer == 0 else directions * self.hidden
            total += directions * 2.0 * self.steps * self.batch * GATES[self.cell] * self.hidden * (width + self.hidden)
        return total

    def flops(self) -> float:
        return self.forward_flops() * (3.0 if self.mode == "training" else 1.0)


@dataclass
class Result:
    case: Case
    ms: dict = field(default_factory=dict)  # implementation -> median milliseconds
    peak_gflops: float = float("nan")
    memory: dict = field(default_factory=dict)  # training: bytes kept for BPTT per step per layer

    def gflops(self, impl: str) -> float:
        ms = self.ms.get(impl)
        return self.case.flops() / (ms * 1e-3) * 1e-9 if ms else float("nan")

    def ratio(self, impl: str) -> float:
        """peer time / rnncore time: above 1, rnncore is faster."""
        mine, theirs = self.ms.get("rnncore"), self.ms.get(impl)
        return theirs / mine if mine and theirs else float("nan")

    def as_dict(self) -> dict:
        d = {"case": asdict(self.case), "name": self.case.name, "gflop": self.case.flops() * 1e-9,
             "ms": self.ms, "peak_gflops": self.peak_gflops, "memory_bytes_per_step_layer": self.memory}
        d["gflops"] = {impl: self.gflops(impl) for impl in self.ms}
        d["percent_of_peak"] = {impl: 100.0 * self.gflops(impl) / self.peak_gflops for impl in self.ms}
        d["ratio_vs_rnncore"] = {impl: self.ratio(impl) for impl in self.ms if impl != "rnncore"}
        return d


# --------------------------------------------------------------------------- optional peers
def _import_torch():
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return None, f"PyTorch not available ({type(exc).__name__}: {exc}); its columns are skipped"
    return torch, None


def _import_ort():
    try:
        import onnxruntime
    except Exception as exc:  # noqa: BLE001
        return None, f"ONNX Runtime not available ({type(exc).__name__}); its column is skipped"
    return onnxruntime, None


# --------------------------------------------------------------------------- threads and peak
def _set_threads(n: int, torch=None) -> None:
    from .. import _core

    _core.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


def measure_peak(threads: int, repeats: int = 5) -> tuple[float, str]:
    """Float32 GEMM GFLOP/s at `threads` and where it comes from."""
    from .. import _core

    _set_threads(threads)
    m, n, k = PEAK_SHAPE
    if hasattr(_core, "gemm_gflops"):
        return max(_core.gemm_gflops(m, n, k, repeats) for _ in range(3)), "Eigen (rnncore._core.gemm_gflops)"
    a = np.random.rand(m, k).astype(np.float32)
    b = np.random.rand(n, k).astype(np.float32)
    best = min(_timeit(lambda: a @ b.T) for _ in range(repeats))
    return 2.0 * m * n * k / best * 1e-9, "NumPy matmul (this rnncore build has no gemm_gflops)"


def ort_matmul_gflops(ort, threads: int, shape: tuple = PEAK_SHAPE, repeats: int = 5) -> Optional[float]:
    """ONNX Runtime's own float32 MatMul rate at `threads`, GFLOP/s, on the yardstick's shape
    (C[m, n] = A[m, k] B[k, n], B a constant as an LSTM's weights are): the GEMM the ORT column's
    LSTM and GRU run on (MLAS), which is not Eigen's. None where the `onnx` package is missing."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except Exception:  # noqa: BLE001 - an optional extra
        return None
    m, n, k = shape
    b = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])], "yardstick",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), _ort_options(ort, threads),
                                   providers=["CPUExecutionProvider"])
    a = {"A": np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)}
    session.run(None, a)
    best = min(_timeit(lambda: session.run(None, a)) for _ in range(3 * repeats))
    return 2.0 * m * n * k / best * 1e-9


def _timeit(fn: Callable[[], object], inner: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


# --------------------------------------------------------------------------- implementations
def _rnncore_model(case: Case):
    import rnncore as rc

    cls = {"rnn": rc.RNN, "lstm": rc.LSTM, "gru": rc.GRU}[case.cell]
    return cls(case.inputs, case.hidden, num_layers=case.layers, bidirectional=case.bidirectional, seed=0)


def _torch_model(torch, case: Case, state_dict):
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[case.cell]
    model = cls(case.inputs, case.hidden, num_layers=case.layers, bidirectional=case.bidirectional)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.from_numpy(state_dict[name]))
    return model


def _ort_session(torch, ort, model, x, threads: int):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), buf, dynamo=False, input_names=["x"],
                          opset_version=17)
    options = _ort_options(ort, threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])


def _ort_options(ort, threads: int):
    """Session options running ONNX Runtime on `threads` threads, one operator at a time."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


def _runners(case: Case, torch, ort, notes: list, prepared: bool = False) -> dict:
    """{implementation: zero-argument callable running one forward (or training step)}.
    prepared: rnncore's inference runs on model.prepare() (weights packed once, as ONNX Runtime's
    session holds them) instead of the model's call (which packs them per call)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((case.steps, case.batch, case.inputs)).astype(np.float32)
    directions = 2 if case.bidirectional else 1
    grad_y = np.ones((case.steps, case.batch, directions * case.hidden), np.float32)
    model = _rnncore_model(case)
    runners = {}
    if case.mode == "inference":
        infer = model.prepare() if prepared else model
        runners["rnncore"] = lambda: infer(x)
    else:
        def rnncore_step():
            _, _, cache = model.forward(x)
            model.backward(cache, grad_y)
        runners["rnncore"] = rnncore_step
    if torch is not None:
        tmodel = _torch_model(torch, case, model.state_dict())
        tx = torch.from_numpy(x)
        if case.mode == "inference":
            def torch_infer():
                with torch.no_grad():
                    tmodel(tx)
            runners["torch"] = torch_infer
        else:
            txg = tx.clone().requires_grad_(True)
            tgy = torch.from_numpy(grad_y)
            params = list(tmodel.parameters())

            def torch_step():
                for p in params:
                    p.grad = None
                txg.grad = None
                y, _ = tmodel(txg)
                y.backward(tgy)
            runners["torch"] = torch_step
        if ort is not None and case.mode == "inference":
            try:
                session = _ort_session(torch, ort, tmodel, x, case.threads)
                feed = {"x": x}
                runners["ort"] = lambda: session.run(None, feed)
            except Exception as exc:  # noqa: BLE001 - an export failure skips the column
                notes.append(f"{case.name}: ONNX export/session failed ({type(exc).__name__}: {exc})")
    return runners


def _memory(case: Case, torch) -> dict:
    """Bytes kept for backward, per step per layer: rnncore's cache and what autograd saves."""
    model = _rnncore_model(case)
    x = np.zeros((case.steps, case.batch, case.inputs), np.float32)
    _, _, cache = model.forward(x)
    per = float(case.steps * case.layers)
    out = {"rnncore": cache.nbytes / per}
    if torch is not None:
        tmodel = _torch_model(torch, case, model.state_dict())
        saved = []
        seen = set()

        def pack(t):
            key = (t.data_ptr(), t.numel())
            if key not in seen and t.data_ptr() != 0:
                seen.add(key)
                saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y, _ = tmodel(torch.from_numpy(x).requires_grad_(True))
        out["torch"] = sum(saved) / per
        del y
    return out


def measure_interleaved(runners: dict, repeats: int, min_seconds: float, settle_seconds: float = 0.05) -> dict:
    """Median seconds per call per implementation, the implementations interleaved per round."""
    inner = {}
    for name, fn in runners.items():
        fn()  # warm-up (first-call allocations, ORT's session init, oneDNN primitive creation)
        time.sleep(settle_seconds)
        once = _timeit(fn)
        inner[name] = max(1, int(min_seconds / max(once, 1e-6)))
    samples = {name: [] for name in runners}
    names = list(runners)
    for round_ in range(repeats):
        order = names[round_ % len(names):] + names[:round_ % len(names)]  # rotate who goes first
        for name in order:
            # The previous peer's worker threads (ONNX Runtime's, libgomp's) spin a while after its
            # call returns; a short pause lets them park instead of taking this peer's cores.
            time.sleep(settle_seconds)
            samples[name].append(_timeit(runners[name], inner[name]))
    return {name: statistics.median(values) for name, values in samples.items()}


def run_cases(cases: list[Case], repeats: int = 5, min_seconds: float = 0.05,
              with_torch: bool = True, with_ort: bool = True, log=print,
              prepared: bool = False) -> tuple[list[Result], dict]:
    torch, torch_note = _import_torch() if with_torch else (None, "PyTorch disabled by --no-torch")
    ort, ort_note = _import_ort() if (with_ort and torch is not None) else (None, None)
    notes = [n for n in (torch_note, ort_note) if n]
    if with_ort and torch is None and ort_note is None:
        notes.append("ONNX Runtime needs PyTorch to export the models; its column is skipped")
    if not with_ort:
        notes.append("ONNX Runtime disabled by --no-ort")
    peaks, peak_source = {}, ""
    for threads in sorted({c.threads for c in cases}):
        peaks[threads], peak_source = measure_peak(threads)
        log(f"# float32 GEMM peak at {threads} thread(s): {peaks[threads]:.1f} GFLOP/s ({peak_source})")
    # ONNX Runtime's LSTM and GRU run on its own GEMM (MLAS), not on Eigen's: its rate on the same
    # shape says how much of an ORT lead is its matrix kernel rather than its recurrence.
    ort_peaks = {}
    if ort is not None:
        for threads in sorted(peaks):
            rate = ort_matmul_gflops(ort, threads)
            if rate is not None:
                ort_peaks[threads] = rate
                log(f"# ONNX Runtime MatMul, same shape, {threads} thread(s): {rate:.1f} GFLOP/s")
    results = []
    for case in cases:
        _set_threads(case.threads, torch)
        runners = _runners(case, torch, ort, notes, prepared)
        medians = measure_interleaved(runners, repeats, min_seconds)
        result = Result(case, {k: v * 1e3 for k, v in medians.items()}, peaks[case.threads])
        if case.mode == "training":
            result.memory = _memory(case, torch)
        results.append(result)
        log(format_row(result))
    # Peaks again at the end: a drift between the two says the machine's load changed meanwhile.
    end_peaks = {}
    for threads in sorted(peaks):
        end_peaks[threads], _ = measure_peak(threads)
        log(f"# float32 GEMM peak at {threads} thread(s), end of run: {end_peaks[threads]:.1f} GFLOP/s")
    # "% peak" is taken against the better of the two measurements: a low one only means another
    # process held a core at that moment.
    for r in results:
        r.peak_gflops = max(peaks[r.case.threads], end_peaks[r.case.threads])
    meta = {
        "peak_gflops_start": peaks, "peak_gflops_end": end_peaks, "peak_source": peak_source,
        "peak_shape": PEAK_SHAPE, "ort_matmul_gflops": ort_peaks, "notes": notes, "repeats": repeats,
        "python": sys.version.split()[0],
        "rnncore_inference": "model.prepare()" if prepared else "model call",
        "machine": platform.machine(), "processor": platform.processor(), "cpu": cpu_model_name(),
        "torch": getattr(torch, "__version__", None), "onnxruntime": getattr(ort, "__version__", None),
    }
    try:
        from .. import build_info

        meta["rnncore_build"] = build_info()
    except Exception:  # noqa: BLE001
        pass
    return results, meta


# --------------------------------------------------------------------------- reporting
IMPLS = ("rnncore", "torch", "ort")
HEADER = (f"{'case':<34} {'rnncore ms':>10} {'GF/s':>6} {'%peak':>6} | {'torch ms':>9} {'GF/s':>6} {'x':>6} "
          f"| {'ort ms':>8} {'GF/s':>6} {'x':>6} | {'cache B/step/layer (torch)':>26}")


def _fmt(value: float, spec: str, width: int) -> str:
    return f"{value:{width}{spec}}" if value == value else f"{'-':>{width}}"


def format_row(r: Result) -> str:
    nan = float("nan")
    cells = [f"{r.case.name:<34}", _fmt(r.ms.get("rnncore", nan), ".3f", 10), _fmt(r.gflops("rnncore"), ".1f", 6),
             _fmt(100 * r.gflops("rnncore") / r.peak_gflops, ".0f", 6), "|",
             _fmt(r.ms.get("torch", nan), ".3f", 9), _fmt(r.gflops("torch"), ".1f", 6), _fmt(r.ratio("torch"), ".2f", 6),
             "|", _fmt(r.ms.get("ort", nan), ".3f", 8), _fmt(r.gflops("ort"), ".1f", 6), _fmt(r.ratio("ort"), ".2f", 6),
             "|"]
    if r.memory:
        torch_bytes = r.memory.get("torch")
        mem = f"{r.memory['rnncore'] / 1024:.0f} KiB" + (f" ({torch_bytes / 1024:.0f} KiB)" if torch_bytes else "")
        cells.append(f"{mem:>26}")
    return " ".join(cells)


def format_table(results: list[Result]) -> str:
    return "\n".join([HEADER, "-" * len(HEADER), *[format_row(r) for r in results]])


def markdown_table(records: list[dict]) -> str:
    """A saved run (the "results" of --json) as a markdown table."""
    def num(value, spec):
        return "-" if value is None or value != value else format(value, spec)

    lines = ["| case | rnncore ms | GFLOP/s | % peak | torch ms | torch/rnncore | ORT ms | ORT/rnncore | cache KiB/step/layer (torch) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        ms, ratio = r["ms"], r.get("ratio_vs_rnncore", {})
        mem = r.get("memory_bytes_per_step_layer") or {}
        mem_text = "-"
        if mem:
            mem_text = f"{mem['rnncore'] / 1024:.0f}" + (f" ({mem['torch'] / 1024:.0f})" if mem.get("torch") else "")
        lines.append(
            f"| {r['name']} | {num(ms.get('rnncore'), '.3f')} | {num(r['gflops'].get('rnncore'), '.0f')} "
            f"| {num(r['percent_of_peak'].get('rnncore'), '.0f')} | {num(ms.get('torch'), '.3f')} "
            f"| {num(ratio.get('torch'), '.2f')} | {num(ms.get('ort'), '.3f')} | {num(ratio.get('ort'), '.2f')} "
            f"| {mem_text} |")
    return "\n".join(lines)


def write_png(results: list[Result], path: str) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # noqa: BLE001
        return f"matplotlib not available ({type(exc).__name__}); no PNG written"
    labels = [r.case.name for r in results]
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(results)), 5))
    width = 0.4
    xs = np.arange(len(results))
    for i, impl in enumerate(("torch", "ort")):
        ax.bar(xs + (i - 0.5) * width, [r.ratio(impl) for r in results], width, label=f"{impl} time / rnncore time")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("speed-up of rnncore (log)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------- command line
def _parse_shapes(text: str) -> list[tuple[int, ...]]:
    """HxNxT or HxNxTxI items (hidden, batch, steps[, input size]), comma-separated."""
    shapes = []
    for item in text.split(","):
        parts = item.lower().split("x")
        if len(parts) not in (3, 4) or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(
                f"expected HxNxT or HxNxTxI items, comma-separated, with positive integers, got {item!r}")
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def _parse_list(text: str, allowed=None, kind=str) -> list:
    values = [kind(v) for v in text.split(",") if v]
    if allowed is not None:
        bad = [v for v in values if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {allowed}, got {bad}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="rnncore bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true",
                   help="the whole grid: 8 shapes x 3 cells x uni/bi x 1 and 2 threads, plus 2-layer stacks")
    p.add_argument("--shapes", type=_parse_shapes, help="HxNxT[xI],... (hidden, batch, steps[, input size; default = hidden])")
    p.add_argument("--cells", type=lambda s: _parse_list(s, CELLS), help="rnn,lstm,gru")
    p.add_argument("--threads", type=lambda s: _parse_list(s, None, int), help="thread counts, e.g. 1,2")
    p.add_argument("--modes", type=lambda s: _parse_list(s, ("inference", "training")),
                   help="inference,training (default both)")
    p.add_argument("--bidirectional", choices=("no", "yes", "both"), help="default: no (quick), both (--full)")
    p.add_argument("--layers", type=lambda s: _parse_list(s, None, int),
                   help="layer counts, e.g. 1,2 (default 1; --full adds 2 layers for 256x32x100)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds per case (median); default 5, 7 with --full")
    p.add_argument("--min-time", type=float, default=0.05, help="seconds per timed sample (calls are batched)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--png", metavar="PATH", help="write a ratio chart (needs matplotlib)")
    p.add_argument("--markdown", metavar="PATH", help="also write the table as markdown")
    p.add_argument("--report", metavar="JSON", help="print a saved --json run as markdown and exit (runs nothing)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch (and ONNX Runtime, which needs it)")
    p.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime")
    p.add_argument("--prepared", action="store_true",
                   help="time rnncore's inference on model.prepare() (weights packed once, as ONNX "
                        "Runtime's session holds them) instead of the model's call")
    add_pin_option(p)
    return p


def build_cases(args: argparse.Namespace) -> list[Case]:
    shapes = args.shapes or (FULL_SHAPES if args.full else QUICK_SHAPES)
    cells = args.cells or list(CELLS)
    threads = args.threads or ([1, 2] if args.full else [1])
    modes = args.modes or ["inference", "training"]
    bidir = args.bidirectional or ("both" if args.full else "no")
    directions = {"no": [False], "yes": [True], "both": [False, True]}[bidir]
    cases = []
    for t in threads:
        for mode in modes:
            for cell in cells:
                for shape in shapes:
                    h, n, steps = shape[:3]
                    inputs = shape[3] if len(shape) > 3 else None
                    for bi in directions:
                        layer_counts = args.layers or ([1, 2] if args.full and shape == (256, 32, 100) else [1])
                        for layers in layer_counts:
                            cases.append(Case(cell, h, n, steps, bi, layers, t, mode, inputs))
    return cases


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.report:
        with open(args.report) as f:
            print(markdown_table(json.load(f)["results"]))
        return 0
    repeats = args.repeats or (7 if args.full else 5)
    cases = build_cases(args)
    if pin_if_asked(parser, args.pin_cpu, {case.threads for case in cases}):
        print(f"# pinned to CPU {args.pin_cpu}")
    print(f"# rnncore benchmark: {len(cases)} cases, medians of {repeats} interleaved rounds; "
          "ratios are peer time / rnncore time (above 1: rnncore faster)")
    print(HEADER)
    print("-" * len(HEADER))
    if args.prepared:
        print("# rnncore inference: model.prepare() (weights packed once)")
    results, meta = run_cases(cases, repeats=repeats, min_seconds=args.min_time,
                              with_torch=not args.no_torch, with_ort=not args.no_ort,
                              prepared=args.prepared)
    print("# final table (% peak against the better of the start and end GEMM measurements):")
    print(format_table(results))
    for note in meta["notes"]:
        print(f"# note: {note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "argv": sys.argv if argv is None else argv,
                       "results": [r.as_dict() for r in results]}, f, indent=1, default=str)
        print(f"# wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown_table([r.as_dict() for r in results]) + "\n")
        print(f"# wrote {args.markdown}")
    if args.png:
        problem = write_png(results, args.png)
        print(f"# {problem}" if problem else f"# wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
