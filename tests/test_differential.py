"""Every entry point against the NumPy reference, over a grid, under the settings users run.

The entry points: the model call, the prepared model, forward + backward (BPTT), and the stream
(step and step_many). The C++ API is held to the same reference by tests/cpp/check_cpp_api.py
(ctest), in every build CI makes (each SIMD width, the sanitizers).

The grid: every cell x hidden sizes below, at and above the SIMD packet and panel widths of both
AVX2 (8 and 16 floats, 4 and 8 doubles) and AVX-512 (16 and 32 floats) x batches 1-8 and 13
(the few-row kernel, the batched stream blocks of 2 and 6 rows, the row blocks of 6 and 8).
Each case turns the other axes by its index (steps 1, 2 or 7, float32 or float64, lengths or
none, an initial state or none, one or two layers, one or two directions), and runs under every
setting of SETTINGS: one and two threads; the default measured thread plan, which users get and
which alternates between a call's threads and one thread from call to call (its first calls
time both); the fixed plan with every forced split of the time loop (layer by layer) and with
the wavefront. Each call is repeated, so that a plan that alternates is caught, and every repeat of the model call under every setting must give the same
bits (the kernels promise that, whatever the split). A second, smaller grid runs the sizes at
which the default plan itself splits the time loop (H 128-512). A third set is 48 cases off
the grid drawn with a fixed seed (hidden sizes to 160, input sizes 1-70, batches to 40, up to 3
layers).

Tolerances are those of test_kernels.py: float64 rtol 1e-10; float32 against the float64
reference 1e-5 relative to the largest magnitude.
"""

from __future__ import annotations

import contextlib
import itertools
import os

import numpy as np
import pytest

import rnncore as rc
from rnncore import _core

CELLS = {
    "rnn_tanh": lambda **kw: rc.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: rc.RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: rc.LSTM(**kw),
    "gru": lambda **kw: rc.GRU(**kw),
}
HIDDEN_SIZES = [1, 4, 7, 8, 9, 16, 17, 32, 33, 37, 64]
BATCHES = [1, 2, 3, 4, 5, 6, 7, 8, 13]
REPEATS = 2
TWO_THREADS = rc.get_num_threads() >= 2 or os.cpu_count() >= 2

# name -> (threads, thread plan, environment). Unset variables decide by size, as for users.
SETTINGS = {
    "one thread": (1, "measured", {}),
    "default": (2, "measured", {}),
    "split: one": (2, "fixed", {"RNNCORE_TIME_LOOP": "one", "RNNCORE_WAVEFRONT": "0"}),
    "split: units": (2, "fixed", {"RNNCORE_TIME_LOOP": "units", "RNNCORE_WAVEFRONT": "0"}),
    "split: rows": (2, "fixed", {"RNNCORE_TIME_LOOP": "rows", "RNNCORE_WAVEFRONT": "0"}),
    "measured, split: units": (2, "measured", {"RNNCORE_TIME_LOOP": "units"}),
    "wavefront": (2, "fixed", {"RNNCORE_WAVEFRONT": "1"}),
}


@contextlib.contextmanager
def setting(name):
    """Threads, thread plan and environment of one SETTINGS entry, restored afterwards. The
    plan's timings are forgotten on entry, so that each setting starts measuring afresh."""
    threads, plan, env = SETTINGS[name]
    before = (rc.get_num_threads(), rc.get_thread_plan())
    saved = {k: os.environ.get(k) for k in ("RNNCORE_TIME_LOOP", "RNNCORE_WAVEFRONT")}
    try:
        rc.set_num_threads(threads)
        rc.set_thread_plan(plan)
        rc.reset_thread_plan()
        for k in saved:
            os.environ.pop(k, None)
        os.environ.update(env)
        _core._reload_thread_settings()  # the library reads RNNCORE_* once otherwise
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _core._reload_thread_settings()
        rc.set_num_threads(before[0])
        rc.set_thread_plan(before[1])
        rc.reset_thread_plan()


