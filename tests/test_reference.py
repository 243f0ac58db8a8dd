"""The NumPy reference is the oracle for every compiled kernel, so it is checked on its own:
against central finite differences, against the behaviour the design promises for padded
sequences, and against PyTorch itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnncore import reference as ref

FD_STEP = 1e-6
FD_RTOL = 1e-6
# A central difference carries round-off of about eps * |loss| / FD_STEP per coordinate whatever
# the gradient's size (1.5e-9 at a loss of 6.7); gradients small enough for that to exceed FD_RTOL
# are held to FD_ROUNDOFF times it instead (hypothesis found picks of norm ~1e-4 whose differences
# of ~1e-9 failed a purely relative check).
FD_ROUNDOFF = 10.0
TORCH_ATOL = 1e-10


# ---------------------------------------------------------------------------------------------
# Helpers


def make_params(cell, input_size, hidden_size, num_layers, bidirectional, bias, rng,
                dtype=np.float64, scale=0.6):
    """Random PyTorch-named parameters; a scale near PyTorch's 1/sqrt(H) keeps the gates out of
    saturation, so every gradient is far from zero and finite differences see it."""
    gates = ref.gate_count(cell)
    directions = 2 if bidirectional else 1
    params = {}
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else directions * hidden_size
        for direction in range(directions):
            s = f"_l{layer}" + ("_reverse" if direction else "")
            params[f"weight_ih{s}"] = rng.uniform(-scale, scale, (gates * hidden_size, layer_input))
            params[f"weight_hh{s}"] = rng.uniform(-scale, scale, (gates * hidden_size, hidden_size))
            if bias:
                params[f"bias_ih{s}"] = rng.uniform(-scale, scale, gates * hidden_size)
                params[f"bias_hh{s}"] = rng.uniform(-scale, scale, gates * hidden_size)
    return {name: value.astype(dtype) for name, value in params.items()}


class Problem:
    """One model plus inputs and a random linear loss L = sum(y*Gy) + sum(h_n*Gh) + sum(c_n*Gc),
    so that backward receives random upstream gradients."""

    def __init__(self, cell, *, steps=4, batch=3, input_size=3, hidden_size=2, num_layers=1,
                 bidirectional=False, bias=True, lengths=None, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        directions = 2 if bidirectional else 1
        state_shape = (directions * num_layers, batch, hidden_size)
        self.cell = cell
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.params = make_params(cell, input_size, hidden_size, num_layers, bidirectional,
                                  bias, rng, dtype)
        self.x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
        self.h0 = rng.standard_normal(state_shape).astype(dtype)
        self.c0 = rng.standard_normal(state_shape).astype(dtype) if cell == "lstm" else None
        self.lengths = (np.full(batch, steps, dtype=np.int64) if lengths is None
                        else np.asarray(lengths, dtype=np.int64))
        self.grad_y = rng.standard_normal((steps, batch, directions * hidden_size)).astype(dtype)
        self.grad_h_n = rng.standard_normal(state_shape).astype(dtype)
        self.grad_c_n = rng.standard_normal(state_shape).astype(dtype) if cell == "lstm" else None

    def forward(self, x=None, h0=None, c0=None, params=None):
        return ref.forward(
            self.cell,
            self.params if params is None else params,
            self.x if x is None else x,
            self.h0 if h0 is None else h0,
            self.c0 if c0 is None else c0,
            self.lengths,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
        )

    def loss(self, **inputs) -> float:
        y, h_n, c_n, _ = self.forward(**inputs)
        total = np.sum(y * self.grad_y) + np.sum(h_n * self.grad_h_n)
        if c_n is not None:
            total += np.sum(c_n * self.grad_c_n)
        return float(total)

    def gradients(self) -> dict:
        """Analytic gradients of the loss, keyed like the inputs they belong to."""
        _, _, _, cache = self.forward()
        grad_x, grad_h0, grad_c0, grad_params = ref.backward(
            self.cell, self.params, cache, self.grad_y, self.grad_h_n, self.grad_c_n)
        grads = {"x": grad_x, "h0": grad_h0, **{f"params.{k}": v for k, v in grad_params.items()}}
        if self.cell == "lstm":
            grads["c0"] = grad_c0
        return grads

    def inputs(self) -> dict:
        """The arrays the loss depends on, keyed like gradients()."""
        arrays = {"x": self.x, "h0": self.h0, **{f"params.{k}": v for k, v in self.params.items()}}
        if self.cell == "lstm":
            arrays["c0"] = self.c0
        return arrays

    def numerical_gradient(self, name: str, coordinates=None) -> np.ndarray:
        """Central differences of the loss with respect to inputs()[name], at the given flat
        coordinates (all of them by default); other entries are left at zero."""
        original = self.inputs()[name]
        grad = np.zeros_like(original)
        coordinates = range(original.size) if coordinates is None else coordinates
        for k in coordinates:
            values = []
            for delta in (FD_STEP, -FD_STEP):
                shifted = original.copy()
                shifted.flat[k] += delta
                values.append(self.loss(**self._replace(name, shifted)))
            grad.flat[k] = (values[0] - values[1]) / (2 * FD_STEP)
        return grad

    def _replace(self, name, array) -> dict:
        if name.startswith("params."):
            return {"params": {**self.params, name[len("params."):]: array}}
        return {name: array}


def relative_error(actual: np.ndarray, expected: np.ndarray, atol: float = 0.0) -> float:
    """|actual - expected| relative to the larger norm, or to atol / FD_RTOL where both norms
    are smaller (an error within atol then passes a check against FD_RTOL)."""
    scale = max(np.linalg.norm(actual), np.linalg.norm(expected), atol / FD_RTOL)
    return 0.0 if scale == 0 else float(np.linalg.norm(actual - expected) / scale)


def finite_difference_roundoff(problem: Problem, coordinates: int) -> float:
    """FD_ROUNDOFF times the round-off of `coordinates` central differences of the loss."""
    per_coordinate = np.finfo(np.float64).eps * max(1.0, abs(problem.loss())) / FD_STEP
    return FD_ROUNDOFF * per_coordinate * float(np.sqrt(coordinates))


def assert_matches_finite_differences(problem: Problem, coordinates_per_array=None, rng=None):
    analytic = problem.gradients()
    assert analytic.keys() == problem.inputs().keys()
    for name, grad in analytic.items():
        assert grad.shape == problem.inputs()[name].shape, name
        if coordinates_per_array is None:
            numeric = problem.numerical_gradient(name)
            error = relative_error(grad, numeric, finite_difference_roundoff(problem, grad.size))
        else:
            picks = rng.choice(grad.size, size=min(coordinates_per_array, grad.size),
                               replace=False)
            numeric = problem.numerical_gradient(name, picks).flat[picks]
            error = relative_error(grad.flat[picks], numeric,
                                   finite_difference_roundoff(problem, picks.size))
        assert error < FD_RTOL, f"{name}: relative error {error:.2e}"


# ---------------------------------------------------------------------------------------------
# Finite differences


LENGTHS = {"full": None, "unequal_unsorted": [3, 4, 1]}


@pytest.mark.parametrize("lengths", LENGTHS.keys())
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("cell", ref.CELLS)
def test_backward_matches_finite_differences_float64(cell, num_layers, bidirectional, bias,
                                                     lengths):
    problem = Problem(cell, num_layers=num_layers, bidirectional=bidirectional, bias=bias,
                      lengths=LENGTHS[lengths])
    assert_matches_finite_differences(problem)


@st.composite
def small_problems(draw):
    steps = draw(st.integers(1, 4))
    batch = draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    return Problem(
        draw(st.sampled_from(ref.CELLS)),
        steps=steps,
        batch=batch,
        input_size=draw(st.integers(1, 4)),
        hidden_size=draw(st.integers(1, 4)),
        num_layers=draw(st.integers(1, 3)),
        bidirectional=draw(st.booleans()),
        bias=draw(st.booleans()),
        lengths=lengths,
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=25, deadline=None)
@given(problem=small_problems(), seed=st.integers(0, 2**32 - 1))
def test_backward_matches_finite_differences_on_random_shapes(problem, seed):
    assert_matches_finite_differences(problem, coordinates_per_array=4,
                                      rng=np.random.default_rng(seed))


# ---------------------------------------------------------------------------------------------
# Variable lengths


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", ref.CELLS)
def test_outputs_past_length_are_exactly_zero(cell, bidirectional):
    lengths = [2, 5, 1, 4]
    problem = Problem(cell, steps=5, batch=4, num_layers=2, bidirectional=bidirectional,
                      lengths=lengths)
    y, _, _, _ = problem.forward()
    for b, length in enumerate(lengths):
        assert np.all(y[length:, b] == 0)
        if cell != "rnn_relu":  # relu outputs can be zero legitimately
            assert np.all(y[:length, b] != 0)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", ref.CELLS)
def test_padded_sequence_matches_its_unpadded_run(cell, bidirectional):
    lengths = [3, 5, 1]
    problem = Problem(cell, steps=5, batch=3, num_layers=2, bidirectional=bidirectional,
                      lengths=lengths)
    y, h_n, c_n, _ = problem.forward()
    for b, length in enumerate(lengths):
        alone = ref.forward(
            cell, problem.params, problem.x[:length, b:b + 1], problem.h0[:, b:b + 1],
            None if c_n is None else problem.c0[:, b:b + 1], np.array([length]),
            num_layers=2, bidirectional=bidirectional)
        np.testing.assert_allclose(y[:length, b:b + 1], alone[0], rtol=0, atol=1e-14)
        np.testing.assert_allclose(h_n[:, b:b + 1], alone[1], rtol=0, atol=1e-14)
        if c_n is not None:
            np.testing.assert_allclose(c_n[:, b:b + 1], alone[2], rtol=0, atol=1e-14)


@pytest.mark.parametrize("cell", ref.CELLS)
def test_reverse_direction_of_padded_sequence_is_forward_run_of_its_reversal(cell):
    """The reverse direction must start at each sequence's own last step, not at T-1."""
    lengths = [4, 2, 5]
    problem = Problem(cell, steps=5, batch=3, bidirectional=True, lengths=lengths)
    y, h_n, c_n, _ = problem.forward()
    hidden = problem.h0.shape[-1]
    reverse_params = {k.replace("_reverse", ""): v for k, v in problem.params.items()
                      if k.endswith("_reverse")}
    for b, length in enumerate(lengths):
        flipped = ref.forward(
            cell, reverse_params, problem.x[:length, b:b + 1][::-1], problem.h0[1:, b:b + 1],
            None if c_n is None else problem.c0[1:, b:b + 1], np.array([length]),
            num_layers=1, bidirectional=False)
        np.testing.assert_allclose(y[:length, b:b + 1, hidden:], flipped[0][::-1], atol=1e-14)
        np.testing.assert_allclose(h_n[1:, b:b + 1], flipped[1], atol=1e-14)
        if c_n is not None:
            np.testing.assert_allclose(c_n[1:, b:b + 1], flipped[2], atol=1e-14)


