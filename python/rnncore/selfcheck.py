"""`rnncore check`: every cell's compiled kernels against the NumPy reference, as a table."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .layers import GRU, LSTM, RNN

CASES = (
    ("RNN tanh", lambda **kw: RNN(nonlinearity="tanh", **kw)),
    ("RNN relu", lambda **kw: RNN(nonlinearity="relu", **kw)),
    ("LSTM", lambda **kw: LSTM(**kw)),
    ("GRU", lambda **kw: GRU(**kw)),
)
# float32 kernels are compared against the float64 reference.
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-5}


@dataclass
class CheckRow:
    cell: str
    dtype: str
    forward_error: float
    backward_error: float
    tolerance: float
    seconds: float

    @property
    def ok(self) -> bool:
        return self.forward_error <= self.tolerance and self.backward_error <= self.tolerance


def _flat(parts) -> np.ndarray:
    """Every number in nested tuples / lists / dicts (sorted by key) of arrays, as one vector."""
    if isinstance(parts, dict):
        parts = [parts[k] for k in sorted(parts)]
    if isinstance(parts, (tuple, list)):
        return np.concatenate([_flat(p) for p in parts])
    return np.ravel(np.asarray(parts, dtype=np.float64))


def _relative_error(a, b) -> float:
    a, b = _flat(a), _flat(b)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def _run(model, x, lengths, backend, grad_seed):
    y, state, cache = model.forward(x, lengths=lengths, backend=backend)
    rng = np.random.default_rng(grad_seed)
    grads = model.backward(cache, rng.standard_normal(y.shape))
    return (y, state), (grads.input, grads.hx, grads.params)


def run_checks(seed: int = 0, steps: int = 12, batch: int = 3, input_size: int = 5, hidden_size: int = 7):
    """A 2-layer bidirectional model per cell, with unequal lengths; returns CheckRows."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, batch, input_size))
    lengths = rng.integers(1, steps + 1, size=batch)
    rows = []
    for name, make in CASES:
        reference_model = make(input_size=input_size, hidden_size=hidden_size, num_layers=2,
                               bidirectional=True, dtype=np.float64, seed=seed)
        expected_fwd, expected_bwd = _run(reference_model, x, lengths, "numpy", seed + 1)
        for dtype in (np.float64, np.float32):
            model = reference_model.astype(dtype)
            start = time.perf_counter()
            fwd, bwd = _run(model, x, lengths, "cpp", seed + 1)
            elapsed = time.perf_counter() - start
            rows.append(CheckRow(name, np.dtype(dtype).name, _relative_error(fwd, expected_fwd),
                                 _relative_error(bwd, expected_bwd), TOLERANCE[dtype], elapsed))
    return rows


def format_table(rows) -> str:
    lines = [f"{'cell':<9} {'dtype':<8} {'forward err':>12} {'backward err':>13} {'tolerance':>10} {'ms':>7}  result"]
    for r in rows:
        lines.append(f"{r.cell:<9} {r.dtype:<8} {r.forward_error:>12.2e} {r.backward_error:>13.2e} "
                     f"{r.tolerance:>10.0e} {r.seconds * 1e3:>7.2f}  {'ok' if r.ok else 'FAIL'}")
    return "\n".join(lines)
