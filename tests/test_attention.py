"""rnncore.Attention: the dot (Luong) and additive (Bahdanau) scores, forward and backward.

Gradients are checked against central finite differences in float64 and against PyTorch's
autograd of the same formulas (skipped when torch is not installed).
"""

from __future__ import annotations

import numpy as np
import pytest

from rnncore import Attention
from test_toolkit import numeric_grad

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-12)}
SHAPES = {"sequence": (3, 2), "one step": (2,)}  # query's leading shape; keys (5, 2, K)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def make_layer(score, dtype=np.float64, seed=0):
    if score == "dot":
        return Attention(4, 4, dtype=dtype, seed=seed)
    return Attention(3, 4, score="additive", attention_size=6, dtype=dtype, seed=seed)


def inputs(layer, leading, dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    query = rng.standard_normal(leading + (layer.query_size,)).astype(dtype)
    keys = rng.standard_normal((5, 2, layer.key_size)).astype(dtype)
    return query, keys


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
@pytest.mark.parametrize("lengths", [None, [5, 2]])
def test_attention_backward_matches_finite_differences_float64(score, shape, lengths):
    layer = make_layer(score)
    query, keys = inputs(layer, SHAPES[shape])
    context, _, cache = layer.forward(query, keys, lengths)
    weights_of_loss = np.random.default_rng(2).standard_normal(context.shape)

    def loss():
        return float(np.sum(weights_of_loss * layer(query, keys, lengths)[0]))

    grad_query, grad_keys, grads = layer.backward(cache, weights_of_loss)
    np.testing.assert_allclose(grad_query, numeric_grad(loss, query), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_keys, numeric_grad(loss, keys), rtol=1e-6, atol=1e-8)
    assert set(grads) == set(layer.parameters())
    for name, param in layer.parameters().items():
        np.testing.assert_allclose(grads[name], numeric_grad(loss, param), rtol=1e-6, atol=1e-8)
    if lengths is not None:  # the masked keys of sequence 1 get no gradient at all
        assert not grad_keys[2:, 1].any()


def torch_attention(torch, layer, query, keys, lengths):
    """The same formulas in torch, batch-major inside like the layer."""
    params = {name: torch.tensor(value, requires_grad=True) for name, value in layer.parameters().items()}
    q = torch.tensor(query, requires_grad=True)
    k = torch.tensor(keys, requires_grad=True)
    qb = (q[:, None, :] if q.dim() == 2 else q.transpose(0, 1))  # (N, Tq, Q)
    kb = k.transpose(0, 1)  # (N, Ts, K)
    if layer.score == "dot":
        scores = qb @ kb.transpose(1, 2)
    else:
        energies = torch.tanh((qb @ params["query_weight"].T)[:, :, None, :]
                              + (kb @ params["key_weight"].T)[:, None, :, :])
        scores = energies @ params["score_weight"]
    if lengths is not None:
        beyond = torch.arange(kb.shape[1])[None, :] >= torch.tensor(lengths)[:, None]
        scores = scores.masked_fill(beyond[:, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    context = weights @ kb
    if q.dim() == 2:
        return q, k, params, context[:, 0], weights[:, 0]
    return q, k, params, context.transpose(0, 1), weights.transpose(0, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
@pytest.mark.parametrize("lengths", [None, [3, 5]])
def test_attention_forward_backward_match_torch(torch, dtype, score, shape, lengths):
    layer = make_layer(score, dtype, seed=3)
    query, keys = inputs(layer, SHAPES[shape], dtype, seed=4)
    context, weights, cache = layer.forward(query, keys, lengths)
    grad_context = np.random.default_rng(5).standard_normal(context.shape).astype(dtype)
    grad_query, grad_keys, grads = layer.backward(cache, grad_context)

    q, k, params, context_t, weights_t = torch_attention(torch, layer, query, keys, lengths)
    context_t.backward(torch.from_numpy(grad_context))
    assert context.dtype == dtype and grad_query.dtype == dtype and grad_keys.dtype == dtype
    np.testing.assert_allclose(context, context_t.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(weights, weights_t.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(grad_query, q.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(grad_keys, k.grad.numpy(), **TOL[dtype])
    for name, param in params.items():
        assert grads[name].dtype == dtype
        np.testing.assert_allclose(grads[name], param.grad.numpy(), **TOL[dtype])


def test_attention_weights_are_a_distribution_and_masked_keys_get_exactly_zero():
    layer = make_layer("dot", np.float32)
    query, keys = inputs(layer, (3, 2), np.float32)
    context, weights = layer(query, keys, lengths=np.array([5, 2]))
    assert weights.shape == (3, 2, 5) and context.shape == (3, 2, 4)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-6)
    assert np.all(weights[:, 1, 2:] == 0) and np.all(weights[:, 0] > 0)
    # One query step gives what the same step of a sequence of queries gives.
    step_context, step_weights = layer(query[1], keys, lengths=[5, 2])
    np.testing.assert_allclose(step_context, context[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(step_weights, weights[1], rtol=1e-5, atol=1e-6)


def test_attention_on_one_key_returns_that_key():
    layer = make_layer("additive", np.float64)
    query, keys = inputs(layer, (2,))
    context, weights = layer(query, keys[:1])
    np.testing.assert_array_equal(weights, np.ones((2, 1)))
    np.testing.assert_allclose(context, keys[0])


def test_attention_parameters_are_seeded_and_load_like_the_other_layers():
    layer = Attention(3, 4, score="additive", seed=7)
    assert layer.attention_size == 4 and layer.num_parameters() == 4 * 3 + 4 * 4 + 4
    assert {n: p.shape for n, p in layer.parameters().items()} == {
        "query_weight": (4, 3), "key_weight": (4, 4), "score_weight": (4,)}
    again = Attention(3, 4, score="additive", seed=7)
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, again.parameters()[name])
    assert Attention(4, 4).num_parameters() == 0 and Attention(4, 4).parameters() == {}
    _, _, cache = layer.forward(np.zeros((1, 3)), np.zeros((2, 1, 4)))
    layer.load_state_dict(again.state_dict())
    with pytest.raises(ValueError, match="reloaded"):
        layer.backward(cache, np.zeros((1, 4)))
    assert repr(layer) == "Attention(query_size=3, key_size=4, score='additive', attention_size=4, dtype=float32)"


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(score="cosine"), ValueError, r"score: expected one of \('dot', 'additive'\), got 'cosine'"),
    (dict(query_size=3), ValueError, r"query_size: the dot score needs query_size == key_size \(4\), got 3"),
    (dict(attention_size=8), ValueError, "attention_size: the dot score has none"),
    (dict(score="additive", attention_size=0), ValueError, "attention_size: expected a positive integer, got 0"),
    (dict(key_size=0), ValueError, "key_size: expected a positive integer, got 0"),
    (dict(dtype=np.int32), TypeError, "dtype: expected float32 or float64, got int32"),
    (dict(score="additive", seed=-1), ValueError, "seed: expected None or a non-negative integer"),
])
def test_attention_rejects_bad_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        Attention(**(dict(query_size=4, key_size=4) | kwargs))


def test_attention_rejects_bad_inputs_naming_the_argument():
    layer = make_layer("dot", np.float32)
    keys = np.zeros((5, 2, 4))
    with pytest.raises(ValueError, match=r"keys: expected shape \(Ts, N, 4\) with Ts, N >= 1, got \(5, 4\)"):
        layer(np.zeros((2, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"keys: .* got \(0, 2, 4\)"):
        layer(np.zeros((2, 4)), np.zeros((0, 2, 4)))
    with pytest.raises(ValueError, match=r"query: expected shape \(2, 4\) or \(Tq, 2, 4\) \(N = 2 from keys\), got \(3, 4\)"):
        layer(np.zeros((3, 4)), keys)
    with pytest.raises(ValueError, match=r"query: .* got \(3, 2, 5\)"):
        layer(np.zeros((3, 2, 5)), keys)
    with pytest.raises(TypeError, match="query: expected an array of real numbers"):
        layer(np.zeros((2, 4), complex), keys)
    with pytest.raises(ValueError, match=r"lengths: expected every length in 1..5 \(the keys' steps\), got 6"):
        layer(np.zeros((2, 4)), keys, lengths=[6, 1])
    with pytest.raises(ValueError, match=r"lengths: expected every length in 1..5 .* got 0"):
        layer(np.zeros((2, 4)), keys, lengths=[0, 1])
    with pytest.raises(ValueError, match=r"lengths: expected shape \(2,\), one per sequence, got \(3,\)"):
        layer(np.zeros((2, 4)), keys, lengths=[1, 1, 1])
    with pytest.raises(TypeError, match="lengths: expected integers, got dtype float64"):
        layer(np.zeros((2, 4)), keys, lengths=[1.0, 2.0])
    context, _, cache = layer.forward(np.zeros((2, 4)), keys)
    with pytest.raises(ValueError, match=r"grad_context: expected shape \(2, 4\) \(the shape of the context\), got \(1, 2, 4\)"):
        layer.backward(cache, np.zeros((1, 2, 4)))
    with pytest.raises(TypeError, match="cache: expected the AttentionCache of forward"):
        layer.backward(None, context)
    with pytest.raises(ValueError, match="another Attention's"):
        make_layer("dot", np.float32).backward(cache, context)