@pytest.mark.parametrize("cell", ref.CELLS)
def test_grad_y_past_length_is_ignored(cell):
    problem = Problem(cell, steps=5, batch=3, num_layers=2, bidirectional=True,
                      lengths=[2, 5, 3])
    clean = problem.gradients()
    for b, length in enumerate(problem.lengths):
        problem.grad_y[length:, b] = 1e3
    noisy = problem.gradients()
    for name in clean:
        np.testing.assert_array_equal(noisy[name], clean[name], err_msg=name)


@pytest.mark.parametrize("cell", ref.CELLS)
def test_lengths_none_means_full_length(cell):
    problem = Problem(cell, bidirectional=True)
    full = problem.forward()
    problem.lengths = None
    for with_none, with_full in zip(problem.forward()[:3], full[:3]):
        np.testing.assert_array_equal(with_none, with_full)


# ---------------------------------------------------------------------------------------------
# Interface details


@pytest.mark.parametrize("cell", ref.CELLS)
def test_missing_bias_acts_as_zero_bias_and_gets_no_gradient(cell):
    problem = Problem(cell, num_layers=2, bidirectional=True, bias=False)
    zero_bias = dict(problem.params)
    for name, weight in problem.params.items():
        if name.startswith("weight_hh"):
            rows = weight.shape[0]
            zero_bias[name.replace("weight_hh", "bias_ih")] = np.zeros(rows)
            zero_bias[name.replace("weight_hh", "bias_hh")] = np.zeros(rows)
    without = problem.forward()
    with_zero = problem.forward(params=zero_bias)
    for a, b in zip(without[:3], with_zero[:3]):
        np.testing.assert_array_equal(a, b)
    grad_params = ref.backward(cell, problem.params, without[3], problem.grad_y,
                               problem.grad_h_n, problem.grad_c_n)[3]
    assert list(grad_params) == list(problem.params)


