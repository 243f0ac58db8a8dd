"""ctest: every C++ entry point against the NumPy reference, over a grid, in the build at hand
(each SIMD width and the sanitizer build run it). For each case it saves a model from Python,
writes the inputs, runs cpp_api_check (tests/cpp/cpp_api_check.cpp) under every setting, and
compares what the C++ API returned with rnncore.reference (the same tolerances as the Python
tests: float64 rtol 1e-10, float32 1e-5 against the float64 reference); the C++ forward under
every setting, and the prepared weights' two calls, must also give the same bits.

    python check_cpp_api.py --driver PATH/cpp_api_check --workdir DIR [--quick]

--quick runs every third case (for the sanitizer build). Exit 77 (ctest: skipped) when the
rnncore Python package is not importable.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    import rnncore as rc
except ImportError as exc:  # pragma: no cover
    print(f"skipped: {exc}")
    sys.exit(77)

CELLS = {
    "rnn_tanh": lambda **kw: rc.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: rc.RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: rc.LSTM(**kw),
    "gru": lambda **kw: rc.GRU(**kw),
}
# Below, at and above the packet and panel widths of AVX2 (8, 16 floats) and AVX-512 (16, 32).
HIDDEN_SIZES = [1, 7, 8, 16, 17, 32, 33]
BATCHES = [1, 2, 3, 5, 8]
# name threads plan RNNCORE_TIME_LOOP RNNCORE_WAVEFRONT ("-": unset, decided by size)
SETTINGS = [
    ("one_thread", 1, "measured", "-", "-"),
    ("default", 2, "measured", "-", "-"),
    ("units", 2, "fixed", "units", "-"),
    ("rows", 2, "fixed", "rows", "-"),
    ("measured_units", 2, "measured", "units", "-"),
    ("wavefront", 2, "fixed", "-", "1"),
]


def cases(quick):
    for i, (cell, hidden, batch) in enumerate(itertools.product(CELLS, HIDDEN_SIZES, BATCHES)):
        if quick and i % 3:
            continue
        layers, bidirectional = [(1, False), (2, False), (1, True), (2, True)][i % 4]
        yield dict(cell=cell, hidden=hidden, batch=batch, steps=(1, 2, 6)[i % 3],
                   dtype=(np.float32, np.float64)[(i // 3) % 2], lengths=i % 5 in (1, 3),
                   with_state=(i // 2) % 2 == 0, layers=layers, bidirectional=bidirectional,
                   bias=i % 7 != 6, seed=i)


def reference(model, x, hx, lengths, grad_y, grad_state):
    """{array name: float64 array} as the driver names its outputs."""
    m64 = model.astype(np.float64)
    cast = (lambda s: None if s is None else tuple(a.astype(np.float64) for a in s)
            if isinstance(s, tuple) else s.astype(np.float64))
    y, state, cache = m64.forward(x.astype(np.float64), cast(hx), lengths, backend="numpy")
    g = m64.backward(cache, grad_y.astype(np.float64), cast(grad_state))
    states = state if isinstance(state, tuple) else (state,)
    out = {"y": y, "h_n": states[0]}
    if model.cell == "lstm":
        out["c_n"] = states[1]
    grads = {"grad_x": g.input, "grad_h0": g.hx[0] if isinstance(g.hx, tuple) else g.hx}
    if model.cell == "lstm":
        grads["grad_c0"] = g.hx[1]
    D = model.num_directions
    for layer in range(model.num_layers):
        for d in range(D):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            slot = layer * D + d
            for k, kind in enumerate(["weight_ih", "weight_hh", "bias_ih", "bias_hh"]):
                if kind + suffix in g.params:
                    grads[f"grad_param{4 * slot + k}"] = g.params[kind + suffix]
    return out, grads


def compare(got, want, dtype, where):
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    err = float(np.max(np.abs(got.astype(np.float64) - want.ravel()), initial=0.0))
    if got.size != want.size or not err <= rtol * scale:
        return [f"{where}: differs from the reference by {err:.3g} (allowed {rtol * scale:.3g})"]
    return []


def check_case(driver, workdir, spec):
    dtype = np.dtype(spec["dtype"])
    model = CELLS[spec["cell"]](input_size=5, hidden_size=spec["hidden"], num_layers=spec["layers"],
                                bidirectional=spec["bidirectional"], bias=spec["bias"], dtype=dtype,
                                seed=spec["seed"])
    T, N, H = spec["steps"], spec["batch"], spec["hidden"]
    states = model.num_layers * model.num_directions
    rng = np.random.default_rng(spec["seed"] + 1)
    x = rng.standard_normal((T, N, 5)).astype(dtype)
    hx = None
    if spec["with_state"]:
        h0 = (0.5 * rng.standard_normal((states, N, H))).astype(dtype)
        hx = (h0, (0.5 * rng.standard_normal((states, N, H))).astype(dtype)) if spec["cell"] == "lstm" else h0
    lengths = None
    if spec["lengths"]:
        lengths = rng.integers(1, T + 1, N).astype(np.int64)
        lengths[0] = T
    grad_y = rng.standard_normal((T, N, model.num_directions * H)).astype(dtype)
    grad_h = rng.standard_normal((states, N, H)).astype(dtype)
    grad_c = rng.standard_normal((states, N, H)).astype(dtype)
    grad_state = (grad_h, grad_c) if spec["cell"] == "lstm" else grad_h

    case_dir = os.path.join(workdir, "case")
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    model.save(os.path.join(case_dir, "model.safetensors"))
    arrays = {"x": x, "grad_y": grad_y, "grad_h": grad_h, "grad_c": grad_c}
    if hx is not None:
        arrays.update({"h0": hx[0], "c0": hx[1]} if isinstance(hx, tuple) else {"h0": hx})
    if lengths is not None:
        arrays["lengths"] = lengths
    for name, a in arrays.items():
        np.ascontiguousarray(a).tofile(os.path.join(case_dir, f"{name}.bin"))
    with open(os.path.join(case_dir, "case.txt"), "w") as f:
        f.write(f"{dtype.name} {T} {N} {int(hx is not None)} {int(lengths is not None)}\n")
        for s in SETTINGS:
            f.write(" ".join(str(v) for v in s) + "\n")

    where = (f"{spec['cell']} H={H} N={N} T={T} {dtype.name} layers={spec['layers']} "
             f"bidirectional={spec['bidirectional']} bias={spec['bias']} lengths={lengths} "
             f"state={'given' if hx is not None else 'none'}")
    run = subprocess.run([driver, case_dir], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        return [f"{where}: cpp_api_check exited {run.returncode}: {run.stderr.strip()}"]

    want, want_grads = reference(model, x, hx, None if lengths is None else lengths.tolist(), grad_y, grad_state)
    load = lambda name: np.fromfile(os.path.join(case_dir, name + ".bin"), dtype=dtype)  # noqa: E731
    failures = []
    first = None
    streams = model.num_directions == 1 and lengths is None
    for setting in (s[0] for s in SETTINGS):
        entries = ["forward", "prepared1", "prepared2", "train"] + (["stream_step", "stream_many"] if streams else [])
        for entry in entries:
            for name, w in want.items():
                if entry.startswith("stream") and name == "y":
                    w = w[:, :, :H]
                got = load(f"{setting}.{entry}.{name}")
                failures += compare(got, w, dtype, f"{where} [{setting}] {entry} {name}")
                if entry == "forward":
                    if first is None:
                        first = {}
                    if name in first and not np.array_equal(first[name], got):
                        failures.append(f"{where} [{setting}] forward {name}: not the bits of the first setting")
                    first.setdefault(name, got)
                if entry == "prepared2" and not np.array_equal(got, load(f"{setting}.prepared1.{name}")):
                    failures.append(f"{where} [{setting}] prepared {name}: the second call's bits differ")
        for name, w in want_grads.items():
            failures += compare(load(f"{setting}.train.{name}"), w, dtype, f"{where} [{setting}] train {name}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--driver", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--quick", action="store_true", help="every third case (sanitizer builds)")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    failures, count = [], 0
    for spec in cases(args.quick):
        failures += check_case(args.driver, args.workdir, spec)
        count += 1
    for f in failures[:50]:
        print("FAILED:", f)
    print(f"check_cpp_api: {count} cases x {len(SETTINGS)} settings, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
