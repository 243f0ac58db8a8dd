"""The compiled kernels against the NumPy reference, forward and backward, over the option grid.

Tolerances: float64 agrees to rtol 1e-10 (observed ~1e-15); float32 kernels are compared with the
float64 reference at rtol 1e-5 / atol 1e-5 (observed ~1e-6: Eigen's vectorised tanh/logistic
and float32 rounding over the time loop).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import rnncore as rc

CELLS = {
    "rnn_tanh": lambda **kw: rc.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: rc.RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: rc.LSTM(**kw),
    "gru": lambda **kw: rc.GRU(**kw),
}
T, N, I, H = 6, 3, 4, 5
UNEQUAL_LENGTHS = [4, 6, 1]


def make_model(cell, dtype=np.float64, **kw):
    return CELLS[cell](input_size=I, hidden_size=H, dtype=dtype, seed=7, **kw)


def random_inputs(model, unbatched, lengths, seed=0):
    rng = np.random.default_rng(seed)
    D = model.num_directions
    if unbatched:
        x = rng.standard_normal((T, I))
        state_shape = (D * model.num_layers, H)
    else:
        x = rng.standard_normal((N, T, I) if model.batch_first else (T, N, I))
        state_shape = (D * model.num_layers, N, H)
    h0 = rng.standard_normal(state_shape) * 0.5
    hx = (h0, rng.standard_normal(state_shape) * 0.5) if model.cell == "lstm" else h0
    lens = None
    if lengths:
        lens = [UNEQUAL_LENGTHS[0]] if unbatched else UNEQUAL_LENGTHS
    return x, hx, lens


def flat_state(state):
    parts = state if isinstance(state, tuple) else (state,)
    return np.concatenate([np.ravel(p) for p in parts])


def run_both(model, x, hx, lens, seed=1):
    """forward + backward on both backends with the same random upstream gradients."""
    results = {}
    for backend in ("cpp", "numpy"):
        y, state, cache = model.forward(x, hx, lens, backend=backend)
        rng = np.random.default_rng(seed)
        grad_y = rng.standard_normal(y.shape)
        if isinstance(state, tuple):
            grad_state = tuple(rng.standard_normal(s.shape) for s in state)
        else:
            grad_state = rng.standard_normal(state.shape)
        results[backend] = (y, state, model.backward(cache, grad_y, grad_state))
    return results["cpp"], results["numpy"]


def assert_all_close(compiled, expected, rtol, atol):
    (y, state, grads), (y_ref, state_ref, grads_ref) = compiled, expected
    np.testing.assert_allclose(y, y_ref, rtol=rtol, atol=atol, err_msg="output")
    np.testing.assert_allclose(flat_state(state), flat_state(state_ref), rtol=rtol, atol=atol, err_msg="state")
    np.testing.assert_allclose(grads.input, grads_ref.input, rtol=rtol, atol=atol, err_msg="grad input")
    np.testing.assert_allclose(flat_state(grads.hx), flat_state(grads_ref.hx), rtol=rtol, atol=atol,
                               err_msg="grad hx")
    assert grads.params.keys() == grads_ref.params.keys()
    for name in grads.params:
        np.testing.assert_allclose(grads.params[name], grads_ref.params[name], rtol=rtol, atol=atol, err_msg=name)


GRID = list(itertools.product(CELLS, (1, 2, 3), (False, True), (False, True), (True, False), (False, True),
                              (False, True)))


@pytest.mark.parametrize("cell,num_layers,bidirectional,batch_first,bias,lengths,unbatched", GRID)
def test_kernels_match_reference_float64(cell, num_layers, bidirectional, batch_first, bias, lengths, unbatched):
    model = make_model(cell, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    x, hx, lens = random_inputs(model, unbatched, lengths)
    compiled, expected = run_both(model, x, hx, lens)
    assert_all_close(compiled, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell,num_layers,bidirectional,lengths",
                         list(itertools.product(CELLS, (1, 2), (False, True), (False, True))))
def test_kernels_float32_match_float64_reference(cell, num_layers, bidirectional, lengths):
    model64 = make_model(cell, num_layers=num_layers, bidirectional=bidirectional)
    model32 = model64.astype(np.float32)
    x, hx, lens = random_inputs(model64, False, lengths)
    compiled, _ = run_both(model32, x, hx, lens)
    _, expected = run_both(model64, x, hx, lens)
    assert compiled[0].dtype == np.float32 and compiled[2].input.dtype == np.float32
    assert_all_close(compiled, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_outputs_past_length_are_zero_and_state_is_last_step(cell):
    model = make_model(cell, bidirectional=True)
    x, _, lens = random_inputs(model, False, True)
    y, state = model(x, lengths=lens)
    h_n = state[0] if isinstance(state, tuple) else state
    for b, length in enumerate(lens):
        assert np.all(y[length:, b] == 0.0)
        alone, alone_state = model(x[:length, b:b + 1])
        alone_h = alone_state[0] if isinstance(alone_state, tuple) else alone_state
        np.testing.assert_allclose(y[:length, b:b + 1], alone, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(h_n[:, b:b + 1], alone_h, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", CELLS)
def test_long_sequence_and_wide_layer_match_reference(cell):
    # Sizes that are not multiples of the SIMD width and a batch larger than a GEMM block.
    model = CELLS[cell](input_size=13, hidden_size=37, num_layers=2, bidirectional=True, dtype=np.float64, seed=3)
    x = np.random.default_rng(4).standard_normal((50, 17, 13))
    lens = np.random.default_rng(5).integers(1, 51, size=17)
    compiled, expected = run_both(model, x, None, lens)
    assert_all_close(compiled, expected, rtol=1e-9, atol=1e-11)


def test_gil_released_kernels_run_in_threads():
    from concurrent.futures import ThreadPoolExecutor

    model = rc.LSTM(8, 16, dtype=np.float64, seed=0)
    xs = [np.random.default_rng(i).standard_normal((20, 4, 8)) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(lambda x: model(x)[0], xs))
    for x, y in zip(xs, outputs):
        # Not bit-identical: a kernel called from another thread may split its GEMMs differently.
        np.testing.assert_allclose(y, model(x)[0], rtol=1e-13, atol=1e-15)


def test_cache_reports_its_size():
    model = rc.GRU(4, 8, num_layers=2)
    _, _, cache = model.forward(np.zeros((10, 3, 4), np.float32))
    # gates (3H) + h_prev + hn per layer, plus each layer's input
    expected_floats = 2 * 10 * 3 * (3 * 8 + 8 + 8) + 10 * 3 * (4 + 8)
    assert cache.nbytes == 4 * expected_floats


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", CELLS)
def test_results_are_bitwise_repeatable_whatever_the_alignment(cell, dtype):
    # The same input at different memory offsets, and backward run twice on one cache, must give
    # the same bits (at a fixed thread count): no path may depend on where an array is aligned.
    model = CELLS[cell](input_size=7, hidden_size=37, num_layers=2, bidirectional=True, dtype=dtype, seed=0)
    x = np.random.default_rng(0).standard_normal((9, 3, 7)).astype(dtype)
    results = []
    for offset in range(5):
        buffer = np.empty(x.size + 8, dtype)
        shifted = buffer[offset:offset + x.size].reshape(x.shape)
        shifted[...] = x
        y, _, cache = model.forward(shifted)
        for _ in range(2):
            grads = model.backward(cache, np.ones_like(y))
            results.append(np.concatenate([y.ravel(), grads.input.ravel()]
                                          + [g.ravel() for g in grads.params.values()]))
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])