def test_lstm_grad_c_n_none_means_zero():
    problem = Problem("lstm", num_layers=2, bidirectional=True, lengths=[1, 4, 2])
    cache = problem.forward()[3]
    args = ("lstm", problem.params, cache, problem.grad_y, problem.grad_h_n)
    with_none = ref.backward(*args, None)
    with_zero = ref.backward(*args, np.zeros_like(problem.grad_c_n))
    for a, b in zip(with_none[:3], with_zero[:3]):
        np.testing.assert_array_equal(a, b)
    for name in with_zero[3]:
        np.testing.assert_array_equal(with_none[3][name], with_zero[3][name])


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "gru"])
def test_cells_without_cell_state_return_none_for_it(cell):
    problem = Problem(cell)
    y, h_n, c_n, cache = problem.forward()
    assert c_n is None
    assert ref.backward(cell, problem.params, cache, problem.grad_y, problem.grad_h_n,
                        None)[2] is None


@pytest.mark.parametrize("cell", ref.CELLS)
def test_shapes_follow_pytorch(cell):
    problem = Problem(cell, steps=5, batch=2, input_size=3, hidden_size=4, num_layers=3,
                      bidirectional=True)
    y, h_n, c_n, cache = problem.forward()
    assert y.shape == (5, 2, 8)
    assert h_n.shape == (6, 2, 4)
    assert (c_n is None) == (cell != "lstm")
    grad_x, grad_h0, grad_c0, grad_params = ref.backward(
        cell, problem.params, cache, problem.grad_y, problem.grad_h_n, problem.grad_c_n)
    assert grad_x.shape == problem.x.shape
    assert grad_h0.shape == problem.h0.shape
    if cell == "lstm":
        assert grad_c0.shape == problem.c0.shape
    assert {k: v.shape for k, v in grad_params.items()} == {
        k: v.shape for k, v in problem.params.items()}


