"""Dropout between layers in the compiled kernels against the NumPy reference given the same masks
(forward outputs, states and every gradient), under the thread settings that change how the
layer stack runs (layer by layer, split time loops, the wavefront); and BPTT without dL/dx."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import rnncore as rc
from rnncore import _core, backends, reference
from rnncore._spec import CELL_CODES, param_names

from test_differential import setting

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
CPP = backends.get("cpp")


def _forward(cell, params, x, h0, c0, lens, *, num_layers, bidirectional, dropout_masks=None):
    """The compiled kernels through the cpp backend, as the layers and rnncore.torch call them."""
    I, H = params["weight_ih_l0"].shape[1], params["weight_hh_l0"].shape[1]
    config = _core.ModelConfig(cell, I, H, num_layers, bidirectional, True)
    return CPP.forward(config, params, x, h0, c0, lens, training=True, dropout_masks=dropout_masks)


def _params(cell, I, H, L, D, rng, dtype):
    params = {}
    for name in param_names(L, D == 2, True):
        layer = int(name.split("_l")[1].split("_")[0])
        width = I if layer == 0 else D * H
        rows = GATES[cell] * H
        shape = (rows, width) if name.startswith("weight_ih") else (rows, H) if name.startswith("weight_hh") else (rows,)
        params[name] = rng.uniform(-0.5, 0.5, shape).astype(dtype)
    return params


def _case(cell, L, D, lengths, dtype, seed):
    rng = np.random.default_rng(seed)
    T, N, I, H = 16, 3, 5, 9  # T: enough steps for the wavefront (asserted below)
    params = _params(cell, I, H, L, D, rng, dtype)
    x = rng.standard_normal((T, N, I)).astype(dtype)
    h0 = rng.standard_normal((L * D, N, H)).astype(dtype)
    c0 = rng.standard_normal((L * D, N, H)).astype(dtype) if cell == "lstm" else None
    lens = np.array([16, 5, 11], dtype=np.int64) if lengths else None
    masks = ((rng.random((L - 1, T, N, D * H)) > 0.4) / 0.6).astype(dtype)
    gy = rng.standard_normal((T, N, D * H)).astype(dtype)
    gh = rng.standard_normal((L * D, N, H)).astype(dtype)
    gc = rng.standard_normal((L * D, N, H)).astype(dtype) if cell == "lstm" else None
    return params, x, h0, c0, lens, masks, gy, gh, gc


@pytest.mark.parametrize("settings", ["one thread", "split: units", "wavefront"])
@pytest.mark.parametrize("cell", CELLS)
def test_kernels_with_dropout_masks_match_the_reference(cell, settings):
    for seed, (L, D, lengths, dtype) in enumerate(itertools.product((2, 3), (1, 2), (False, True),
                                                                    (np.float64, np.float32))):
        params, x, h0, c0, lens, masks, gy, gh, gc = _case(cell, L, D, lengths, dtype, seed)
        kw = dict(num_layers=L, bidirectional=D == 2)
        ref = reference.forward(cell, params, x, h0, c0, lens, dropout_masks=masks, **kw)
        ref_grads = reference.backward(cell, params, ref[3], gy, gh, gc)
        with setting(settings):
            if settings == "wavefront" and D == 1 and rc.get_num_threads() >= 2:
                assert _core.wavefront_threads(CELL_CODES[cell], 5, 9, L, False, 16, 3) == 2
            got = _forward(cell, params, x, h0, c0, lens, dropout_masks=masks, **kw)
            got_grads = CPP.backward(got[3], params, gy, gh, gc)
        tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
        where = f"{cell} L={L} D={D} lengths={lengths} {np.dtype(dtype).name}"
        for a, b in zip(got[:3], ref[:3]):
            if b is not None:
                np.testing.assert_allclose(a, b, **tol, err_msg=where)
        for a, b in zip(got_grads[:3], ref_grads[:3]):
            if b is not None:
                np.testing.assert_allclose(a, b, **tol, err_msg=where)
        for name in params:
            np.testing.assert_allclose(got_grads[3][name], ref_grads[3][name], **tol, err_msg=f"{where} {name}")


def test_masks_change_the_result_and_ones_do_not():
    params, x, h0, c0, lens, masks, *_ = _case("gru", 2, 1, False, np.float64, 0)
    kw = dict(num_layers=2, bidirectional=False)
    plain = _forward("gru", params, x, h0, c0, lens, **kw)[0]
    ones = _forward("gru", params, x, h0, c0, lens, dropout_masks=np.ones_like(masks), **kw)[0]
    dropped = _forward("gru", params, x, h0, c0, lens, dropout_masks=masks, **kw)[0]
    np.testing.assert_array_equal(plain, ones)
    assert not np.allclose(plain, dropped)


def test_masks_of_the_wrong_shape_are_refused():
    params, x, h0, c0, lens, masks, *_ = _case("lstm", 2, 1, False, np.float32, 0)
    with pytest.raises(ValueError, match="dropout_masks: expected shape"):
        _forward("lstm", params, x, h0, c0, lens, num_layers=2, bidirectional=False,
                          dropout_masks=masks[:, :-1])


@pytest.mark.parametrize("settings", ["one thread", "wavefront"])
@pytest.mark.parametrize("lengths", [False, True])
def test_backward_without_the_input_gradient_or_frozen_weights(lengths, settings):
    params, x, h0, c0, lens, masks, gy, gh, gc = _case("lstm", 2, 1, lengths, np.float32, 3)
    cfg = _core.ModelConfig("lstm", 5, 9, 2, False, True)
    weights = [params[name] for name in param_names(2, False, True)]
    with setting(settings):
        _, _, _, cache = _core.forward(cfg, weights, x, h0, c0, lens, True, masks)
        full = _core.backward(cache, weights, gy, gh, gc)
        partial = _core.backward(cache, weights, gy, gh, gc, need_grad_input=False)
        frozen = [i % 3 != 0 for i in range(len(weights))]
        some = _core.backward(cache, weights, gy, gh, gc, need_weight_grads=frozen)
    assert partial[0] is None
    for a, b, wanted in zip(some[3], full[3], frozen):
        if wanted:
            np.testing.assert_array_equal(a, b)
        else:
            assert a is None
    np.testing.assert_array_equal(some[0], full[0])
    with pytest.raises(ValueError, match="need_weight_grads: expected 8 flags"):
        _core.backward(cache, weights, gy, gh, gc, need_weight_grads=[True])
    np.testing.assert_array_equal(partial[1], full[1])
    np.testing.assert_array_equal(partial[2], full[2])
    for a, b in zip(partial[3], full[3]):
        np.testing.assert_array_equal(a, b)
