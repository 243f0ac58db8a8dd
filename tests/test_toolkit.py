"""The NumPy training toolkit: Linear, Embedding, losses, optimizers, gradient utilities.

Gradients are checked against central finite differences in float64; layers, losses,
optimizers and clipping against PyTorch (skipped when torch is not installed).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnncore.grads import clip_grad_norm, global_norm, per_step_grad_norms
from rnncore.losses import log_softmax, mse, one_hot, softmax, softmax_cross_entropy
from rnncore.nn import Embedding, Linear, ParameterRow, parameter_count, parameter_table
from rnncore.optim import SGD, Adam, AdamW

DTYPES = [np.float32, np.float64]
# Tolerances for comparing with PyTorch in each dtype.
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def torch_dtype(torch, dtype):
    return {np.float32: torch.float32, np.float64: torch.float64}[dtype]


def numeric_grad(loss, array, eps=1e-6):
    """Central differences of the scalar loss() with respect to ``array`` (changed in place)."""
    grad = np.zeros_like(array, dtype=np.float64)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        plus = loss()
        array[index] = saved - eps
        minus = loss()
        array[index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


# --------------------------------------------------------------------------- Linear


def test_linear_init_is_torch_default_uniform_and_seeded():
    layer = Linear(16, 5, seed=3)
    bound = 1 / math.sqrt(16)
    assert layer.weight.shape == (5, 16) and layer.bias.shape == (5,)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    assert np.abs(layer.weight).max() <= bound and np.abs(layer.bias).max() <= bound
    assert np.abs(layer.weight).max() > 0.8 * bound  # spread over the interval, not N(0, small)
    again = Linear(16, 5, seed=3)
    np.testing.assert_array_equal(layer.weight, again.weight)
    np.testing.assert_array_equal(layer.bias, again.bias)
    assert not np.array_equal(layer.weight, Linear(16, 5, seed=4).weight)
    assert Linear(16, 5, dtype=np.float64).weight.dtype == np.float64
    assert layer.num_parameters() == 16 * 5 + 5
    assert Linear(16, 5, bias=False).num_parameters() == 80
    assert repr(layer) == "Linear(in_features=16, out_features=5, bias=True, dtype=float32)"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_backward_match_torch(torch, dtype, bias):
    layer = Linear(6, 4, bias=bias, dtype=dtype, seed=0)
    reference = torch.nn.Linear(6, 4, bias=bias, dtype=torch_dtype(torch, dtype))
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6)).astype(dtype)
    grad_y = rng.standard_normal((2, 3, 4)).astype(dtype)

    y, cache = layer.forward(x)
    grad_x, grads = layer.backward(cache, grad_y)

    x_t = torch.tensor(x, requires_grad=True)
    y_t = reference(x_t)
    y_t.backward(torch.from_numpy(grad_y))
    assert y.dtype == dtype and grad_x.dtype == dtype
    np.testing.assert_allclose(y, y_t.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(layer(x), y, **TOL[dtype])
    np.testing.assert_allclose(grad_x, x_t.grad.numpy(), **TOL[dtype])
    assert set(grads) == set(layer.parameters())
    for name, param in reference.named_parameters():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5)])
def test_linear_backward_matches_finite_differences_float64(shape):
    layer = Linear(5, 3, dtype=np.float64, seed=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    weights = rng.standard_normal(shape[:-1] + (3,))  # loss = sum(weights * y)

    def loss():
        return float(np.sum(weights * layer(x)))

    _, cache = layer.forward(x)
    grad_x, grads = layer.backward(cache, weights)
    np.testing.assert_allclose(grad_x, numeric_grad(loss, x), rtol=1e-7, atol=1e-8)
    for name, param in layer.parameters().items():
        np.testing.assert_allclose(grads[name], numeric_grad(loss, param), rtol=1e-7, atol=1e-8)


def test_linear_state_dict_is_a_copy_and_load_copies_into_the_live_arrays(torch):
    layer = Linear(3, 2, seed=0)
    state = layer.state_dict()
    state["weight"][...] = 7.0
    assert not np.any(layer.weight == 7.0)
    live = layer.parameters()["weight"]
    layer.load_state_dict({"weight": np.ones((2, 3)), "bias": [1, 2]})  # cast to float32
    assert layer.parameters()["weight"] is live and layer.weight is live
    np.testing.assert_array_equal(live, np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(layer.bias, [1.0, 2.0])
    assert layer.weight.dtype == np.float32
    reference = torch.nn.Linear(3, 2)
    layer.load_state_dict(reference.state_dict())
    np.testing.assert_array_equal(layer.weight, reference.weight.detach().numpy())
    layer.load_state_dict({"weight": reference.weight, "bias": reference.bias})  # requires grad


@pytest.mark.parametrize(
    "state, message",
    [
        ({"weight": np.zeros((2, 3))}, "state_dict: missing key 'bias'"),
        ({"weight": np.zeros((2, 3)), "bias": np.zeros(2), "extra": 1}, "state_dict: unexpected key 'extra'"),
        ({"weight": np.zeros((2, 3)), "bias": np.zeros(3)}, r"state_dict\['bias'\]: expected shape \(2,\), got \(3,\)"),
        ({"weight": np.zeros((3, 2)), "bias": np.zeros(2)}, r"state_dict\['weight'\]: expected shape \(2, 3\), got \(3, 2\)"),
    ],
)
def test_linear_load_state_dict_is_strict_and_a_failed_load_changes_nothing(state, message):
    layer = Linear(3, 2, seed=0)
    before = layer.state_dict()
    with pytest.raises(ValueError, match=message):
        layer.load_state_dict(state)
    for name, value in before.items():
        np.testing.assert_array_equal(layer.parameters()[name], value)


def test_linear_load_state_dict_refuses_non_real_values():
    layer = Linear(3, 2, seed=0)
    with pytest.raises(TypeError, match="complex"):
        layer.load_state_dict({"weight": np.zeros((2, 3), complex), "bias": np.zeros(2)})
    with pytest.raises(TypeError, match="mapping"):
        layer.load_state_dict([("weight", np.zeros((2, 3)))])


def test_linear_parameters_are_live():
    layer = Linear(2, 1, seed=0)
    layer.parameters()["weight"][...] = [[1.0, 2.0]]
    layer.parameters()["bias"][...] = 0.5
    np.testing.assert_allclose(layer(np.array([1.0, 1.0])), [3.5])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(in_features=0), ValueError, "in_features: expected a positive integer, got 0"),
        (dict(in_features=-2), ValueError, "in_features: expected a positive integer, got -2"),
        (dict(out_features=3.5), TypeError, r"out_features: expected a positive integer, got float 3\.5"),
        (dict(out_features=True), TypeError, "out_features: expected a positive integer, got bool True"),
        (dict(in_features="3"), TypeError, "in_features"),
        (dict(in_features=None), TypeError, "in_features"),
        (dict(dtype=np.int32), TypeError, "dtype: expected float32 or float64, got int32"),
        (dict(dtype=np.complex64), TypeError, "dtype: expected float32 or float64, got complex64"),
        (dict(dtype=np.float16), TypeError, "dtype: expected float32 or float64, got float16"),
        (dict(dtype="nonsense"), TypeError, "dtype"),
        (dict(bias=1), TypeError, "bias: expected True or False, got int 1"),
        (dict(seed=-1), ValueError, "seed: expected None or a non-negative integer, got -1"),
        (dict(seed=1.5), TypeError, "seed"),
    ],
)
def test_linear_rejects_bad_constructor_arguments(kwargs, error, message):
    args = dict(in_features=3, out_features=2) | kwargs
    with pytest.raises(error, match=message):
        Linear(**args)


def test_linear_rejects_bad_inputs_and_caches():
    layer = Linear(3, 2, seed=0)
    with pytest.raises(TypeError, match="x: expected an array of real numbers .* got dtype complex128"):
        layer(np.zeros((4, 3), complex))
    with pytest.raises(TypeError, match="x: expected .* got dtype <U1"):
        layer(np.array([["a", "b", "c"]]))
    with pytest.raises(TypeError, match="x: expected .* got dtype object"):
        layer(np.array([[1, None, 2]], dtype=object))
    with pytest.raises(TypeError, match="x: expected .* got dtype bool"):
        layer(np.ones((1, 3), bool))
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 3\), got \(4, 2\)"):
        layer(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 3\), got \(\)"):
        layer.forward(1.0)
    _, cache = layer.forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(4, 2\), got \(4, 3\)"):
        layer.backward(cache, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(4, 2\), got \(1, 2\)"):
        layer.backward(cache, np.zeros((1, 2)))  # no broadcasting
    with pytest.raises(ValueError, match="another Linear's"):
        Linear(3, 2, seed=0).backward(cache, np.zeros((4, 2)))
    with pytest.raises(TypeError, match="cache: expected the LinearCache of forward, got an array"):
        layer.backward(np.zeros((4, 3)), np.zeros((4, 2)))
    layer.load_state_dict(layer.state_dict())
    with pytest.raises(ValueError, match="cache: the parameters were reloaded"):
        layer.backward(cache, np.zeros((4, 2)))


# --------------------------------------------------------------------------- Embedding


def test_embedding_init_is_standard_normal_and_seeded():
    table = Embedding(200, 50, seed=0)
    assert table.weight.shape == (200, 50) and table.weight.dtype == np.float32
    assert abs(table.weight.mean()) < 0.02 and abs(table.weight.std() - 1) < 0.02
    np.testing.assert_array_equal(table.weight, Embedding(200, 50, seed=0).weight)
    assert table.num_parameters() == 10_000
    padded = Embedding(10, 4, seed=0, padding_idx=-1)
    assert padded.padding_idx == 9
    np.testing.assert_array_equal(padded.weight[9], 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_forward_backward_match_torch(torch, dtype, padding_idx):
    table = Embedding(7, 3, dtype=dtype, seed=1, padding_idx=padding_idx)
    reference = torch.nn.Embedding(7, 3, padding_idx=padding_idx, dtype=torch_dtype(torch, dtype))
    reference.load_state_dict({"weight": torch.from_numpy(table.weight.copy())})
    indices = np.array([[0, 2, 2, 6], [2, 5, 0, 0]])  # repeats must accumulate
    grad_y = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(dtype)

    y, cache = table.forward(indices)
    grads = table.backward(cache, grad_y)
    y_t = reference(torch.from_numpy(indices))
    y_t.backward(torch.from_numpy(grad_y))
    assert y.shape == (2, 4, 3) and y.dtype == dtype
    np.testing.assert_array_equal(y, y_t.detach().numpy())
    np.testing.assert_allclose(grads["weight"], reference.weight.grad.numpy(), **TOL[dtype])
    assert list(grads) == ["weight"]


def test_embedding_backward_matches_finite_differences_float64():
    table = Embedding(5, 3, dtype=np.float64, seed=0)
    indices = np.array([[4, 1], [1, 1], [0, 4]], dtype=np.int32)
    weights = np.random.default_rng(1).standard_normal((3, 2, 3))
    _, cache = table.forward(indices)
    grads = table.backward(cache, weights)
    numeric = numeric_grad(lambda: float(np.sum(weights * table(indices))), table.weight)
    np.testing.assert_allclose(grads["weight"], numeric, rtol=1e-7, atol=1e-8)
    np.testing.assert_array_equal(grads["weight"][[2, 3]], 0.0)  # rows never looked up


def test_embedding_takes_any_integer_shape():
    table = Embedding(4, 2, seed=0)
    np.testing.assert_array_equal(table(np.int64(3)), table.weight[3])
    assert table(np.uint8([[1, 2, 3]])).shape == (1, 3, 2)
    assert table(np.zeros((0, 5), dtype=int)).shape == (0, 5, 2)
    _, cache = table.forward([1, 1])
    np.testing.assert_array_equal(table.backward(cache, np.ones((2, 2)))["weight"][1], [2, 2])


def test_embedding_rejects_bad_indices_and_arguments():
    table = Embedding(4, 2, seed=0)
    with pytest.raises(TypeError, match="indices: expected an integer dtype, got dtype float64"):
        table(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="indices: expected .* got dtype bool"):
        table(np.array([True, False]))
    with pytest.raises(ValueError, match=r"indices: expected values in \[0, 4\) \(num_embeddings\), got 4"):
        table([0, 4])
    with pytest.raises(ValueError, match=r"indices: expected values in \[0, 4\) \(num_embeddings\), got -1"):
        table([-1, 0])
    _, cache = table.forward([0, 1])
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(2, 2\), got \(2, 3\)"):
        table.backward(cache, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="another Embedding's"):
        Embedding(4, 2).backward(cache, np.zeros((2, 2)))
    with pytest.raises(TypeError, match="cache: expected the EmbeddingCache of forward, got NoneType"):
        table.backward(None, np.zeros((2, 2)))
    table.load_state_dict({"weight": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="cache: the parameters were reloaded"):
        table.backward(cache, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="num_embeddings: expected a positive integer, got 0"):
        Embedding(0, 2)
    with pytest.raises(TypeError, match="embedding_dim: expected a positive integer, got float 2.5"):
        Embedding(4, 2.5)
    with pytest.raises(ValueError, match=r"padding_idx: expected None or an int in \[-4, 4\) \(num_embeddings\), got 4"):
        Embedding(4, 2, padding_idx=4)
    with pytest.raises(TypeError, match="padding_idx: expected None or an int, got float 1.0"):
        Embedding(4, 2, padding_idx=1.0)
    with pytest.raises(TypeError, match="dtype: expected float32 or float64, got int64"):
        Embedding(4, 2, dtype=np.int64)


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [None, 1, -100])
def test_cross_entropy_matches_torch(torch, dtype, reduction, ignore_index):
    rng = np.random.default_rng(0)
    logits = (3 * rng.standard_normal((4, 3, 5))).astype(dtype)  # (T, N, C): classes last
    targets = rng.integers(0, 5, size=(4, 3))
    if ignore_index is not None:
        targets[0, :] = ignore_index
        targets[2, 1] = ignore_index
    loss, grad = softmax_cross_entropy(logits, targets, reduction, ignore_index=ignore_index)

    logits_t = torch.tensor(logits.reshape(-1, 5), requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(
        logits_t,
        torch.from_numpy(targets.reshape(-1)),
        reduction=reduction,
        ignore_index=-100 if ignore_index is None else ignore_index,
    )
    loss_t.sum().backward()
    if reduction == "none":
        assert loss.shape == (4, 3) and loss.dtype == dtype
        np.testing.assert_allclose(loss.reshape(-1), loss_t.detach().numpy(), **TOL[dtype])
    else:
        assert np.ndim(loss) == 0 and loss.dtype == dtype
        np.testing.assert_allclose(loss, loss_t.item(), **TOL[dtype])
    assert grad.dtype == dtype and grad.shape == logits.shape
    np.testing.assert_allclose(grad.reshape(-1, 5), logits_t.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_index", [None, 2])
def test_cross_entropy_gradient_matches_finite_differences_float64(reduction, ignore_index):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 2, 4))
    targets = np.array([[0, 2], [3, 2], [1, 1]])
    loss, grad = softmax_cross_entropy(logits, targets, reduction, ignore_index)
    numeric = numeric_grad(
        lambda: float(softmax_cross_entropy(logits, targets, reduction, ignore_index)[0]), logits
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    if ignore_index is not None:
        np.testing.assert_array_equal(grad[targets == ignore_index], 0.0)


def test_cross_entropy_none_reduction_grad_is_per_position_gradient():
    logits = np.random.default_rng(2).standard_normal((3, 4))
    targets = np.array([0, 3, 1])
    losses, grad = softmax_cross_entropy(logits, targets, reduction="none")
    for row in range(3):
        single, single_grad = softmax_cross_entropy(logits[row], targets[row], reduction="sum")
        np.testing.assert_allclose(losses[row], single)
        np.testing.assert_allclose(grad[row], single_grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_is_stable_for_huge_logits(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4]], dtype=dtype)
    loss, grad = softmax_cross_entropy(logits, [1, 2], reduction="none")
    np.testing.assert_allclose(loss, [1e4, math.log(2)], rtol=1e-6)
    np.testing.assert_allclose(grad, [[1, -1, 0], [0, 0.5, -0.5]], atol=1e-6)


def test_cross_entropy_handles_masked_and_garbage_logits():
    logits = np.array([[0.0, -np.inf, 0.0], [np.nan, np.nan, np.nan]])
    loss, grad = softmax_cross_entropy(logits, [0, -1], ignore_index=-1)
    assert loss == pytest.approx(math.log(2))
    np.testing.assert_allclose(grad, [[-0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])
    masked_target, _ = softmax_cross_entropy(logits[:1], [1])
    assert masked_target == np.inf


def test_cross_entropy_all_ignored_is_nan_with_zero_gradient_like_torch():
    loss, grad = softmax_cross_entropy(np.ones((2, 3)), [-100, -100], ignore_index=-100)
    assert np.isnan(loss)
    np.testing.assert_array_equal(grad, 0.0)
    total, _ = softmax_cross_entropy(np.ones((2, 3)), [-100, -100], "sum", ignore_index=-100)
    assert total == 0.0


def test_cross_entropy_rejects_bad_arguments():
    logits = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"targets: expected shape logits.shape\[:-1\] = \(4,\) .*, got \(4, 1\)"):
        softmax_cross_entropy(logits, np.zeros((4, 1), int))
    with pytest.raises(ValueError, match=r"targets: expected shape .*, got \(\)"):
        softmax_cross_entropy(logits, 1)
    with pytest.raises(TypeError, match="targets: expected an integer dtype, got dtype float64"):
        softmax_cross_entropy(logits, np.zeros(4))
    with pytest.raises(ValueError, match=r"targets: expected values in \[0, 3\) \(C classes\), got 3"):
        softmax_cross_entropy(logits, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"targets: expected values in \[0, 3\) \(C classes\), got -100"):
        softmax_cross_entropy(logits, [0, 1, 2, -100])  # no ignore_index given
    with pytest.raises(ValueError, match=r"or ignore_index 5, got 3"):
        softmax_cross_entropy(logits, [0, 5, 2, 3], ignore_index=5)
    with pytest.raises(ValueError, match="reduction: expected one of .*, got 'average'"):
        softmax_cross_entropy(logits, [0, 1, 2, 0], reduction="average")
    with pytest.raises(TypeError, match="reduction: expected one of .*, got NoneType None"):
        softmax_cross_entropy(logits, [0, 1, 2, 0], reduction=None)
    with pytest.raises(TypeError, match="ignore_index: expected None or an int, got bool True"):
        softmax_cross_entropy(logits, [0, 1, 2, 0], ignore_index=True)
    with pytest.raises(TypeError, match="logits: expected .* got dtype complex128"):
        softmax_cross_entropy(logits.astype(complex), [0, 1, 2, 0])
    with pytest.raises(ValueError, match=r"logits: expected shape \(\.\.\., C\) with C >= 1 classes, got \(\)"):
        softmax_cross_entropy(1.0, 0)
    with pytest.raises(ValueError, match=r"logits: expected .*, got \(4, 0\)"):
        softmax_cross_entropy(np.zeros((4, 0)), [0, 0, 0, 0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_log_softmax_match_torch(torch, dtype):
    logits = np.random.default_rng(0).standard_normal((3, 2, 6)).astype(dtype)
    expected = torch.log_softmax(torch.from_numpy(logits), dim=-1).numpy()
    np.testing.assert_allclose(log_softmax(logits), expected, **TOL[dtype])
    np.testing.assert_allclose(softmax(logits), np.exp(expected), **TOL[dtype])
    assert softmax(logits).dtype == dtype
    np.testing.assert_allclose(softmax([1000.0, 1000.0]), [0.5, 0.5])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_matches_torch(torch, dtype, reduction):
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((3, 4, 2)).astype(dtype)
    target = rng.standard_normal((3, 4, 2))  # float64 target is cast to pred's dtype
    loss, grad = mse(pred, target, reduction)
    pred_t = torch.tensor(pred, requires_grad=True)
    loss_t = torch.nn.functional.mse_loss(pred_t, torch.from_numpy(target.astype(dtype)), reduction=reduction)
    loss_t.sum().backward()
    np.testing.assert_allclose(loss, loss_t.detach().numpy(), **TOL[dtype])
    assert grad.dtype == dtype and np.asarray(loss).dtype == dtype
    np.testing.assert_allclose(grad, pred_t.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_gradient_matches_finite_differences_float64(reduction):
    rng = np.random.default_rng(4)
    pred, target = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    _, grad = mse(pred, target, reduction)
    numeric = numeric_grad(lambda: float(mse(pred, target, reduction)[0]), pred)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)


def test_mse_refuses_mismatched_shapes_and_bad_dtypes():
    with pytest.raises(ValueError, match=r"target: expected pred's shape \(3,\) .*, got \(3, 1\)"):
        mse(np.zeros(3), np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"target: expected pred's shape \(3,\) .*, got \(\)"):
        mse(np.zeros(3), 0.0)
    with pytest.raises(TypeError, match="target: expected .* got dtype complex128"):
        mse(np.zeros(3), np.zeros(3, complex))
    with pytest.raises(ValueError, match="reduction"):
        mse(np.zeros(3), np.zeros(3), reduction="max")
    with pytest.raises(TypeError, match="pred: expected .* got dtype <U1"):
        mse(np.array(["a"]), np.zeros(1))
    loss, grad = mse(np.zeros((0, 2), np.float32), np.zeros((0, 2)))
    assert np.isnan(loss) and grad.shape == (0, 2)
    assert mse([1, 2], [1, 4])[0] == pytest.approx(2.0)  # integers become float64


def test_one_hot(torch):
    indices = np.array([[0, 3], [2, 2]])
    encoded = one_hot(indices, 4)
    assert encoded.shape == (2, 2, 4) and encoded.dtype == np.float32
    expected = torch.nn.functional.one_hot(torch.from_numpy(indices), 4).numpy()
    np.testing.assert_array_equal(encoded, expected)
    assert one_hot(1, 3, dtype=np.int8).tolist() == [0, 1, 0]
    assert one_hot(np.zeros(0, int), 3).shape == (0, 3)
    with pytest.raises(ValueError, match=r"indices: expected values in \[0, 4\) \(num_classes\), got 4"):
        one_hot([4], 4)
    with pytest.raises(TypeError, match="indices: expected an integer dtype, got dtype float64"):
        one_hot([1.0], 4)
    with pytest.raises(ValueError, match="num_classes: expected a positive integer, got 0"):
        one_hot([0], 0)
    with pytest.raises(TypeError, match="num_classes: expected a positive integer, got float 4.0"):
        one_hot([0], 4.0)
    with pytest.raises(TypeError, match="dtype: expected a bool, int or float dtype, got complex64"):
        one_hot([0], 4, dtype=np.complex64)


# --------------------------------------------------------------------------- optimizers


def _training_run(dtype, steps=5):
    rng = np.random.default_rng(0)
    params = {"weight": rng.standard_normal((3, 4)).astype(dtype), "bias": rng.standard_normal(3).astype(dtype)}
    grads = [
        {name: rng.standard_normal(value.shape).astype(dtype) for name, value in params.items()}
        for _ in range(steps)
    ]
    return params, grads


def _compare_with_torch(torch, dtype, ours_factory, torch_factory, lr_schedule=None):
    params, grad_steps = _training_run(dtype)
    torch_params = {name: torch.nn.Parameter(torch.tensor(value)) for name, value in params.items()}
    ours = ours_factory(params)
    theirs = torch_factory(list(torch_params.values()))
    for step, grads in enumerate(grad_steps):
        if lr_schedule is not None:
            ours.lr = lr_schedule[step]
            theirs.param_groups[0]["lr"] = lr_schedule[step]
        ours.step(grads)
        for name, param in torch_params.items():
            param.grad = torch.from_numpy(grads[name])
        theirs.step()
        for name, param in torch_params.items():
            assert params[name].dtype == dtype
            np.testing.assert_allclose(params[name], param.detach().numpy(), **TOL[dtype])
    assert ours.steps == len(grad_steps)


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.8, weight_decay=0.01),
    dict(lr=0.1, momentum=0.5, dampening=0.3, weight_decay=0.1),
    dict(lr=0.1, weight_decay=0.05, momentum=0.9, nesterov=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_matches_torch(torch, dtype, config):
    _compare_with_torch(
        torch, dtype, lambda p: SGD(p, **config), lambda p: torch.optim.SGD(p, **config)
    )


ADAM_CONFIGS = [
    dict(),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_adam_matches_torch(torch, dtype, config):
    _compare_with_torch(
        torch, dtype, lambda p: Adam(p, **config), lambda p: torch.optim.Adam(p, **config)
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", [dict(), dict(lr=0.01, weight_decay=0.1)], ids=["defaults", "wd"])
def test_adamw_matches_torch(torch, dtype, config):
    _compare_with_torch(
        torch, dtype, lambda p: AdamW(p, **config), lambda p: torch.optim.AdamW(p, **config)
    )


def test_learning_rate_schedule_matches_torch(torch):
    schedule = [0.1, 0.05, 0.02, 0.01, 0.0]
    _compare_with_torch(
        torch,
        np.float64,
        lambda p: Adam(p, lr=schedule[0]),
        lambda p: torch.optim.Adam(p, lr=schedule[0]),
        lr_schedule=schedule,
    )


def test_optimizer_updates_the_layers_live_arrays_through_nested_names():
    encoder, head = Linear(3, 4, seed=0), Linear(4, 2, seed=1)
    opt = SGD({"encoder": encoder.parameters(), "head": head.parameters()}, lr=1.0)
    assert list(opt.params) == ["encoder.weight", "encoder.bias", "head.weight", "head.bias"]
    before = head.weight.copy()
    grads = {
        "encoder": {name: np.zeros_like(p) for name, p in encoder.parameters().items()},
        "head.weight": np.ones((2, 4)),  # flat dotted names work as well
        "head.bias": np.zeros(2),
    }
    opt.step(grads)
    np.testing.assert_allclose(head.weight, before - 1.0)
    assert opt.params["head.weight"] is head.weight


def test_optimizer_takes_a_list_of_dicts_but_refuses_duplicate_names():
    a, b = {"x": np.zeros(2)}, {"y": np.zeros(3)}
    opt = SGD([a, b], lr=1.0)
    opt.step([{"x": np.ones(2)}, {"y": np.ones(3)}])
    np.testing.assert_array_equal(b["y"], -1.0)
    with pytest.raises(ValueError, match="params: expected unique names, got 'weight' twice"):
        SGD([Linear(2, 2).parameters(), Linear(2, 2).parameters()], lr=0.1)


def test_a_small_model_learns_with_adam():
    rng = np.random.default_rng(0)
    embedding, head = Embedding(6, 8, dtype=np.float64, seed=0), Linear(8, 6, dtype=np.float64, seed=1)
    opt = Adam({"embedding": embedding.parameters(), "head": head.parameters()}, lr=0.05)
    tokens = rng.integers(0, 6, size=(10, 4))
    targets = (tokens + 1) % 6  # learn "next symbol"
    losses = []
    for _ in range(60):
        features, embedding_cache = embedding.forward(tokens)
        logits, head_cache = head.forward(features)
        loss, grad_logits = softmax_cross_entropy(logits, targets)
        grad_features, head_grads = head.backward(head_cache, grad_logits)
        embedding_grads = embedding.backward(embedding_cache, grad_features)
        clip_grad_norm([head_grads, embedding_grads], 5.0)
        opt.step({"embedding": embedding_grads, "head": head_grads})
        losses.append(float(loss))
    assert losses[-1] < 0.1 * losses[0]


@pytest.mark.parametrize(
    "grads, error, message",
    [
        ({"w": np.zeros(3)}, ValueError, r"grads: missing 'b' \(shape \(2,\)\)"),
        ({"w": np.zeros(3), "b": np.zeros(2), "c": np.zeros(1)}, ValueError, "grads: unexpected 'c'"),
        ({"w": np.zeros(3), "b": np.zeros(3)}, ValueError, r"grads\['b'\]: expected shape \(2,\), got \(3,\)"),
        ({"w": np.zeros((3, 1)), "b": np.zeros(2)}, ValueError, r"grads\['w'\]: expected shape \(3,\), got \(3, 1\)"),
        ({"w": np.zeros(3), "b": np.zeros(2, complex)}, TypeError, r"grads\['b'\]: expected .* got dtype complex128"),
        ([np.zeros(3)], TypeError, "grads: expected a mapping .* got a list of length 1"),
        (np.zeros(3), TypeError, r"grads: expected a mapping .* got an array of shape \(3,\)"),
    ],
)
def test_optimizer_step_refuses_bad_gradients_and_changes_nothing(grads, error, message):
    params = {"w": np.ones(3), "b": np.ones(2)}
    for opt in (SGD(params, lr=0.1, momentum=0.9), Adam(params)):
        with pytest.raises(error, match=message):
            opt.step(grads)
        assert opt.steps == 0 and opt.state_dict()["state"] == {}
        np.testing.assert_array_equal(params["w"], 1.0)
        np.testing.assert_array_equal(params["b"], 1.0)


def test_optimizer_refuses_bad_parameters():
    with pytest.raises(TypeError, match=r"params\['w'\]: expected a numpy.ndarray .*, got list \[1.0, 2.0\]"):
        SGD({"w": [1.0, 2.0]}, lr=0.1)
    with pytest.raises(TypeError, match=r"params\['w'\]: expected dtype float32 or float64, got dtype int64"):
        SGD({"w": np.zeros(2, np.int64)}, lr=0.1)
    read_only = np.zeros(2)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        SGD({"w": read_only}, lr=0.1)
    shared = np.zeros(4)
    with pytest.raises(ValueError, match="params: expected each array once, got 'a' and 'b' sharing memory"):
        SGD({"a": shared[:3], "b": shared[2:]}, lr=0.1)
    SGD({"a": shared[:2], "b": shared[2:]}, lr=0.1)  # disjoint views of one buffer are fine
    with pytest.raises(ValueError, match="params: expected at least one array, got none"):
        Adam({})
    with pytest.raises(TypeError, match="params: expected str keys, got the key int 1"):
        Adam({1: np.zeros(2)})
    with pytest.raises(TypeError, match="params: expected a mapping"):
        Adam(np.zeros(2))


@pytest.mark.parametrize(
    "factory, error, message",
    [
        (lambda p: SGD(p, lr=-0.1), ValueError, "lr: expected a finite number >= 0, got -0.1"),
        (lambda p: SGD(p, lr=float("nan")), ValueError, "lr: expected a finite number >= 0, got nan"),
        (lambda p: SGD(p, lr="0.1"), TypeError, "lr: expected a finite number >= 0, got str '0.1'"),
        (lambda p: SGD(p, lr=True), TypeError, "lr: expected a finite number >= 0, got bool True"),
        (lambda p: SGD(p, lr=0.1, momentum=-0.5), ValueError, "momentum: expected a finite number >= 0, got -0.5"),
        (lambda p: SGD(p, lr=0.1, weight_decay=-1), ValueError, "weight_decay: expected .* got -1"),
        (lambda p: SGD(p, lr=0.1, nesterov=True), ValueError, "nesterov: expected momentum > 0 and dampening == 0"),
        (lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, dampening=0.1), ValueError, "got momentum=0.9 and dampening=0.1"),
        (lambda p: SGD(p, lr=0.1, nesterov=1), TypeError, "nesterov: expected True or False, got int 1"),
        (lambda p: Adam(p, betas=(1.0, 0.999)), ValueError, r"betas\[0\]: expected a number in \[0, 1\), got 1"),
        (lambda p: Adam(p, betas=(0.9, -0.1)), ValueError, r"betas\[1\]: expected .* got -0.1"),
        (lambda p: Adam(p, betas=0.9), TypeError, r"betas: expected a pair \(beta1, beta2\), got float 0.9"),
        (lambda p: Adam(p, eps=-1e-8), ValueError, "eps: expected .* got -1e-08"),
        (lambda p: AdamW(p, weight_decay=float("inf")), ValueError, "weight_decay: expected .* got inf"),
    ],
)
def test_optimizers_refuse_bad_hyperparameters(factory, error, message):
    with pytest.raises(error, match=message):
        factory({"w": np.zeros(2)})


def test_hyperparameters_can_be_changed_between_steps_and_are_checked():
    opt = SGD({"w": np.zeros(2)}, lr=0.1, momentum=0.9)
    opt.lr = 0.01
    opt.set_hyperparams(momentum=0.5)
    assert opt.hyperparams == dict(lr=0.01, momentum=0.5, weight_decay=0.0, nesterov=False, dampening=0.0)
    with pytest.raises(ValueError, match="lr: expected .* got -1"):
        opt.lr = -1
    with pytest.raises(ValueError, match="nesterov: expected momentum > 0"):
        opt.set_hyperparams(momentum=0.0, nesterov=True)
    with pytest.raises(TypeError, match="set_hyperparams: expected names among .*, got 'betas'"):
        opt.set_hyperparams(betas=(0.9, 0.99))
    assert opt.lr == 0.01 and opt.hyperparams["momentum"] == 0.5


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, momentum=0.9), lambda p: Adam(p, lr=0.01)], ids=["sgd", "adam"])
def test_optimizer_state_dict_resumes_training_exactly(make):
    start, grad_steps = _training_run(np.float64, steps=5)

    def copied(params):
        return {name: value.copy() for name, value in params.items()}

    uninterrupted = copied(start)
    opt = make(uninterrupted)
    for grads in grad_steps:
        opt.step(grads)

    interrupted = copied(start)
    first = make(interrupted)
    for grads in grad_steps[:3]:
        first.step(grads)
    saved_state, saved_params = first.state_dict(), copied(interrupted)
    first.step(grad_steps[3])  # the saved copies must not follow later steps

    resumed = copied(saved_params)
    second = make(resumed)
    second.load_state_dict(saved_state)
    assert second.steps == 3
    saved_buffers = [b.copy() for entry in saved_state["state"].values() for b in entry.values()]
    for grads in grad_steps[3:]:
        second.step(grads)
    for name in uninterrupted:
        np.testing.assert_array_equal(resumed[name], uninterrupted[name])
    # Loading copies: stepping on must not write into the dict that was loaded.
    after = [b for entry in saved_state["state"].values() for b in entry.values()]
    for before, now in zip(saved_buffers, after):
        np.testing.assert_array_equal(before, now)


def test_optimizer_load_state_dict_is_strict_and_atomic():
    params = {"w": np.ones(3)}
    opt = Adam(params, lr=0.1)
    opt.step({"w": np.ones(3)})
    good = opt.state_dict()
    assert set(good["state"]["w"]) == {"exp_avg", "exp_avg_sq"}
    other = Adam({"w": np.ones(3)}, lr=0.5)
    bad_states = [
        ({**good, "optimizer": "SGD"}, ValueError, r"state\['optimizer'\]: expected 'Adam', got 'SGD'"),
        ({**good, "state": {"v": good["state"]["w"]}}, ValueError, "missing 'w'"),
        ({**good, "state": {"w": {"exp_avg": np.zeros(3)}}}, ValueError, r"expected keys \['exp_avg', 'exp_avg_sq'\]"),
        ({**good, "state": {"w": {"exp_avg": np.zeros(2), "exp_avg_sq": np.zeros(3)}}}, ValueError, r"expected shape \(3,\), got \(2,\)"),
        ({**good, "hyperparams": {**good["hyperparams"], "lr": -1.0}}, ValueError, "lr: expected .* got -1"),
        ({**good, "steps": -1}, ValueError, r"state\['steps'\]: expected an int >= 0, got -1"),
        ({**good, "steps": 0}, ValueError, r"state\['steps'\]: expected >= 1 with buffers present"),
        ({**good, "steps": 1.0}, TypeError, r"state\['steps'\]: expected an int >= 0, got float 1.0"),
        ({k: v for k, v in good.items() if k != "steps"}, ValueError, "state: expected keys"),
    ]
    for state, error, message in bad_states:
        with pytest.raises(error, match=message):
            other.load_state_dict(state)
        assert other.steps == 0 and other.lr == 0.5 and other.state_dict()["state"] == {}
    other.load_state_dict(good)
    assert other.steps == 1 and other.lr == 0.1
    other.zero_state()
    assert other.steps == 0 and other.state_dict()["state"] == {}


# --------------------------------------------------------------------------- gradient utilities


@pytest.mark.parametrize("norm_type", [1, 2.0, 3.5, math.inf, "inf"])
def test_global_norm_matches_torch(torch, norm_type):
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((3, 4)), "b": {"c": rng.standard_normal(5)}, "d": [rng.standard_normal(2)]}
    flat = np.concatenate([grads["a"].ravel(), grads["b"]["c"], grads["d"][0]])
    p = math.inf if norm_type == "inf" else norm_type
    expected = torch.linalg.vector_norm(torch.from_numpy(flat), ord=p).item()
    assert global_norm(grads, norm_type) == pytest.approx(expected, rel=1e-12)
    assert isinstance(global_norm(grads), float)


def test_global_norm_does_not_overflow_and_reports_non_finite():
    assert global_norm([np.array([3e200]), np.array([4e200])]) == pytest.approx(5e200)
    assert global_norm(np.array([3e30, 4e30], np.float32), 3) == pytest.approx(
        (27 + 64) ** (1 / 3) * 1e30
    )
    assert global_norm({}) == 0.0
    assert global_norm({"a": np.array([1.0, np.inf])}) == math.inf
    assert math.isnan(global_norm({"a": np.array([np.inf, np.nan])}))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(torch, dtype, norm_type, max_norm):
    rng = np.random.default_rng(1)
    grads = {"w": rng.standard_normal((4, 3)).astype(dtype), "b": rng.standard_normal(3).astype(dtype)}
    tensors = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch_dtype(torch, dtype))) for g in grads.values()]
    for tensor, g in zip(tensors, grads.values()):
        tensor.grad = torch.tensor(g)
    expected_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type).item()
    total = clip_grad_norm(grads, max_norm, norm_type)
    assert total == pytest.approx(expected_norm, rel=1e-6 if dtype == np.float32 else 1e-12)
    for tensor, g in zip(tensors, grads.values()):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, tensor.grad.numpy(), **TOL[dtype])
    if max_norm < total:
        assert global_norm(grads, norm_type) == pytest.approx(max_norm, rel=1e-5)


def test_clip_grad_norm_leaves_small_gradients_untouched_and_handles_duplicate_names():
    first, second = {"weight": np.array([0.3, 0.0])}, {"weight": np.array([0.0, 0.4])}
    assert clip_grad_norm([first, second], 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(first["weight"], [0.3, 0.0])
    assert clip_grad_norm([first, second], 0.25) == pytest.approx(0.5)
    np.testing.assert_allclose(np.concatenate([first["weight"], second["weight"]]), [0.15, 0, 0, 0.2], rtol=1e-5)
    single = np.array([3.0, 4.0])
    assert clip_grad_norm(single, 0.0) == 5.0
    np.testing.assert_array_equal(single, 0.0)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_clip_grad_norm_with_non_finite_norm_leaves_gradients_unchanged(bad):
    grads = {"a": np.array([1.0, bad]), "b": np.array([2.0])}
    total = clip_grad_norm(grads, 1.0)
    assert not math.isfinite(total)
    np.testing.assert_array_equal(grads["b"], [2.0])
    with pytest.raises(ValueError, match="gradients left unchanged"):
        clip_grad_norm(grads, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(grads["b"], [2.0])


def test_clip_grad_norm_refuses_bad_arguments():
    grads = {"a": np.ones(2)}
    with pytest.raises(TypeError, match=r"grads\['a'\]: expected a numpy.ndarray \(clipped in place\), got float 1.0"):
        clip_grad_norm({"a": 1.0}, 1.0)
    with pytest.raises(TypeError, match=r"grads\['a'\]\[0\]: expected a numpy.ndarray .* got float 1.0"):
        clip_grad_norm({"a": [1.0, 2.0]}, 1.0)  # lists are containers of arrays
    with pytest.raises(TypeError, match=r"grads\['a'\]: expected dtype float32 or float64, got dtype int64"):
        clip_grad_norm({"a": np.ones(2, np.int64)}, 1.0)
    read_only = np.ones(2)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        clip_grad_norm([read_only], 1.0)
    with pytest.raises(ValueError, match=r"grads\[1\]: expected each array once, got one twice"):
        clip_grad_norm([grads["a"], grads["a"]], 1.0)
    with pytest.raises(ValueError, match=r"max_norm: expected a number >= 0 \(inf: never clip\), got -1"):
        clip_grad_norm(grads, -1.0)
    with pytest.raises(ValueError, match="max_norm: expected .* got nan"):
        clip_grad_norm(grads, math.nan)
    with pytest.raises(TypeError, match="max_norm: expected .* got NoneType None"):
        clip_grad_norm(grads, None)
    with pytest.raises(ValueError, match="norm_type: expected a number > 0, inf or 'inf', got 0"):
        clip_grad_norm(grads, 1.0, norm_type=0)
    with pytest.raises(ValueError, match="norm_type: expected .* got 'two'"):
        clip_grad_norm(grads, 1.0, norm_type="two")
    with pytest.raises(TypeError, match="norm_type: expected .* got bool True"):
        clip_grad_norm(grads, 1.0, norm_type=True)
    with pytest.raises(TypeError, match="error_if_nonfinite: expected True or False, got str 'yes'"):
        clip_grad_norm(grads, 1.0, error_if_nonfinite="yes")
    with pytest.raises(TypeError, match=r"grads\['a'\]: expected .* got dtype complex128"):
        global_norm({"a": np.ones(2, complex)})
    np.testing.assert_array_equal(grads["a"], 1.0)


def test_per_step_grad_norms_on_a_hand_made_example():
    # T=3, N=2, I=2: step 0 holds a 3-4-5 triangle per batch row, step 1 is zero, step 2 ones.
    grad = np.zeros((3, 2, 2), np.float32)
    grad[0] = [[3, 0], [0, 4]]
    grad[2] = 1.0
    expected = [5.0, 0.0, 2.0]
    norms = per_step_grad_norms(grad)
    assert norms.shape == (3,) and norms.dtype == np.float64
    np.testing.assert_allclose(norms, expected)
    np.testing.assert_allclose(per_step_grad_norms(grad.transpose(1, 0, 2), batch_first=True), expected)
    np.testing.assert_allclose(per_step_grad_norms(grad[:, 0, :]), [3.0, 0.0, math.sqrt(2)])
    np.testing.assert_allclose(per_step_grad_norms(grad[:, 0, :], batch_first=True), [3.0, 0.0, math.sqrt(2)])
    assert per_step_grad_norms(np.zeros((0, 2, 3))).shape == (0,)


def test_per_step_grad_norms_refuses_bad_input():
    with pytest.raises(ValueError, match=r"grad_input: expected shape \(T, N, I\), .* got \(5,\)"):
        per_step_grad_norms(np.zeros(5))
    with pytest.raises(ValueError, match=r"grad_input: expected .* got \(1, 2, 3, 4\)"):
        per_step_grad_norms(np.zeros((1, 2, 3, 4)))
    with pytest.raises(TypeError, match="grad_input: expected .* got dtype complex128"):
        per_step_grad_norms(np.zeros((2, 3), complex))
    with pytest.raises(TypeError, match="batch_first: expected True or False, got int 1"):
        per_step_grad_norms(np.zeros((2, 3, 4)), batch_first=1)


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize(
    "input_size, hidden_size, num_layers, bias, bidirectional",
    [(3, 5, 1, True, False), (7, 4, 2, True, True), (4, 6, 3, False, False), (1, 2, 2, False, True)],
)
def test_parameter_count_matches_torch(torch, kind, input_size, hidden_size, num_layers, bias, bidirectional):
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](
        input_size, hidden_size, num_layers=num_layers, bias=bias, bidirectional=bidirectional
    )
    expected = sum(p.numel() for p in module.parameters())
    assert parameter_count(kind, input_size, hidden_size, num_layers, bias, bidirectional) == expected
    assert parameter_count(kind.upper(), input_size, hidden_size, num_layers, bias, bidirectional) == expected


def test_parameter_count_formula_and_table():
    # G*H*(I+H) + 2*G*H with G = 4, H = 10, I = 3.
    assert parameter_count("lstm", 3, 10) == 4 * 10 * 13 + 2 * 4 * 10
    rows = parameter_table([8, 32])
    assert rows[:3] == [("rnn", 8, 144), ("lstm", 8, 576), ("gru", 8, 432)]
    assert isinstance(rows[0], ParameterRow) and rows[4].kind == "lstm" and rows[4].hidden_size == 32
    by_kind = {(row.kind, row.hidden_size): row.count for row in rows}
    assert by_kind["lstm", 32] == 4 * by_kind["rnn", 32] and by_kind["gru", 32] == 3 * by_kind["rnn", 32]
    assert parameter_table(np.array([4]), input_size=2)[0] == ("rnn", 4, parameter_count("rnn", 2, 4))


def test_parameter_count_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"kind: expected one of \('rnn', 'lstm', 'gru'\), got 'transformer'"):
        parameter_count("transformer", 3, 4)
    with pytest.raises(TypeError, match="kind: expected one of .* got int 4"):
        parameter_count(4, 3, 4)
    with pytest.raises(ValueError, match="hidden_size: expected a positive integer, got 0"):
        parameter_count("gru", 3, 0)
    with pytest.raises(TypeError, match="num_layers: expected a positive integer, got float 1.5"):
        parameter_count("gru", 3, 4, num_layers=1.5)
    with pytest.raises(TypeError, match="input_size: expected a positive integer, got bool True"):
        parameter_count("gru", True, 4)
    with pytest.raises(TypeError, match="bidirectional: expected True or False, got str 'no'"):
        parameter_count("gru", 3, 4, bidirectional="no")
    with pytest.raises(TypeError, match=r"hidden_sizes\[1\]: expected a positive integer, got float 2.5"):
        parameter_table([4, 2.5])
    with pytest.raises(TypeError, match="hidden_sizes: expected an iterable of ints, got int 8"):
        parameter_table(8)