def test_gate_count():
    assert [ref.gate_count(cell) for cell in ref.CELLS] == [1, 1, 4, 3]
    with pytest.raises(ValueError, match="cell"):
        ref.gate_count("transformer")


@pytest.mark.parametrize("cell", ref.CELLS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_single_step_cells_match_one_step_of_forward(cell, bias):
    problem = Problem(cell, steps=1, bias=bias)
    y, h_n, c_n, _ = problem.forward()
    w_ih, w_hh = problem.params["weight_ih_l0"], problem.params["weight_hh_l0"]
    b_ih, b_hh = problem.params.get("bias_ih_l0"), problem.params.get("bias_hh_l0")
    x, h = problem.x[0], problem.h0[0]
    if cell == "lstm":
        h_new, c_new = ref.lstm_cell(x, h, problem.c0[0], w_ih, w_hh, b_ih, b_hh)
        np.testing.assert_array_equal(c_new, c_n[0])
    elif cell == "gru":
        h_new = ref.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh)
    else:
        h_new = ref.rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity=cell[len("rnn_"):])
    np.testing.assert_array_equal(h_new, h_n[0])
    np.testing.assert_array_equal(h_new, y[0])


def test_single_step_cells_follow_the_written_equations():
    """Spelled out once by hand, independently of the gate-splitting code."""
    rng = np.random.default_rng(3)
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 2)), rng.standard_normal((2, 2))

    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    w_ih, w_hh, b_ih, b_hh = (rng.standard_normal((8, 3)), rng.standard_normal((8, 2)),
                              rng.standard_normal(8), rng.standard_normal(8))
    a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = sigmoid(a[:, 0:2]), sigmoid(a[:, 2:4]), np.tanh(a[:, 4:6]), sigmoid(a[:, 6:8])
    c_new = f * c + i * g
    np.testing.assert_allclose(ref.lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh),
                               (o * np.tanh(c_new), c_new), rtol=1e-14)

    w_ih, w_hh, b_ih, b_hh = w_ih[:6], w_hh[:6], b_ih[:6], b_hh[:6]
    r = sigmoid(x @ w_ih[0:2].T + b_ih[0:2] + h @ w_hh[0:2].T + b_hh[0:2])
    z = sigmoid(x @ w_ih[2:4].T + b_ih[2:4] + h @ w_hh[2:4].T + b_hh[2:4])
    n = np.tanh(x @ w_ih[4:6].T + b_ih[4:6] + r * (h @ w_hh[4:6].T + b_hh[4:6]))
    np.testing.assert_allclose(ref.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh),
                               (1 - z) * n + z * h, rtol=1e-14)

    a = x @ w_ih[:2].T + b_ih[:2] + h @ w_hh[:2].T + b_hh[:2]
    np.testing.assert_allclose(ref.rnn_cell(x, h, w_ih[:2], w_hh[:2], b_ih[:2], b_hh[:2]),
                               np.tanh(a), rtol=1e-14)
    np.testing.assert_array_equal(
        ref.rnn_cell(x, h, w_ih[:2], w_hh[:2], b_ih[:2], b_hh[:2], nonlinearity="relu"),
        np.maximum(a, 0))


# ---------------------------------------------------------------------------------------------
# Precision


