"""The backend interface (rnncore.backends): every registered backend keeps the contract of its
docstring, and a new backend plugs in by name without touching the layers."""

from __future__ import annotations

import numpy as np
import pytest

import rnncore as rc
from rnncore import backends
from rnncore._spec import param_names

T, N = 5, 3


def model(cell, **kwargs):
    make = {"rnn": lambda: rc.RNN(4, 6, **kwargs), "lstm": lambda: rc.LSTM(4, 6, **kwargs),
            "gru": lambda: rc.GRU(4, 6, **kwargs)}[cell]
    return make()


def arrays(m, rng):
    x = rng.standard_normal((T, N, m.input_size)).astype(m.dtype)
    shape = (m.num_layers * m.num_directions, N, m.hidden_size)
    h0 = rng.standard_normal(shape).astype(m.dtype)
    c0 = rng.standard_normal(shape).astype(m.dtype) if m.cell == "lstm" else None
    return x, h0, c0


CELLS = pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
NAMES = pytest.mark.parametrize("name", backends.names())


def test_the_built_in_backends_are_registered():
    assert backends.names()[:2] == ("cpp", "numpy")
    with pytest.raises(ValueError, match=r"^backend: expected one of \('cpp', 'numpy'.*got 'cuda9'"):
        backends.get("cuda9")
    with pytest.raises(ValueError, match="^backend: "):
        backends.get(["cpp"])


@NAMES
@CELLS
def test_forward_and_backward_keep_the_contract(name, cell):
    backend = backends.get(name)
    m = model(cell, num_layers=2, bidirectional=True, dtype=np.float64, seed=1)
    rng = np.random.default_rng(0)
    x, h0, c0 = arrays(m, rng)
    lengths = np.array([T, 2, 4], dtype=np.int64)
    y, h_n, c_n, cache = backend.forward(m.config, m.parameters(), x, h0, c0, lengths, training=True)
    assert y.shape == (T, N, 2 * m.hidden_size) and h_n.shape == h0.shape and y.dtype == np.float64
    assert (c_n is None) == (cell != "lstm")
    assert not y[2:, 1].any()  # zero past each length
    assert cache.config == m.config  # backward takes the config from here
    assert backend.forward(m.config, m.parameters(), x, h0, c0, lengths, training=False)[3] is None
    grad_y = rng.standard_normal(y.shape)
    grad_x, grad_h0, grad_c0, grads = backend.backward(cache, m.parameters(), grad_y, None, None)
    assert grad_x.shape == x.shape and grad_h0.shape == h0.shape and (grad_c0 is None) == (cell != "lstm")
    assert list(grads) == param_names(2, True, True)
    assert all(grads[k].shape == v.shape for k, v in m.parameters().items())
    # None means zeros, for every optional argument.
    zeros = np.zeros_like(h0)
    explicit = backend.forward(m.config, m.parameters(), x, zeros, zeros if c0 is not None else None,
                               np.full(N, T, np.int64), training=True)
    implicit = backend.forward(m.config, m.parameters(), x, None, None, None, training=True)
    for a, b in zip(explicit[:3], implicit[:3]):
        np.testing.assert_array_equal(a, b)
    with_zeros = backend.backward(implicit[3], m.parameters(), np.zeros_like(y), zeros,
                                  zeros if cell == "lstm" else None)
    with_none = backend.backward(implicit[3], m.parameters(), None, None, None)
    for a, b in zip(with_zeros[:3], with_none[:3]):
        np.testing.assert_array_equal(a, b)


@CELLS
def test_the_backends_agree(cell):
    m = model(cell, num_layers=2, dtype=np.float64, seed=2)
    x, h0, c0 = arrays(m, np.random.default_rng(1))
    results = {}
    for name in ("cpp", "numpy"):
        backend = backends.get(name)
        y, h_n, c_n, cache = backend.forward(m.config, m.parameters(), x, h0, c0, None, training=True)
        results[name] = (y, h_n, backend.backward(cache, m.parameters(), np.ones_like(y), None, None))
    (y_a, h_a, g_a), (y_b, h_b, g_b) = results["cpp"], results["numpy"]
    np.testing.assert_allclose(y_a, y_b, atol=1e-12)
    np.testing.assert_allclose(h_a, h_b, atol=1e-12)
    np.testing.assert_allclose(g_a[0], g_b[0], atol=1e-12)
    for key in g_a[3]:
        np.testing.assert_allclose(g_a[3][key], g_b[3][key], atol=1e-11)


@NAMES
def test_prepare_is_a_copy_with_the_forward_results(name):
    backend = backends.get(name)
    m = model("gru", dtype=np.float64, seed=3)
    x, h0, _ = arrays(m, np.random.default_rng(2))
    prepared = backend.prepare(m.config, m.parameters())
    assert prepared.nbytes > 0
    expected = backend.forward(m.config, m.parameters(), x, h0, None, None, training=False)
    m.parameters()["weight_hh_l0"][...] = 0  # later changes do not reach a prepared copy
    got = prepared(x, h0, None, None)
    for a, b in zip(got[:2], expected[:2]):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_streams_come_from_the_cpp_backend_only():
    m = model("lstm", seed=4)
    stream = backends.get("cpp").stream(m.config, m.parameters(), 2, 1)
    assert stream.batch_size == 2
    with pytest.raises(ValueError, match="numpy backend has no streams"):
        backends.get("numpy").stream(m.config, m.parameters(), 2, 1)


class Counting:
    """A new backend: the reference, counting its calls."""

    name = "counting"

    def __init__(self):
        self.inner = backends.get("numpy")
        self.calls = []

    def forward(self, config, params, x, h0, c0, lengths, *, training):
        self.calls.append("forward")
        return self.inner.forward(config, params, x, h0, c0, lengths, training=training)

    def backward(self, cache, params, grad_y, grad_h_n, grad_c_n):
        self.calls.append("backward")
        return self.inner.backward(cache, params, grad_y, grad_h_n, grad_c_n)

    def prepare(self, config, params):
        self.calls.append("prepare")
        return self.inner.prepare(config, params)

    def stream(self, config, params, batch_size, threads):
        return self.inner.stream(config, params, batch_size, threads)


def test_a_new_backend_plugs_in_by_name(monkeypatch):
    counting = Counting()
    monkeypatch.setitem(backends._REGISTRY, counting.name, counting)
    m = rc.LSTM(4, 6, batch_first=True, seed=5, backend="counting")
    assert m.backend == "counting"
    x = np.random.default_rng(3).standard_normal((N, T, 4)).astype(np.float32)
    y, state, cache = m.forward(x)
    grads = m.backward(cache, np.ones_like(y))
    fast = m.prepare()
    np.testing.assert_array_equal(fast(x)[0], m(x)[0])
    assert counting.calls == ["forward", "backward", "prepare", "forward"]
    reference = m.forward(x, backend="numpy")
    np.testing.assert_array_equal(y, reference[0])
    np.testing.assert_array_equal(grads.input, m.backward(reference[2], np.ones_like(y)).input)
