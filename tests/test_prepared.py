"""model.prepare(): the weights packed once for inference (rnncore.PreparedModel).

A prepared model must answer every call as the model's own call does (bit for bit, except a
single step of at most 4 sequences, which the model runs on unpacked weights), keep the weights
it was made with whatever happens to the model afterwards, and refuse bad input with the
model's own messages. tests/cpp/test_prepared.cpp checks the C++ side through every thread split.
"""

from __future__ import annotations

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


def make(cell, **kw):
    kw.setdefault("input_size", 5)
    kw.setdefault("hidden_size", 37)
    return CELLS[cell](seed=2, **kw)


def states_of(state):
    return state if isinstance(state, tuple) else (state,)


def assert_same_call(a, b):
    (ya, sa), (yb, sb) = a, b
    np.testing.assert_array_equal(ya, yb)
    for x, y in zip(states_of(sa), states_of(sb)):
        np.testing.assert_array_equal(x, y)


def initial_state(model, batch, rng):
    shape = (model.num_layers * model.num_directions, batch, model.hidden_size)
    h = rng.standard_normal(shape).astype(model.dtype)
    return (h, rng.standard_normal(shape).astype(model.dtype)) if isinstance(model, rc.LSTM) else h


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS)
def test_prepared_call_is_the_model_call_bitwise(cell, bidirectional, dtype):
    model = make(cell, num_layers=2, bidirectional=bidirectional, dtype=dtype)
    fast = model.prepare()
    rng = np.random.default_rng(0)
    for steps, batch in ((9, 5), (1, 6), (30, 1)):
        x = rng.standard_normal((steps, batch, 5)).astype(dtype)
        hx = initial_state(model, batch, rng)
        assert_same_call(fast(x), model(x))
        assert_same_call(fast(x, hx), model(x, hx))
        if steps > 1:
            lengths = rng.integers(1, steps + 1, batch)
            assert_same_call(fast(x, hx, lengths), model(x, hx, lengths))


@pytest.mark.parametrize("cell", CELLS)
def test_prepared_follows_batch_first_and_unbatched_inputs(cell):
    model = make(cell, batch_first=True)
    fast = model.prepare()
    x = np.random.default_rng(1).standard_normal((3, 8, 5)).astype(np.float32)  # (N, T, I)
    assert_same_call(fast(x), model(x))
    assert fast(x)[0].shape == (3, 8, 37)
    one = x[0]  # (T, I)
    assert_same_call(fast(one), model(one))


@pytest.mark.parametrize("cell", CELLS)
def test_single_step_of_few_sequences_agrees_with_the_model(cell):
    # The model runs T = 1, N <= 4 on the unpacked weights (another summation order).
    model = make(cell, num_layers=2, hidden_size=45, input_size=19)
    fast = model.prepare()
    rng = np.random.default_rng(2)
    for batch in (1, 2, 3, 4):
        x = rng.standard_normal((1, batch, 19)).astype(np.float32)
        (y_fast, _), (y_model, _) = fast(x), model(x)
        np.testing.assert_allclose(y_fast, y_model, rtol=1e-5, atol=1e-6)


def test_prepared_keeps_the_weights_it_was_made_with():
    model = make("lstm", num_layers=2)
    x = np.random.default_rng(3).standard_normal((6, 4, 5)).astype(np.float32)
    before = model(x)
    fast = model.prepare()
    for p in model.parameters().values():
        p *= -0.5  # an in-place update, as an optimizer makes
    assert_same_call(fast(x), before)
    y_model, _ = model(x)
    assert not np.array_equal(y_model, before[0])
    assert_same_call(model.prepare()(x), model(x))  # prepare again: the new weights


