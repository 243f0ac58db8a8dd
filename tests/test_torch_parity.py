"""rnncore against PyTorch: the same weights must give the same outputs, final states and
gradients as torch.nn.RNN / LSTM / GRU.

Each case builds a torch module (float64 or float32) with its own random initialisation, loads
`torch_module.state_dict()` (torch tensors) into the rnncore model with `load_state_dict`, runs
both on the same input, and backpropagates the same random upstream gradients for the output and
the final state(s): rnncore through `forward`/`backward`, torch through autograd. Compared: the
output, h_n (and c_n), dL/dx, dL/dh0 (and dL/dc0) and dL/dparam for every parameter.

The grid covers the four cells (RNN tanh, RNN relu, LSTM, GRU), 1-3 layers, uni- and
bidirectional, float64 and float32, and the modes: time-major, batch_first, bias=False, explicit
initial states, variable lengths (against torch's packed sequences with enforce_sorted=False,
unpacked with pad_packed_sequence(total_length=T)), variable lengths with batch_first and initial
states, and unbatched (T, I) input with and without initial states. Both backends ("cpp", the
compiled kernels, and "numpy", the reference) are run on a part of the grid.

Tolerances (np.testing.assert_allclose):
    float64: rtol=1e-11, atol=1e-12  (tighter than 1e-9 / 1e-10; still ~1000x above what we see)
    float32: rtol=1e-4,  atol=1e-5

Largest deviations observed while writing this file (torch 2.13 CPU), over the whole grid, as
max |rnncore - torch| over all entries (outputs/states are at most ~2.2 in size, gradients ~14):
    float64, cpp backend:   outputs and final states 4.4e-16, gradients 3.6e-15
    float64, numpy backend: outputs and final states 8.9e-16, gradients 3.6e-15
    float32, cpp backend:   outputs and final states 2.7e-07, gradients 2.4e-06
Relative to the largest entry of the array compared, that is <= 1.5e-15 (float64) and
<= 8e-07 (float32). (The float32 figures move a little between builds of the kernels.)
"""

from __future__ import annotations

import numpy as np
import pytest

import rnncore as rc

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

TOL = {
    np.float64: dict(rtol=1e-11, atol=1e-12),
    np.float32: dict(rtol=1e-4, atol=1e-5),
}

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
STEPS, BATCH, INPUT, HIDDEN = 5, 3, 4, 6
LENGTHS = [3, 5, 1]  # unsorted, with a full-length and a length-1 sequence

MODES = [
    "plain",
    "batch_first",
    "no_bias",
    "hx",
    "lengths",
    "lengths_hx_batch_first",
    "unbatched",
    "unbatched_hx",
]


# ---------------------------------------------------------------------------------------------
# Helpers


def torch_dtype(dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def make_pair(cell, *, num_layers=1, bidirectional=False, batch_first=False, bias=True,
              dtype=np.float64, backend="cpp", seed=0):
    """A torch module with its own random weights, and an rnncore model loaded from it."""
    torch.manual_seed(seed)
    kwargs = dict(num_layers=num_layers, bias=bias, batch_first=batch_first,
                  bidirectional=bidirectional)
    if cell.startswith("rnn"):
        nonlinearity = cell.split("_")[1]
        tm = torch.nn.RNN(INPUT, HIDDEN, nonlinearity=nonlinearity, **kwargs)
        m = rc.RNN(INPUT, HIDDEN, nonlinearity=nonlinearity, dtype=dtype, backend=backend, **kwargs)
    elif cell == "lstm":
        tm = torch.nn.LSTM(INPUT, HIDDEN, **kwargs)
        m = rc.LSTM(INPUT, HIDDEN, dtype=dtype, backend=backend, **kwargs)
    else:
        tm = torch.nn.GRU(INPUT, HIDDEN, **kwargs)
        m = rc.GRU(INPUT, HIDDEN, dtype=dtype, backend=backend, **kwargs)
    tm = tm.to(torch_dtype(dtype))
    m.load_state_dict(tm.state_dict())
    return tm, m


class Case:
    """Inputs and random upstream gradients in user layout (what rnncore and torch both take)."""

    def __init__(self, cell, m, *, unbatched=False, with_hx=False, lengths=None, seed=1):
        rng = np.random.default_rng(seed)
        dtype = m.dtype
        states = m.num_layers * m.num_directions
        self.cell = cell
        self.unbatched = unbatched
        self.batch_first = m.batch_first
        if unbatched:
            x_shape = (STEPS, INPUT)
            y_shape = (STEPS, m.num_directions * HIDDEN)
            s_shape = (states, HIDDEN)
        else:
            x_shape = (BATCH, STEPS, INPUT) if m.batch_first else (STEPS, BATCH, INPUT)
            y_shape = x_shape[:2] + (m.num_directions * HIDDEN,)
            s_shape = (states, BATCH, HIDDEN)
        self.x = rng.standard_normal(x_shape).astype(dtype)
        self.lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)
        n_states = 2 if cell == "lstm" else 1
        self.hx = None
        if with_hx:
            self.hx = [rng.standard_normal(s_shape).astype(dtype) for _ in range(n_states)]
        self.grad_y = rng.standard_normal(y_shape).astype(dtype)
        self.grad_state = [rng.standard_normal(s_shape).astype(dtype) for _ in range(n_states)]

    def rc_hx(self):
        if self.hx is None:
            return None
        return tuple(self.hx) if self.cell == "lstm" else self.hx[0]

    def rc_grad_state(self):
        return tuple(self.grad_state) if self.cell == "lstm" else self.grad_state[0]


