"""The workspace pool: outputs and caches come from recycled blocks, which must never leak
values from one call into another, and the pool can be inspected and emptied."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import rnncore as rc


def _train_step(model, x):
    y, state, cache = model.forward(x)
    g = model.backward(cache, np.cos(y))
    return y, state, g


def test_cache_info_reports_bytes_and_limit():
    info = rc.cache_info()
    assert set(info) == {"cached_bytes", "limit_bytes"}
    assert info["limit_bytes"] > 0
    assert 0 <= info["cached_bytes"] <= info["limit_bytes"]


def test_dropped_outputs_are_cached_then_emptied():
    model = rc.GRU(64, 128, seed=0)
    x = np.ones((50, 16, 64), np.float32)
    rc.empty_cache()
    y, _ = model(x)  # y is 50*16*128*4 bytes = 400 KiB: a pooled block
    del y
    gc.collect()
    cached = rc.cache_info()["cached_bytes"]
    assert cached >= 50 * 16 * 128 * 4
    assert rc.empty_cache() == cached
    assert rc.cache_info()["cached_bytes"] == 0


def test_outputs_outlive_the_model_and_an_emptied_cache():
    model = rc.LSTM(8, 96, num_layers=2, seed=3)
    x = np.random.default_rng(0).standard_normal((40, 8, 8)).astype(np.float32)
    y, (h_n, c_n) = model(x)
    expected, _ = model(x, backend="numpy")
    del model
    gc.collect()
    rc.empty_cache()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert y.flags.c_contiguous and y.flags.writeable and y.flags.aligned
    y[:] = 0.0  # the array owns writable memory
    assert not y.any()


@pytest.mark.parametrize("cell", [rc.RNN, rc.LSTM, rc.GRU])
def test_recycled_workspaces_do_not_change_results(cell):
    """The same training step before and after other calls have dirtied the pooled blocks it
    will get back gives bitwise the same outputs and gradients."""
    rng = np.random.default_rng(1)
    model = cell(24, 80, num_layers=2, bidirectional=True, seed=5)
    x = rng.standard_normal((30, 12, 24)).astype(np.float32)
    rc.empty_cache()
    y0, s0, g0 = _train_step(model, x)
    first = (y0.copy(), g0.input.copy(), {k: v.copy() for k, v in g0.params.items()})
    del y0, s0, g0
    # Dirty the pool with calls of other sizes and values (blocks are handed back as they are).
    other = cell(24, 80, num_layers=2, bidirectional=True, seed=9)
    for steps in (30, 25, 31):
        _train_step(other, 1e3 * rng.standard_normal((steps, 12, 24)).astype(np.float32))
    gc.collect()
    y1, _, g1 = _train_step(model, x)
    np.testing.assert_array_equal(y1, first[0])
    np.testing.assert_array_equal(g1.input, first[1])
    for name, value in first[2].items():
        np.testing.assert_array_equal(g1.params[name], value, err_msg=name)