@pytest.mark.parametrize("cell", ref.CELLS)
def test_float32_is_close_to_float64(cell):
    kwargs = dict(num_layers=2, bidirectional=True, lengths=[4, 2, 3])
    single = Problem(cell, dtype=np.float32, **kwargs)
    double = Problem(cell, dtype=np.float64, **kwargs)
    out32, out64 = single.forward(), double.forward()
    for a32, a64 in zip(out32[:3], out64[:3]):
        if a64 is not None:
            assert a32.dtype == np.float32
            np.testing.assert_allclose(a32, a64, rtol=0, atol=1e-5)
    grads32, grads64 = single.gradients(), double.gradients()
    for name in grads64:
        assert grads32[name].dtype == np.float32, name
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=0, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ref.CELLS)
def test_saturating_gates_stay_finite_without_warnings(cell, dtype):
    """pytest turns numpy's overflow warnings into errors, so a naive sigmoid fails here."""
    problem = Problem(cell, bidirectional=True, dtype=dtype)
    problem.params = {k: (v * 1e4).astype(dtype) for k, v in problem.params.items()}
    problem.x = (problem.x * 1e4).astype(dtype)
    y, h_n, c_n, _ = problem.forward()
    grads = problem.gradients()
    for array in [y, h_n, *([] if c_n is None else [c_n]), *grads.values()]:
        assert np.all(np.isfinite(array))


# ---------------------------------------------------------------------------------------------
# Parity with PyTorch


def torch_model(cell, problem: Problem, input_size, hidden_size, bias):
    torch = pytest.importorskip("torch")
    kwargs = dict(input_size=input_size, hidden_size=hidden_size,
                  num_layers=problem.num_layers, bias=bias,
                  bidirectional=problem.bidirectional, dtype=torch.float64)
    if cell == "lstm":
        model = torch.nn.LSTM(**kwargs)
    elif cell == "gru":
        model = torch.nn.GRU(**kwargs)
    else:
        model = torch.nn.RNN(nonlinearity=cell[len("rnn_"):], **kwargs)
    # strict loading checks that the reference's parameter names are exactly PyTorch's.
    model.load_state_dict({k: torch.from_numpy(v) for k, v in problem.params.items()})
    return model


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("cell", ref.CELLS)
def test_matches_pytorch_forward_and_gradients_float64(cell, num_layers, bidirectional, bias,
                                                       packed):
    torch = pytest.importorskip("torch")
    steps, input_size, hidden_size = 6, 3, 4
    lengths = [4, 6, 1, 3] if packed else None
    problem = Problem(cell, steps=steps, batch=4, input_size=input_size,
                      hidden_size=hidden_size, num_layers=num_layers,
                      bidirectional=bidirectional, bias=bias, lengths=lengths, seed=7)
    model = torch_model(cell, problem, input_size, hidden_size, bias)

    x = torch.tensor(problem.x, requires_grad=True)
    h0 = torch.tensor(problem.h0, requires_grad=True)
    c0 = torch.tensor(problem.c0, requires_grad=True) if cell == "lstm" else None
    sequence = x
    if packed:
        sequence = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.tensor(problem.lengths), enforce_sorted=False)
    output, state = model(sequence, (h0, c0) if cell == "lstm" else h0)
    if packed:
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, total_length=steps)
    h_n, c_n = state if cell == "lstm" else (state, None)
    loss = (output * torch.from_numpy(problem.grad_y)).sum()
    loss = loss + (h_n * torch.from_numpy(problem.grad_h_n)).sum()
    if cell == "lstm":
        loss = loss + (c_n * torch.from_numpy(problem.grad_c_n)).sum()
    loss.backward()

    y_ref, h_n_ref, c_n_ref, _ = problem.forward()
    np.testing.assert_allclose(y_ref, output.detach().numpy(), rtol=0, atol=TORCH_ATOL)
    np.testing.assert_allclose(h_n_ref, h_n.detach().numpy(), rtol=0, atol=TORCH_ATOL)
    if cell == "lstm":
        np.testing.assert_allclose(c_n_ref, c_n.detach().numpy(), rtol=0, atol=TORCH_ATOL)

    grads = problem.gradients()
    expected = {"x": x.grad, "h0": h0.grad,
                **{f"params.{k}": p.grad for k, p in model.named_parameters()}}
    if cell == "lstm":
        expected["c0"] = c0.grad
    assert grads.keys() == expected.keys()
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, expected[name].numpy(), rtol=0, atol=TORCH_ATOL,
                                   err_msg=name)