def run_rnncore(m, case):
    """(output, [h_n, (c_n)], grad_x, [grad_h0, (grad_c0)], {name: grad})."""
    y, state, cache = m.forward(case.x, case.rc_hx(), case.lengths)
    g = m.backward(cache, case.grad_y, case.rc_grad_state())
    states = list(state) if case.cell == "lstm" else [state]
    grad_hx = list(g.hx) if case.cell == "lstm" else [g.hx]
    return y, states, g.input, grad_hx, g.params


def run_torch(tm, case):
    """The same as run_rnncore, computed by torch autograd (packed sequences for lengths)."""
    x = torch.tensor(case.x, requires_grad=True)
    if case.hx is None:
        # Zero initial states given explicitly, so that autograd also yields dL/dh0 (dL/dc0).
        shape = ((tm.num_layers * (2 if tm.bidirectional else 1),)
                 + (() if case.unbatched else (BATCH,)) + (HIDDEN,))
        hx = [torch.zeros(shape, dtype=x.dtype, requires_grad=True) for _ in case.grad_state]
    else:
        hx = [torch.tensor(h, requires_grad=True) for h in case.hx]
    hx_arg = tuple(hx) if case.cell == "lstm" else hx[0]
    if case.lengths is not None:
        packed = pack_padded_sequence(x, torch.from_numpy(case.lengths), batch_first=case.batch_first,
                                      enforce_sorted=False)
        out, state = tm(packed, hx_arg)
        out, _ = pad_packed_sequence(out, batch_first=case.batch_first, total_length=STEPS)
    else:
        out, state = tm(x, hx_arg)
    states = list(state) if case.cell == "lstm" else [state]
    loss = (out * torch.from_numpy(case.grad_y)).sum()
    for s, g in zip(states, case.grad_state):
        loss = loss + (s * torch.from_numpy(g)).sum()
    params = dict(tm.named_parameters())
    grads = torch.autograd.grad(loss, [x, *hx, *params.values()])
    grad_x, grad_hx = grads[0], grads[1:1 + len(hx)]
    grad_params = dict(zip(params, grads[1 + len(hx):]))

    def np_(t):
        return t.detach().numpy()

    return (np_(out), [np_(s) for s in states], np_(grad_x), [np_(g) for g in grad_hx],
            {k: np_(v) for k, v in grad_params.items()})


def assert_parity(ours, theirs, dtype):
    tol = TOL[dtype]
    y, states, grad_x, grad_hx, grad_params = ours
    ty, tstates, tgrad_x, tgrad_hx, tgrad_params = theirs
    assert y.dtype == dtype and y.shape == ty.shape
    np.testing.assert_allclose(y, ty, err_msg="output", **tol)
    for i, (s, ts) in enumerate(zip(states, tstates)):
        assert s.shape == ts.shape
        np.testing.assert_allclose(s, ts, err_msg=f"final state {i}", **tol)
    assert grad_x.shape == tgrad_x.shape
    np.testing.assert_allclose(grad_x, tgrad_x, err_msg="grad input", **tol)
    for i, (g, tg) in enumerate(zip(grad_hx, tgrad_hx)):
        assert g.shape == tg.shape
        np.testing.assert_allclose(g, tg, err_msg=f"grad hx {i}", **tol)
    assert set(grad_params) == set(tgrad_params)
    for name, g in grad_params.items():
        assert g.shape == tgrad_params[name].shape, name
        np.testing.assert_allclose(g, tgrad_params[name], err_msg=f"grad {name}", **tol)