class Case:
    """One grid point: a model, its input, initial state and lengths, and the reference's answers
    (float64, from the NumPy backend on a float64 copy of the model)."""

    def __init__(self, cell, hidden_size, batch, steps, dtype, lengths, with_hx, layers, bidirectional,
                 input_size=5, seed=0):
        self.cell, self.dtype = cell, np.dtype(dtype)
        self.steps, self.batch = steps, batch
        self.model = CELLS[cell](input_size=input_size, hidden_size=hidden_size, num_layers=layers,
                                 bidirectional=bidirectional, dtype=dtype, seed=seed)
        rng = np.random.default_rng(seed + 1)
        self.x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
        state_shape = (self.model.num_directions * layers, batch, hidden_size)
        self.hx = None
        if with_hx:
            h0 = (0.5 * rng.standard_normal(state_shape)).astype(dtype)
            self.hx = (h0, (0.5 * rng.standard_normal(state_shape)).astype(dtype)) if cell == "lstm" else h0
        self.lengths = list(rng.integers(1, steps + 1, batch)) if lengths else None
        if self.lengths is not None:
            self.lengths[0] = steps  # at least one sequence runs every step
        y_shape = (steps, batch, self.model.num_directions * hidden_size)
        self.grad_y = rng.standard_normal(y_shape).astype(dtype)
        self.grad_state = tuple(rng.standard_normal(state_shape).astype(dtype)
                                for _ in range(2 if cell == "lstm" else 1))

        ref_model = self.model.astype(np.float64)
        ref_hx = _cast(self.hx, np.float64)
        y, state, cache = ref_model.forward(self.x.astype(np.float64), ref_hx, self.lengths, backend="numpy")
        grads = ref_model.backward(cache, self.grad_y.astype(np.float64), self._grad_state(np.float64))
        self.want_call = _flat_outputs(y, state)
        self.want_train = {**self.want_call, **_flat_grads(grads)}

    def _grad_state(self, dtype):
        g = tuple(s.astype(dtype) for s in self.grad_state)
        return g if self.cell == "lstm" else g[0]

    def describe(self):
        m = self.model
        return (f"{self.cell} H={m.hidden_size} N={self.batch} T={self.steps} {self.dtype.name} "
                f"layers={m.num_layers} bidirectional={m.bidirectional} lengths={self.lengths} "
                f"hx={'given' if self.hx is not None else 'none'}")

    def call(self):
        return _flat_outputs(*self.model(self.x, self.hx, self.lengths))

    def prepared_call(self, prepared):
        return _flat_outputs(*prepared(self.x, self.hx, self.lengths))

    def train(self):
        y, state, cache = self.model.forward(self.x, self.hx, self.lengths)
        grads = self.model.backward(cache, self.grad_y, self._grad_state(self.dtype))
        return {**_flat_outputs(y, state), **_flat_grads(grads)}

    def streamable(self):
        return not self.model.bidirectional and self.lengths is None

    def stream_outputs(self):
        """The top layer's h at every step, from step() and from step_many(), both starting from
        the case's initial state; the reference's is y itself."""
        results = {}
        for how in ("step", "step_many"):
            stream = self.model.stream(self.batch)
            if self.hx is not None:
                stream.state = self.hx
            if how == "step":
                y = np.stack([stream.step(self.x[t]) for t in range(self.steps)])
            else:
                y = stream.step_many(self.x)
            state = stream.state
            results[how] = _flat_outputs(y, state)
        return results


def _cast(state, dtype):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.astype(dtype) for s in state)
    return state.astype(dtype)


def _flat_outputs(y, state):
    parts = state if isinstance(state, tuple) else (state,)
    out = {"y": np.array(y)}
    out.update({f"state{i}": np.array(s) for i, s in enumerate(parts)})
    return out


def _flat_grads(grads):
    out = {"grad_input": np.array(grads.input)}
    hx = grads.hx if isinstance(grads.hx, tuple) else (grads.hx,)
    out.update({f"grad_hx{i}": np.array(g) for i, g in enumerate(hx)})
    out.update({f"grad_{k}": np.array(v) for k, v in grads.params.items()})
    return out