def test_prepared_keeps_the_call_conventions_it_was_made_with():
    model = make("gru")
    fast = model.prepare()
    model.batch_first = True  # changing the model afterwards does not reach the prepared copy
    x = np.random.default_rng(4).standard_normal((7, 2, 5)).astype(np.float32)
    assert fast(x)[0].shape == (7, 2, 37)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_prepared_refuses_bad_input_like_the_model(cell):
    model = make(cell)
    fast = model.prepare()
    bad_calls = [
        ((np.zeros((4, 2, 6), np.float32),), ValueError, "input_size"),
        ((np.zeros((4, 2, 5), np.complex64),), TypeError, "x"),
        ((np.zeros((0, 2, 5), np.float32),), ValueError, "x"),
        ((np.zeros((4, 2, 5), np.float32), None, [5, 1]), ValueError, "lengths"),
        ((np.zeros((4, 2, 5), np.float32), None, [1, 2, 3]), ValueError, "lengths"),
    ]
    if cell == "lstm":
        bad_calls.append(((np.zeros((4, 2, 5), np.float32), np.zeros((1, 2, 37), np.float32)),
                          TypeError, "hx"))
    else:
        bad_calls.append(((np.zeros((4, 2, 5), np.float32), np.zeros((1, 3, 37), np.float32)),
                          ValueError, "hx"))
    for args, error, name in bad_calls:
        with pytest.raises(error, match=name) as from_fast:
            fast(*args)
        with pytest.raises(error) as from_model:
            model(*args)
        assert str(from_fast.value) == str(from_model.value)


def test_prepare_refuses_what_is_not_a_model():
    with pytest.raises(TypeError, match="model"):
        rc.PreparedModel(object())


def test_core_forward_prepared_checks_its_arrays():
    model = make("lstm")
    fast = model.prepare()
    handle = fast._prepared._handle  # the compiled backend's _core handle
    x = np.zeros((3, 2, 5), np.float32)
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        _core.forward_prepared(handle, x.astype(np.float64), None, None, None)
    with pytest.raises(ValueError, match="x: expected shape"):
        _core.forward_prepared(handle, np.zeros((3, 2, 4), np.float32), None, None, None)
    with pytest.raises(ValueError, match="h0: expected shape"):
        _core.forward_prepared(handle, x, np.zeros((1, 3, 37), np.float32), None, None)
    with pytest.raises(TypeError, match="prepared"):
        _core.forward_prepared(object(), x, None, None, None)
    with pytest.raises(ValueError, match="weights"):
        _core.prepare(_core.ModelConfig("lstm", 5, 37), [])


def test_prepared_reports_its_memory():
    model = make("lstm", hidden_size=64, input_size=64)
    fast = model.prepare()
    weights = sum(p.nbytes for p in model.parameters().values())
    assert weights <= fast.nbytes <= 3 * weights
    assert "PreparedModel" in repr(fast) and "LSTM" in repr(fast)


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_prepared_memory_is_the_parameters_at_panel_multiples_and_more_off_them(cell):
    # What the README says: sizes that are multiples of the panel width pack without padding
    # and with one packing of W_hh (the parameters' bytes exactly); other sizes pad to whole
    # panels and pack W_hh a second time, by gate (1.5-2.5x from H = 48 up; more below, where
    # the padding is most of a panel).
    panel = rc.build_info()["panel_floats"]
    for layers in (1, 2):
        for input_size, hidden_size in ((panel, panel), (1, 4 * panel), (4 * panel, 4 * panel)):
            model = make(cell, hidden_size=hidden_size, input_size=input_size, num_layers=layers)
            weights = sum(p.nbytes for p in model.parameters().values())
            assert model.prepare().nbytes == weights, (cell, input_size, hidden_size, layers)
        for input_size, hidden_size in ((1, 4 * panel - 1), (4 * panel + 1, 4 * panel + 1), (100, 100)):
            model = make(cell, hidden_size=hidden_size, input_size=input_size, num_layers=layers)
            weights = sum(p.nbytes for p in model.parameters().values())
            assert 1.4 * weights < model.prepare().nbytes < 2.6 * weights, (cell, input_size, hidden_size)


def test_benchmark_can_time_prepared_inference():
    benchmark = pytest.importorskip("rnncore.benchmark")
    args = benchmark.build_parser().parse_args(
        ["--shapes", "16x2x4", "--cells", "gru", "--modes", "inference", "--prepared"])
    cases = benchmark.build_cases(args)
    results, meta = benchmark.run_cases(cases, repeats=1, min_seconds=0.0, with_torch=False,
                                        log=lambda *a: None, prepared=True)
    assert results[0].ms["rnncore"] > 0 and meta["rnncore_inference"] == "model.prepare()"