def mode_options(mode):
    """(model kwargs, case kwargs) for one mode of the grid."""
    model = dict(batch_first=mode in ("batch_first", "lengths_hx_batch_first"), bias=mode != "no_bias")
    case = dict(unbatched=mode.startswith("unbatched"),
                with_hx=mode in ("hx", "lengths_hx_batch_first", "unbatched_hx"),
                lengths=LENGTHS if mode.startswith("lengths") else None)
    return model, case


# ---------------------------------------------------------------------------------------------
# The grid


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_parity_cpp(cell, num_layers, bidirectional, dtype, mode):
    model_kw, case_kw = mode_options(mode)
    tm, m = make_pair(cell, num_layers=num_layers, bidirectional=bidirectional, dtype=dtype, **model_kw)
    case = Case(cell, m, **case_kw)
    assert_parity(run_rnncore(m, case), run_torch(tm, case), dtype)


@pytest.mark.parametrize("mode", ["plain", "no_bias", "lengths_hx_batch_first", "unbatched_hx"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_parity_numpy_backend(cell, num_layers, bidirectional, mode):
    model_kw, case_kw = mode_options(mode)
    tm, m = make_pair(cell, num_layers=num_layers, bidirectional=bidirectional, dtype=np.float64,
                      backend="numpy", **model_kw)
    case = Case(cell, m, **case_kw)
    assert_parity(run_rnncore(m, case), run_torch(tm, case), np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS)
def test_inference_call_matches_torch(cell, dtype):
    """m(x, hx, lengths) (no cache) gives what torch gives, with packed lengths and batch_first."""
    tm, m = make_pair(cell, num_layers=2, bidirectional=True, batch_first=True, dtype=dtype)
    case = Case(cell, m, with_hx=True, lengths=LENGTHS)
    y, state = m(case.x, case.rc_hx(), case.lengths)
    ty, tstates, *_ = run_torch(tm, case)
    np.testing.assert_allclose(y, ty, **TOL[dtype])
    states = list(state) if cell == "lstm" else [state]
    for s, ts in zip(states, tstates):
        np.testing.assert_allclose(s, ts, **TOL[dtype])


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS)
def test_full_lengths_match_no_lengths(cell, bidirectional):
    """lengths all equal to T take the unmasked path in rnncore; torch agrees with packing."""
    tm, m = make_pair(cell, num_layers=2, bidirectional=bidirectional)
    case = Case(cell, m, with_hx=True, lengths=[STEPS] * BATCH)
    assert_parity(run_rnncore(m, case), run_torch(tm, case), np.float64)


@pytest.mark.parametrize("backend", ["cpp", "numpy"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS)
def test_unbatched_with_length_matches_torch_on_prefix(cell, bidirectional, backend):
    """Torch cannot pack an unbatched sequence; rnncore's unbatched x with a scalar length L must
    equal torch on x[:L], with the output zero past L and zero gradient for x past L."""
    length = 3
    tm, m = make_pair(cell, num_layers=2, bidirectional=bidirectional, backend=backend)
    case = Case(cell, m, unbatched=True, with_hx=True)
    y, state, cache = m.forward(case.x, case.rc_hx(), length)
    g = m.backward(cache, case.grad_y, case.rc_grad_state())

    x = torch.tensor(case.x[:length], requires_grad=True)
    hx = [torch.tensor(h, requires_grad=True) for h in case.hx]
    out, tstate = tm(x, tuple(hx) if cell == "lstm" else hx[0])
    tstates = list(tstate) if cell == "lstm" else [tstate]
    loss = (out * torch.from_numpy(case.grad_y[:length])).sum()
    for s, gs in zip(tstates, case.grad_state):
        loss = loss + (s * torch.from_numpy(gs)).sum()
    params = dict(tm.named_parameters())
    grads = torch.autograd.grad(loss, [x, *hx, *params.values()])

    tol = TOL[np.float64]
    np.testing.assert_allclose(y[:length], out.detach().numpy(), **tol)
    np.testing.assert_array_equal(y[length:], 0.0)
    states = list(state) if cell == "lstm" else [state]
    for s, ts in zip(states, tstates):
        np.testing.assert_allclose(s, ts.detach().numpy(), **tol)
    np.testing.assert_allclose(g.input[:length], grads[0].numpy(), **tol)
    np.testing.assert_array_equal(g.input[length:], 0.0)
    grad_hx = list(g.hx) if cell == "lstm" else [g.hx]
    for gh, tg in zip(grad_hx, grads[1:1 + len(hx)]):
        np.testing.assert_allclose(gh, tg.numpy(), **tol)
    for name, tg in zip(params, grads[1 + len(hx):]):
        np.testing.assert_allclose(g.params[name], tg.numpy(), err_msg=name, **tol)


# ---------------------------------------------------------------------------------------------
# Weights moving the other way, and parameter counts


def torch_module(m):
    kwargs = dict(num_layers=m.num_layers, bias=m.bias, batch_first=m.batch_first,
                  bidirectional=m.bidirectional)
    if isinstance(m, rc.RNN):
        tm = torch.nn.RNN(m.input_size, m.hidden_size, nonlinearity=m.nonlinearity, **kwargs)
    elif isinstance(m, rc.LSTM):
        tm = torch.nn.LSTM(m.input_size, m.hidden_size, **kwargs)
    else:
        tm = torch.nn.GRU(m.input_size, m.hidden_size, **kwargs)
    return tm.to(torch_dtype(m.dtype))


def rc_model(cell, **kwargs):
    if cell.startswith("rnn"):
        return rc.RNN(INPUT, HIDDEN, nonlinearity=cell.split("_")[1], **kwargs)
    return {"lstm": rc.LSTM, "gru": rc.GRU}[cell](INPUT, HIDDEN, **kwargs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_round_trip_into_torch(cell, bidirectional, bias, dtype):
    m = rc_model(cell, num_layers=2, bidirectional=bidirectional, bias=bias, dtype=dtype, seed=7)
    tm = torch_module(m)
    sd = m.state_dict()
    assert set(sd) == set(tm.state_dict())
    for name, value in tm.state_dict().items():
        assert sd[name].shape == tuple(value.shape), name
        assert sd[name].dtype == dtype
    tm.load_state_dict({name: torch.from_numpy(value) for name, value in sd.items()})

    x = np.random.default_rng(3).standard_normal((STEPS, BATCH, INPUT)).astype(dtype)
    y, state = m(x)
    with torch.no_grad():
        ty, tstate = tm(torch.from_numpy(x))
    np.testing.assert_allclose(y, ty.numpy(), **TOL[dtype])
    states = list(state) if cell == "lstm" else [state]
    tstates = list(tstate) if cell == "lstm" else [tstate]
    for s, ts in zip(states, tstates):
        np.testing.assert_allclose(s, ts.numpy(), **TOL[dtype])

    # ...and back again: torch's state_dict into a fresh rnncore model gives the same parameters.
    m2 = rc_model(cell, num_layers=2, bidirectional=bidirectional, bias=bias, dtype=dtype, seed=8)
    m2.load_state_dict(tm.state_dict())
    for name, value in sd.items():
        np.testing.assert_array_equal(m2.state_dict()[name], value)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_num_parameters_matches_torch(cell, num_layers, bidirectional, bias):
    m = rc_model(cell, num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    tm = torch_module(m)
    assert m.num_parameters() == sum(p.numel() for p in tm.parameters())
    assert list(m.state_dict()) == list(tm.state_dict())  # the same names in the same order


def test_load_state_dict_accepts_float32_tensors_into_float64_model():
    """A float32 torch module's weights load into a float64 model (cast once), and then agree with
    the float64 copy of that torch module to float64 precision."""
    torch.manual_seed(0)
    tm = torch.nn.GRU(INPUT, HIDDEN, num_layers=2)
    m = rc.GRU(INPUT, HIDDEN, num_layers=2, dtype=np.float64)
    m.load_state_dict(tm.state_dict())
    for value in m.state_dict().values():
        assert value.dtype == np.float64
    tm = tm.double()
    x = np.random.default_rng(0).standard_normal((STEPS, BATCH, INPUT))
    y, h = m(x)
    with torch.no_grad():
        ty, th = tm(torch.from_numpy(x))
    np.testing.assert_allclose(y, ty.numpy(), **TOL[np.float64])
    np.testing.assert_allclose(h, th.numpy(), **TOL[np.float64])