def assert_matches_reference(got, want, dtype, where):
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    for name, w in want.items():
        g = np.asarray(got[name], dtype=np.float64)
        assert g.shape == w.shape, f"{where}: {name} has shape {g.shape}, the reference {w.shape}"
        scale = max(1.0, float(np.max(np.abs(w), initial=0.0)))
        err = float(np.max(np.abs(g - w), initial=0.0))
        assert err <= rtol * scale, f"{where}: {name} differs from the reference by {err:.3g} (allowed {rtol * scale:.3g})"


def assert_same_bits(got, want, where):
    for name, w in want.items():
        assert np.array_equal(got[name], w), f"{where}: {name} is not bitwise equal to the first call's"


def grid():
    """The cartesian product of cell x hidden size x batch; the other axes turn with the index
    (periods 3, 2, 5, 2 and 4, pairwise coprime where it matters, so their combinations spread)."""
    cases = []
    for i, (cell, hidden, batch) in enumerate(itertools.product(CELLS, HIDDEN_SIZES, BATCHES)):
        layers, bidirectional = [(1, False), (2, False), (1, True), (2, True)][i % 4]
        cases.append(pytest.param(
            dict(cell=cell, hidden_size=hidden, batch=batch, steps=(1, 2, 7)[i % 3],
                 dtype=(np.float32, np.float64)[(i // 3) % 2], lengths=i % 5 in (1, 3),
                 with_hx=(i // 2) % 2 == 0, layers=layers, bidirectional=bidirectional, seed=i),
            id=f"{cell}-H{hidden}-N{batch}"))
    return cases


def run_every_entry_point(case, setting_names):
    """Runs every entry point of `case` under each setting, REPEATS times, against the reference;
    the model call must also give the same bits under every setting and on every repeat."""
    first_call = None
    for name in setting_names:
        where = f"{case.describe()} [{name}]"
        with setting(name):
            prepared = case.model.prepare()
            for r in range(REPEATS):
                got = case.call()
                assert_matches_reference(got, case.want_call, case.dtype, f"model call #{r + 1}, {where}")
                if first_call is None:
                    first_call = got
                assert_same_bits(got, first_call, f"model call #{r + 1}, {where}")

                got = case.prepared_call(prepared)
                assert_matches_reference(got, case.want_call, case.dtype, f"prepared call #{r + 1}, {where}")
                # Documented exception: one step of <= 4 sequences runs unpacked in the model call.
                if not (case.steps == 1 and case.batch <= 4):
                    assert_same_bits(got, first_call, f"prepared call #{r + 1}, {where}")

                got = case.train()
                assert_matches_reference(got, case.want_train, case.dtype, f"forward + backward #{r + 1}, {where}")
            if case.streamable():
                for how, got in case.stream_outputs().items():
                    assert_matches_reference(got, case.want_call, case.dtype, f"stream {how}, {where}")


def settings_for(case):
    names = ["one thread"]
    if TWO_THREADS:
        names += [n for n in SETTINGS if n != "one thread"]
        if case.model.num_layers < 2 or case.model.bidirectional:
            names = [n for n in names if "wavefront" not in n]  # the wavefront cannot run there
    return names


@pytest.mark.parametrize("params", grid())
def test_every_entry_point_matches_reference(params):
    case = Case(**params)
    run_every_entry_point(case, settings_for(case))


# Sizes at which the default plan's size rules give the time loop two threads (split by units
# or by sequences), run as users run them: default settings and one thread.
LARGE = [pytest.param(dict(cell=cell, hidden_size=hidden, batch=batch, steps=20, dtype=dtype,
                           lengths=batch > 1 and i % 2 == 0, with_hx=i % 3 == 0, layers=1,
                           bidirectional=False, input_size=64, seed=100 + i),
                      id=f"{cell}-H{hidden}-N{batch}-{np.dtype(dtype).name}")
         for i, (cell, hidden, batch, dtype) in enumerate(
             itertools.product(["lstm", "gru", "rnn_tanh"], [128, 256, 512], [1, 2, 4, 8],
                               [np.float32]))]


@pytest.mark.parametrize("params", LARGE)
def test_sizes_the_default_plan_splits_match_reference(params):
    case = Case(**params)
    names = ["default", "one thread", "split: units", "split: rows"] if TWO_THREADS else ["one thread"]
    run_every_entry_point(case, names)


def random_cases(count, seed):
    """Cases off the grid, drawn with a fixed seed: hidden sizes up to 160, input sizes 1-70,
    batches up to 40, up to 30 steps and 3 layers, every other axis at random. A float32 ReLU
    RNN is drawn in float64 instead: a stack of them in float32 meets pre-activations within
    float32 rounding of 0 (a sweep of some 37k such draws found five, e.g. a unit at 7.5e-9 in
    the kernel and at or below 0 in the reference), which take the other branch and move the
    gradients by ~1e-2 on one machine and not on another; float64 runs the same kernel code."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        cell = str(rng.choice(list(CELLS)))
        dtype = np.float64 if cell == "rnn_relu" else (np.float32, np.float64)[int(rng.integers(2))]
        batch = int(rng.choice([1, 2, 3, rng.integers(4, 13), rng.integers(13, 41)]))
        params = dict(cell=cell, hidden_size=int(rng.choice([rng.integers(1, 41), rng.integers(41, 161)])),
                      batch=batch, steps=int(rng.choice([1, 2, rng.integers(3, 31)])), dtype=dtype,
                      lengths=batch > 1 and bool(rng.random() < 0.4), with_hx=bool(rng.random() < 0.5),
                      layers=int(rng.integers(1, 4)), bidirectional=bool(rng.random() < 0.4),
                      input_size=int(rng.choice([1, rng.integers(2, 71)])), seed=int(rng.integers(10**6)))
        cases.append(pytest.param(params, id=f"{i}-{cell}-H{params['hidden_size']}-N{batch}"))
    return cases


@pytest.mark.parametrize("params", random_cases(48, seed=20261202))
def test_random_cases_match_reference(params):
    case = Case(**params)
    run_every_entry_point(case, settings_for(case))


@pytest.mark.skipif(not TWO_THREADS, reason="needs two threads")
def test_prepared_lstm_under_the_default_plan_matches_reference():
    """Issue 14, defect 1: LSTM(64, 512) prepared, x (20, 2, 64), was off by ~2e-2 on every other
    call (the measured plan alternated between one thread and a split by units, which took the
    per-gate packing of W_hh that the prepared weights did not hold where H is a multiple of the
    panel width). The plan's report must show that both ways ran."""
    model = rc.LSTM(64, 512, seed=1)
    x = np.random.default_rng(0).standard_normal((20, 2, 64)).astype(np.float32)
    want = _flat_outputs(*model.astype(np.float64)(x.astype(np.float64), backend="numpy"))
    with setting("default"):
        prepared = model.prepare()
        for r in range(8):
            assert_matches_reference(_flat_outputs(*prepared(x)), want, np.float32, f"call #{r + 1}")
        report = [e for e in rc.thread_plan_report() if e["cell"] == "lstm" and e["hidden_size"] == 512]
    assert report, "the measured plan timed no call of this model"
    assert any(0 < e["alone_calls"] < e["calls"] for e in report), report


@pytest.mark.skipif(not TWO_THREADS, reason="needs two threads")
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("hidden_size", [16, 32, 48, 64, 96, 63, 65, 100])
def test_prepared_split_by_units_matches_reference(cell, hidden_size):
    """Issue 14, defect 1: with RNNCORE_TIME_LOOP=units, prepared LSTMs and GRUs were wrong for
    every H that is a multiple of the panel width."""
    case = Case(cell, hidden_size, batch=3, steps=10, dtype=np.float32, lengths=False, with_hx=True,
                layers=1, bidirectional=False, input_size=8, seed=hidden_size)
    with setting("split: units"):
        prepared = case.model.prepare()
        for r in range(2):
            assert_matches_reference(case.prepared_call(prepared), case.want_call, case.dtype, f"call #{r + 1}")
