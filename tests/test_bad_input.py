"""Bad input is refused with a ValueError or TypeError whose message starts with (or names) the
argument at fault, and nothing crashes the interpreter.

Covered: the public layers (constructor, forward/__call__, hx, lengths, load_state_dict, backward)
with both backends ("cpp" and "numpy"), and the private compiled entry points
rnncore._core.forward / _core.backward, which re-check every shape, dtype and layout so that no
caller can make the kernels read or write out of bounds.

Also the accepted conversions: integer x is cast to the model's dtype, non-contiguous arrays give
the same result as their contiguous copies, float64 x into a float32 model is cast to float32.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import rnncore as rc
from rnncore import _core
from rnncore._spec import param_names

BACKENDS = ["cpp", "numpy"]
CELLS = ["rnn", "lstm", "gru"]
T, N, I, H = 5, 2, 3, 4


def make(cell, backend="cpp", **kwargs):
    kwargs.setdefault("dtype", np.float64)
    kwargs.setdefault("seed", 0)
    cls = {"rnn": rc.RNN, "lstm": rc.LSTM, "gru": rc.GRU}[cell]
    return cls(I, H, backend=backend, **kwargs)


def x_tm(dtype=np.float64, steps=T, batch=N, seed=0):
    return np.random.default_rng(seed).standard_normal((steps, batch, I)).astype(dtype)


def zero_hx(m, batch=N, unbatched=False):
    states = m.num_layers * m.num_directions
    shape = (states, H) if unbatched else (states, batch, H)
    h = np.zeros(shape, m.dtype)
    return (h, h.copy()) if isinstance(m, rc.LSTM) else h


def names(message):
    """A pattern for pytest.raises(match=...): the message starts with the argument's name."""
    return "^" + re.escape(message)


both_backends = pytest.mark.parametrize("backend", BACKENDS)
all_cells = pytest.mark.parametrize("cell", CELLS)


# ---------------------------------------------------------------------------------------------
# x


@both_backends
@all_cells
@pytest.mark.parametrize("shape", [(), (I,), (1, T, N, I)], ids=["0d", "1d", "4d"])
def test_x_wrong_ndim(cell, backend, shape):
    m = make(cell, backend)
    with pytest.raises(ValueError, match=names("x:") + ".*dimensions.*" + re.escape(str(shape))):
        m(np.zeros(shape))


@both_backends
@all_cells
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("shape", [(T, N, I + 1), (T, N, I - 1), (T, I + 2), (T, N, 1)])
def test_x_wrong_feature_size(cell, backend, batch_first, shape):
    m = make(cell, backend, batch_first=batch_first)
    with pytest.raises(ValueError, match=names("x:") + f".*input_size {I}.*" + re.escape(str(shape))):
        m(np.zeros(shape))


@both_backends
@all_cells
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("shape", [(0, N, I), (T, 0, I), (0, 0, I), (0, I)])
def test_x_zero_steps_or_batch(cell, backend, batch_first, shape):
    m = make(cell, backend, batch_first=batch_first)
    # The message reports the shape the caller passed, not an internal reshaped view of it.
    with pytest.raises(ValueError, match=names("x:") + ".*at least one.*" + re.escape(str(shape))):
        m(np.zeros(shape))
    with pytest.raises(ValueError, match=names("x:")):
        m.forward(np.zeros(shape))


@both_backends
@all_cells
@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((T, N, I), dtype=bool),
        np.zeros((T, N, I), dtype=np.complex128),
        np.zeros((T, N, I), dtype=np.complex64),
        np.zeros((T, N, I), dtype=object),
        np.full((T, N, I), "a"),
        "not an array",
        None,
        {"x": 1},
        [[[1.0, 2.0, 3.0]], [[1.0, 2.0]]],  # ragged
        [[[1.0, 2.0, None]]],  # object
    ],
    ids=["bool", "complex128", "complex64", "object", "str-array", "str", "None", "dict", "ragged",
         "none-in-list"],
)
def test_x_not_real_numbers(cell, backend, bad):
    m = make(cell, backend)
    with pytest.raises(TypeError, match=names("x:")):
        m(bad)
    with pytest.raises(TypeError, match=names("x:")):
        m.forward(bad)


# ---------------------------------------------------------------------------------------------
# hx


@both_backends
@pytest.mark.parametrize("cell", ["rnn", "gru"])
@pytest.mark.parametrize(
    "shape",
    [(4, N + 1, H), (4, N - 1, H), (3, N, H), (4, N, H + 1), (4, H), (N, H), (1, 4, N, H)],
    ids=["batch+1", "batch-1", "layers", "hidden", "2d", "2d-b", "4d"],
)
def test_hx_wrong_shape(cell, backend, shape):
    m = make(cell, backend, num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match=names("hx:") + ".*" + re.escape(str(shape))):
        m(x_tm(), np.zeros(shape))


@both_backends
@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("shape", [(4, N + 1, H), (3, N, H), (4, N, H - 1), (4, H)],
                         ids=["batch+1", "layers", "hidden", "2d"])
def test_lstm_hx_wrong_shape(backend, which, shape):
    m = make("lstm", backend, num_layers=2, bidirectional=True)
    hx = list(zero_hx(m))
    hx[which] = np.zeros(shape)
    with pytest.raises(ValueError, match=names(f"hx[{which}]") + ".*" + re.escape(str(shape))):
        m(x_tm(), tuple(hx))


@both_backends
@all_cells
@pytest.mark.parametrize("shape", [(2, 1, H), (2, N, H), (3, H), (2, H + 1), (2,)],
                         ids=["batched-1", "batched", "layers", "hidden", "1d"])
def test_hx_wrong_shape_unbatched(cell, backend, shape):
    m = make(cell, backend, num_layers=2)
    x = x_tm()[:, 0]
    good = zero_hx(m, unbatched=True)
    m(x, good)  # the right shape is (num_layers * num_directions, hidden_size)
    bad = np.zeros(shape)
    hx = (bad, good[1]) if cell == "lstm" else bad
    with pytest.raises(ValueError, match=r"^hx(\[0\] \(h0\))?:.*\(2, 4\).*" + re.escape(str(shape))):
        m(x, hx)


@both_backends
@pytest.mark.parametrize(
    "hx",
    [
        np.zeros((1, N, H)),
        (np.zeros((1, N, H)),),
        (np.zeros((1, N, H)),) * 3,
        [],
        "h0",
    ],
    ids=["array", "1-tuple", "3-tuple", "empty-list", "str"],
)
def test_lstm_hx_not_a_pair(backend, hx):
    m = make("lstm", backend)
    with pytest.raises(TypeError, match=names("hx: LSTM takes a tuple (h0, c0)")):
        m(x_tm(), hx)


@both_backends
def test_messages_describe_sequences_without_dumping_arrays(backend):
    m = make("lstm", backend)
    big = np.zeros((1, N, H))
    with pytest.raises(TypeError, match=names("hx: LSTM takes a tuple (h0, c0), got a tuple of length 3") + "$"):
        m(x_tm(), (big, big, big))
    y, _, cache = m.forward(x_tm())
    with pytest.raises(TypeError, match=r"got a list of length 1$"):
        m.backward(cache, y, [big])


@both_backends
def test_lstm_hx_pair_with_none(backend):
    m = make("lstm", backend)
    with pytest.raises(TypeError, match=names("hx[1]")):
        m(x_tm(), (np.zeros((1, N, H)), None))


@both_backends
@pytest.mark.parametrize("cell", ["rnn", "gru"])
@pytest.mark.parametrize("wrap", [tuple, list], ids=["tuple", "list"])
def test_hx_tuple_for_single_state_cells(cell, backend, wrap):
    m = make(cell, backend)
    with pytest.raises(TypeError, match=names("hx:")):
        m(x_tm(), wrap([np.zeros((1, N, H))]))
    with pytest.raises(TypeError, match=names("hx:")):
        m(x_tm(), wrap([np.zeros((1, N, H))] * 2))


@both_backends
@all_cells
def test_hx_bad_dtype(cell, backend):
    m = make(cell, backend)
    bad = np.zeros((1, N, H), dtype=np.complex128)
    hx = (bad, bad) if cell == "lstm" else bad
    with pytest.raises(TypeError, match=r"^hx(\[0\] \(h0\))?:.*complex128"):
        m(x_tm(), hx)


# ---------------------------------------------------------------------------------------------
# lengths


@both_backends
@all_cells
@pytest.mark.parametrize("lengths", [[0, T], [T, T + 1], [-1, 2], [3, 2**40]],
                         ids=["zero", "T+1", "negative", "huge"])
def test_lengths_out_of_range(cell, backend, lengths):
    m = make(cell, backend, bidirectional=True)
    with pytest.raises(ValueError, match=names("lengths:") + f".*1..{T}"):
        m(x_tm(), lengths=lengths)
    with pytest.raises(ValueError, match=names("lengths:")):
        m.forward(x_tm(), lengths=np.asarray(lengths, dtype=np.int64))


@both_backends
def test_lengths_out_of_range_uint64(backend):
    m = make("gru", backend)
    with pytest.raises(ValueError, match=names("lengths:")):
        m(x_tm(), lengths=np.array([2**63 + 5, 2], dtype=np.uint64))


@both_backends
@all_cells
@pytest.mark.parametrize("lengths", [[T], [T, T, T], [[T, T]], T, np.array([], np.int64), []],
                         ids=["short", "long", "2d", "scalar", "empty", "empty-list"])
def test_lengths_wrong_count(cell, backend, lengths):
    m = make(cell, backend)
    with pytest.raises(ValueError, match=names("lengths:") + f".*\\({N},\\)"):
        m(x_tm(), lengths=lengths)


@both_backends
def test_lengths_unbatched(backend):
    m = make("lstm", backend)
    x = x_tm()[:, 0]
    m(x, lengths=3)
    m(x, lengths=[3])
    with pytest.raises(ValueError, match=names("lengths:")):
        m(x, lengths=[3, 3])
    with pytest.raises(ValueError, match=names("lengths:")):
        m(x, lengths=T + 1)


@both_backends
@all_cells
@pytest.mark.parametrize(
    "lengths",
    [[3.0, 5.0], [True, True], np.array([3, 5], dtype=np.float32), ["3", "5"], [None, 3], 3.5],
    ids=["float", "bool", "float32", "str", "None", "float-scalar"],
)
def test_lengths_not_integers(cell, backend, lengths):
    m = make(cell, backend)
    with pytest.raises(TypeError, match=names("lengths:")):
        m(x_tm(), lengths=lengths)


# ---------------------------------------------------------------------------------------------
# Constructor arguments


@pytest.mark.parametrize("arg", ["input_size", "hidden_size", "num_layers"])
@pytest.mark.parametrize("value,error", [(0, ValueError), (-3, ValueError), (3.5, TypeError),
                                         (3.0, TypeError), (True, TypeError), ("4", TypeError),
                                         (None, TypeError), ([4], TypeError)],
                         ids=["0", "-3", "3.5", "3.0", "True", "str", "None", "list"])
@all_cells
def test_bad_sizes(cell, arg, value, error):
    kwargs = dict(input_size=I, hidden_size=H, num_layers=1)
    kwargs[arg] = value
    cls = {"rnn": rc.RNN, "lstm": rc.LSTM, "gru": rc.GRU}[cell]
    with pytest.raises(error, match=names(f"{arg}:")):
        cls(**kwargs)


@all_cells
def test_numpy_integer_sizes_are_accepted(cell):
    m = {"rnn": rc.RNN, "lstm": rc.LSTM, "gru": rc.GRU}[cell](np.int64(I), np.int32(H), num_layers=np.uint8(2))
    assert (m.input_size, m.hidden_size, m.num_layers) == (I, H, 2)
    assert type(m.hidden_size) is int


@all_cells
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.complex128, np.float16, "foo", object, 5, "int8", None],
                         ids=["int32", "int64", "complex128", "float16", "foo", "object", "int", "int8-str", "None"])
def test_bad_dtype(cell, dtype):
    with pytest.raises(TypeError, match=names("dtype:")):
        make(cell, dtype=dtype)


@all_cells
@pytest.mark.parametrize("dtype", [np.int32, "foo"])
def test_bad_dtype_in_astype(cell, dtype):
    m = make(cell)
    with pytest.raises(TypeError, match=names("dtype:")):
        m.astype(dtype)


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "TANH", "", None, 1])
def test_unknown_nonlinearity(nonlinearity):
    with pytest.raises(ValueError, match=names("nonlinearity:")):
        rc.RNN(I, H, nonlinearity=nonlinearity)


@all_cells
@pytest.mark.parametrize("flag", ["bias", "batch_first", "bidirectional"])
@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_flags_must_be_bool(cell, flag, value):
    with pytest.raises(TypeError, match=names(f"{flag}:")):
        make(cell, **{flag: value})


@pytest.mark.parametrize("seed,error", [(-1, ValueError), (1.5, TypeError), ("1", TypeError), (True, TypeError)])
def test_bad_seed(seed, error):
    with pytest.raises(error, match=names("seed:")):
        rc.GRU(I, H, seed=seed)


@all_cells
@pytest.mark.parametrize("backend", ["cuda", "CPP", "", None, 1, ["cpp"]])
def test_bad_backend_name(cell, backend):
    cls = {"rnn": rc.RNN, "lstm": rc.LSTM, "gru": rc.GRU}[cell]
    with pytest.raises(ValueError, match=names("backend:")):
        cls(I, H, backend=backend)
    m = make(cell)
    with pytest.raises(ValueError, match=names("backend:")):
        m.backend = backend
    assert m.backend == "cpp"
    if backend is not None:  # backend=None per call means "the model's backend"
        with pytest.raises(ValueError, match=names("backend:")):
            m(x_tm(), backend=backend)
        with pytest.raises(ValueError, match=names("backend:")):
            m.forward(x_tm(), backend=backend)


# ---------------------------------------------------------------------------------------------
# load_state_dict


def assert_params_equal(m, expected):
    current = m.state_dict()
    assert list(current) == list(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(current[name], value, err_msg=name)


def other_valid_state(m):
    """A valid state_dict whose every entry differs from m's: a partial load would show."""
    return {name: value + 1 for name, value in m.state_dict().items()}


@all_cells
def test_state_dict_missing_entry(cell):
    m = make(cell, num_layers=2, bidirectional=True)
    before = m.state_dict()
    sd = other_valid_state(m)
    del sd["bias_hh_l1_reverse"]
    with pytest.raises(ValueError, match=names("state_dict:") + ".*missing.*bias_hh_l1_reverse"):
        m.load_state_dict(sd)
    assert_params_equal(m, before)


@all_cells
def test_state_dict_extra_entry(cell):
    m = make(cell, num_layers=2)
    before = m.state_dict()
    sd = other_valid_state(m)
    sd["weight_ih_l2"] = np.zeros((m._gates * H, H))
    with pytest.raises(ValueError, match=names("state_dict:") + ".*unexpected.*weight_ih_l2"):
        m.load_state_dict(sd)
    assert_params_equal(m, before)


@all_cells
def test_state_dict_bias_entries_into_bias_free_model(cell):
    m = make(cell, bias=False)
    before = m.state_dict()
    sd = make(cell, bias=True).state_dict()
    with pytest.raises(ValueError, match=names("state_dict:") + ".*unexpected.*bias_ih_l0"):
        m.load_state_dict(sd)
    assert_params_equal(m, before)


@all_cells
@pytest.mark.parametrize(
    "name,shape",
    [("weight_hh_l1", (None, H + 1)), ("weight_ih_l0", "transposed"), ("weight_ih_l1_reverse", (None, I)),
     ("bias_ih_l0", (1, None)), ("bias_hh_l1_reverse", (None, 1)), ("weight_hh_l0", "flat"),
     ("bias_ih_l1", ())],
    ids=["hidden+1", "transposed", "layer1-input", "bias-2d", "bias-col", "flat", "scalar"],
)
def test_state_dict_misshaped_entry(cell, name, shape):
    m = make(cell, num_layers=2, bidirectional=True)
    before = m.state_dict()
    sd = other_valid_state(m)
    good = sd[name]
    gh = good.shape[0]
    if shape == "transposed":
        shape = good.shape[::-1]
    elif shape == "flat":
        shape = (good.size,)
    else:
        shape = tuple(gh if s is None else s for s in shape)
    sd[name] = np.zeros(shape)
    with pytest.raises(ValueError, match=names(f"state_dict[{name!r}]") + ".*" + re.escape(str(shape))):
        m.load_state_dict(sd)
    assert_params_equal(m, before)


@all_cells
@pytest.mark.parametrize(
    "make_bad",
    [lambda shape: np.zeros(shape, complex), lambda shape: np.zeros(shape, bool),
     lambda shape: np.zeros(shape, object), lambda shape: "abc", lambda shape: None],
    ids=["complex", "bool", "object", "str", "None"],
)
def test_state_dict_entry_not_real(cell, make_bad):
    m = make(cell, num_layers=2)
    before = m.state_dict()
    sd = other_valid_state(m)
    sd["weight_hh_l1"] = make_bad(sd["weight_hh_l1"].shape)  # the right shape, the wrong kind
    with pytest.raises(TypeError, match=names("state_dict['weight_hh_l1']")):
        m.load_state_dict(sd)
    assert_params_equal(m, before)


@pytest.mark.parametrize("bad", [None, [("weight_ih_l0", 1)], "weights", np.zeros(3)],
                         ids=["None", "list", "str", "array"])
def test_state_dict_not_a_mapping(bad):
    m = make("lstm")
    before = m.state_dict()
    with pytest.raises(TypeError, match=names("state_dict:")):
        m.load_state_dict(bad)
    assert_params_equal(m, before)


def test_state_dict_of_another_cell():
    m = make("lstm")
    before = m.state_dict()
    with pytest.raises(ValueError, match=names("state_dict['weight_ih_l0']")):
        m.load_state_dict(make("gru").state_dict())  # same names, 3H rows instead of 4H
    assert_params_equal(m, before)


@all_cells
def test_load_state_dict_writes_into_the_live_parameter_arrays(cell):
    """As torch copies into its Parameters: what parameters() handed out (to an optimizer, say)
    stays the model's weights after a load; a failed load leaves those arrays untouched."""
    m = make(cell, num_layers=2, bidirectional=True)
    live = m.parameters()
    arrays = dict(live)
    before = {name: value.copy() for name, value in live.items()}
    bad = other_valid_state(m)
    bad["weight_hh_l1_reverse"] = np.zeros((1, 1))
    with pytest.raises(ValueError):
        m.load_state_dict(bad)
    for name, value in arrays.items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    new = other_valid_state(m)
    m.load_state_dict(new)
    for name, value in m.parameters().items():
        assert value is arrays[name], name
        np.testing.assert_array_equal(value, new[name], err_msg=name)
    m.load_state_dict(m.parameters())  # loading a model's own live arrays is harmless
    for name, value in m.parameters().items():
        np.testing.assert_array_equal(value, new[name], err_msg=name)


def test_failed_load_keeps_model_usable_and_caches_valid():
    m = make("gru")
    y, h, cache = m.forward(x_tm())
    sd = other_valid_state(m)
    sd["weight_hh_l0"] = np.zeros((1, 1))
    with pytest.raises(ValueError):
        m.load_state_dict(sd)
    g = m.backward(cache, np.ones_like(y))  # nothing was loaded: the cache is still good
    assert g.input.shape == (T, N, I)
    y2, _ = m(x_tm())
    np.testing.assert_array_equal(y, y2)


# ---------------------------------------------------------------------------------------------
# backward


@both_backends
@all_cells
def test_backward_cache_from_another_model(cell, backend):
    m, other = make(cell, backend), make(cell, backend)
    y, _, cache = m.forward(x_tm())
    with pytest.raises(ValueError, match=names("cache:") + ".*another model"):
        other.backward(cache, y)


@both_backends
@all_cells
def test_backward_cache_from_another_architecture(cell, backend):
    m = make(cell, backend)
    other = make(cell, backend, num_layers=2, bidirectional=True)
    y, _, cache = other.forward(x_tm())
    with pytest.raises(ValueError, match=names("cache:")):
        m.backward(cache, y[..., :H])


@both_backends
@all_cells
def test_backward_after_weights_reloaded(cell, backend):
    m = make(cell, backend)
    y, _, cache = m.forward(x_tm())
    m.load_state_dict(m.state_dict())
    with pytest.raises(ValueError, match=names("cache:") + ".*reloaded"):
        m.backward(cache, y)
    y, _, cache = m.forward(x_tm())  # a fresh forward works again
    m.backward(cache, y)


@both_backends
@all_cells
def test_backward_after_astype_does_not_share_cache(cell, backend):
    m = make(cell, backend)
    y, _, cache = m.forward(x_tm())
    with pytest.raises(ValueError, match=names("cache:")):
        m.astype(np.float32).backward(cache, y)


@both_backends
@all_cells
def test_backward_non_cache_object(cell, backend):
    m = make(cell, backend)
    y, _, cache = m.forward(x_tm())
    for bad in (None, "cache", {"inner": 1}, cache.inner, (y, cache)):
        with pytest.raises(TypeError, match=names("cache:")):
            m.backward(bad, y)


@both_backends
@all_cells
def test_inference_call_keeps_no_cache(cell, backend):
    m = make(cell, backend)
    out = m(x_tm())
    assert len(out) == 2  # (output, state): no cache to misuse
    with pytest.raises(TypeError, match=names("cache:")):
        m.backward(out[1], out[0])


@both_backends
@all_cells
@pytest.mark.parametrize("batch_first", [False, True])
def test_backward_grad_output_wrong_shape(cell, backend, batch_first):
    m = make(cell, backend, batch_first=batch_first, bidirectional=True)
    x = x_tm()
    if batch_first:
        x = np.ascontiguousarray(x.transpose(1, 0, 2))
    y, _, cache = m.forward(x)
    bad_shapes = [y.shape[:-1] + (H,), y.shape[::-1], (y.shape[1], y.shape[0], y.shape[2]), y.shape[1:],
                  (1,) + y.shape]
    for shape in bad_shapes:
        with pytest.raises(ValueError, match=names("grad_output:") + ".*" + re.escape(str(shape))):
            m.backward(cache, np.zeros(shape))
    with pytest.raises(TypeError, match=names("grad_output:")):
        m.backward(cache, y.astype(np.complex128))
    with pytest.raises(TypeError, match=names("grad_output:")):
        m.backward(cache, "y")


@both_backends
@all_cells
def test_backward_grad_output_wrong_shape_unbatched(cell, backend):
    m = make(cell, backend)
    y, _, cache = m.forward(x_tm()[:, 0])
    with pytest.raises(ValueError, match=names("grad_output:")):
        m.backward(cache, y[:, None, :])
    with pytest.raises(ValueError, match=names("grad_output:")):
        m.backward(cache, y[None])


@both_backends
@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_backward_grad_state_wrong_shape(cell, backend):
    m = make(cell, backend, num_layers=2)
    y, h, cache = m.forward(x_tm())
    for shape in [(1, N, H), (2, N + 1, H), (2, N, H + 1), (2, H), (N, H)]:
        with pytest.raises(ValueError, match=names("grad_state:") + ".*" + re.escape(str(shape))):
            m.backward(cache, y, np.zeros(shape))
    for bad in [(h,), [h], (h, h)]:
        with pytest.raises(TypeError, match=names("grad_state:")):
            m.backward(cache, y, bad)
    with pytest.raises(TypeError, match=names("grad_state:")):
        m.backward(cache, y, h.astype(np.complex128))


@both_backends
@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_backward_grad_state_wrong_shape_unbatched(cell, backend):
    m = make(cell, backend, num_layers=2)
    y, h, cache = m.forward(x_tm()[:, 0])
    assert h.shape == (2, H)
    with pytest.raises(ValueError, match=names("grad_state:")):
        m.backward(cache, y, h[:, None, :])


@both_backends
def test_backward_lstm_grad_state(backend):
    m = make("lstm", backend, num_layers=2)
    y, (h, c), cache = m.forward(x_tm())
    for bad in [h, (h,), (h, c, c), [], "hc"]:
        with pytest.raises(TypeError, match=names("grad_state: LSTM takes a tuple")):
            m.backward(cache, y, bad)
    for which in (0, 1):
        for shape in [(1, N, H), (2, N - 1, H), (2, H)]:
            pair = [h, c]
            pair[which] = np.zeros(shape)
            with pytest.raises(ValueError, match=names(f"grad_state[{which}]") + ".*" + re.escape(str(shape))):
                m.backward(cache, y, tuple(pair))
    # Either half may be None (zero), as documented.
    g = m.backward(cache, y, (None, c))
    g2 = m.backward(cache, y, (np.zeros_like(h), c))
    np.testing.assert_array_equal(g.input, g2.input)


@both_backends
def test_backward_lstm_grad_state_unbatched(backend):
    m = make("lstm", backend)
    y, (h, c), cache = m.forward(x_tm()[:, 0])
    with pytest.raises(ValueError, match=names("grad_state[1]")):
        m.backward(cache, y, (h, c[:, None, :]))


# ---------------------------------------------------------------------------------------------
# The private compiled entry points guard the kernels themselves


def core_weights(model):
    """The model's parameters as _core takes them: a list in PyTorch's order."""
    return [model.parameters()[name] for name in param_names(model.num_layers, model.bidirectional, model.bias)]


class Core:
    """Arguments for _core.forward / _core.backward for a 2-layer bidirectional model."""

    def __init__(self, cell, dtype=np.float64):
        self.cell = cell
        self.m = make(cell, num_layers=2, bidirectional=True, dtype=dtype)
        self.config = self.m.config
        self.weights = core_weights(self.m)
        self.x = x_tm(dtype)
        self.h0 = np.zeros((4, N, H), dtype)
        self.c0 = np.zeros((4, N, H), dtype) if cell == "lstm" else None
        self.lengths = np.array([3, T], dtype=np.int64)

    def forward(self, **override):
        args = dict(weights=self.weights, x=self.x, h0=self.h0, c0=self.c0, lengths=self.lengths,
                    training=True)
        args.update(override)
        config = args.pop("config", self.config)
        return _core.forward(config, args["weights"], args["x"], args["h0"], args["c0"], args["lengths"],
                             args["training"])

    def backward(self, **override):
        y, h_n, c_n, cache = self.forward()
        args = dict(weights=self.weights, cache=cache, grad_y=np.ones_like(y), grad_h_n=np.ones_like(h_n),
                    grad_c_n=None if c_n is None else np.ones_like(c_n))
        args.update(override)
        return _core.backward(args["cache"], args["weights"], args["grad_y"], args["grad_h_n"], args["grad_c_n"])


@all_cells
def test_core_accepts_canonical_arguments(cell):
    core = Core(cell)
    y, h_n, c_n, cache = core.forward()
    assert y.shape == (T, N, 2 * H) and h_n.shape == (4, N, H)
    assert (c_n is None) == (cell != "lstm")
    grad_x, grad_h0, grad_c0, grads = core.backward()
    assert grad_x.shape == (T, N, I) and len(grads) == len(core.weights)
    _, _, _, none = core.forward(training=False)
    assert none is None


@all_cells
@pytest.mark.parametrize(
    "x,error,pattern",
    [
        (np.zeros((T, I)), ValueError, "x: expected 3 dimensions"),
        (np.zeros((T, N, I, 1)), ValueError, "x: expected 3 dimensions"),
        (np.zeros((T, N, I + 1)), ValueError, "x: expected shape"),
        (np.zeros((0, N, I)), ValueError, "x: expected T > 0"),
        (np.zeros((T, 0, I)), ValueError, "x:"),
        (np.zeros((T, N, I), np.int64), TypeError, "x: expected float32 or float64"),
        (np.zeros((T, N, I), np.complex128), TypeError, "x: expected float32 or float64"),
        (np.zeros((T, N, I), ">f8"), TypeError, "x: expected float32 or float64"),
        (np.zeros((T, N, I), np.float32), TypeError, "weights[0] (w_ih): expected dtype float32"),
        (np.zeros((I, N, T)).T, ValueError, "x: expected a C-contiguous array"),
        (np.zeros((T, 2 * N, I))[:, ::2], ValueError, "x: expected a C-contiguous array"),
    ],
    ids=["2d", "4d", "features", "T0", "N0", "int64", "complex", "big-endian", "float32",
         "fortran", "strided"],
)
def test_core_forward_bad_x(cell, x, error, pattern):
    core = Core(cell)
    states = {} if x.ndim == 3 and x.shape[1] == N else dict(h0=None, c0=None, lengths=None)
    with pytest.raises(error, match=names(pattern)):
        core.forward(x=x, **states)


@all_cells
def test_core_forward_x_not_an_array(cell):
    core = Core(cell)
    with pytest.raises(TypeError):
        core.forward(x="x")


@pytest.mark.parametrize("which", ["h0", "c0"])
@pytest.mark.parametrize(
    "make_bad,error,pattern",
    [
        (lambda: np.zeros((2, N, H)), ValueError, "expected shape (4, 2, 4)"),
        (lambda: np.zeros((4, N + 1, H)), ValueError, "expected shape (4, 2, 4)"),
        (lambda: np.zeros((4, N, H + 1)), ValueError, "expected shape (4, 2, 4)"),
        (lambda: np.zeros((4 * N * H,)), ValueError, "expected shape (4, 2, 4)"),
        (lambda: np.zeros((4, N, H), np.float32), TypeError, "expected dtype float64"),
        (lambda: np.zeros((4, H, N)).transpose(0, 2, 1), ValueError, "expected a C-contiguous array"),
        (lambda: "h", TypeError, "expected dtype float64"),
    ],
    ids=["layers", "batch", "hidden", "flat", "float32", "non-contiguous", "str"],
)
def test_core_forward_bad_states(which, make_bad, error, pattern):
    core = Core("lstm")
    with pytest.raises(error, match=names(f"{which}: {pattern}")):
        core.forward(**{which: make_bad()})


@pytest.mark.parametrize(
    "lengths,error,pattern",
    [
        (np.array([0, T]), ValueError, "outside 1..5"),
        (np.array([T + 1, T]), ValueError, "outside 1..5"),
        (np.array([-7, T]), ValueError, "outside 1..5"),
        (np.array([2**62, 1]), ValueError, "outside 1..5"),
        (np.array([T, T, T]), ValueError, "lengths: expected shape (2,)"),
        (np.array([[T, T]]), ValueError, "lengths: expected shape (2,)"),
        (np.array(T), ValueError, "lengths: expected shape (2,)"),
        (np.array([3, T], np.int32), TypeError, "lengths: expected int64"),
        (np.array([3.0, T]), TypeError, "lengths: expected int64"),
        (np.array([3, 9, T, 9])[::2], ValueError, "lengths: expected a C-contiguous array"),
    ],
    ids=["zero", "T+1", "negative", "huge", "count", "2d", "scalar", "int32", "float", "strided"],
)
@all_cells
def test_core_forward_bad_lengths(cell, lengths, error, pattern):
    core = Core(cell)
    with pytest.raises(error, match=re.escape(pattern)):
        core.forward(lengths=lengths)


@all_cells
def test_core_forward_bad_weights(cell):
    core = Core(cell)
    w = core.weights
    count = len(w)
    for bad in (w[:-1], w + [w[0]], [], w[:count // 2]):
        with pytest.raises(ValueError, match=names(f"weights: expected {count} arrays, got {len(bad)}")):
            core.forward(weights=bad)
    # weight arrays with the wrong shape, dtype or layout, at every position
    for i, good in enumerate(w):
        for bad, error, pattern in [
            (np.zeros(good.shape + (1,)), ValueError, "expected shape"),
            (np.zeros((good.shape[0] + 1,) + good.shape[1:]), ValueError, "expected shape"),
            (good.astype(np.float32), TypeError, "expected dtype float64"),
            (np.asfortranarray(good) if good.ndim == 2 else np.zeros(2 * good.size)[::2],
             ValueError, "expected a C-contiguous array"),
        ]:
            if bad.ndim == 2 and bad.flags.c_contiguous and pattern.startswith("expected a C"):
                continue  # a (k, 1) array is contiguous both ways
            weights = list(w)
            weights[i] = bad
            with pytest.raises(error, match=re.escape(pattern)):
                core.forward(weights=weights)
    with pytest.raises(TypeError):
        core.forward(weights=[None] * count)
    with pytest.raises(TypeError):
        core.forward(weights="not a list")


@all_cells
def test_core_forward_bad_config(cell):
    core = Core(cell)
    c = core.config
    name, i, h, layers, bidirectional, bias = c.cell, c.input_size, c.hidden_size, c.num_layers, c.bidirectional, c.bias
    for config, pattern in [
        (("rnn_sigmoid", i, h, layers, bidirectional, bias), "cell: expected one of"),
        (("", i, h, layers, bidirectional, bias), "cell: expected one of"),
        ((name, 0, h, layers, bidirectional, bias), "must be positive"),
        ((name, i, -h, layers, bidirectional, bias), "must be positive"),
        ((name, i, h, 0, bidirectional, bias), "must be positive"),
        ((name, i, h + 1, layers, bidirectional, bias), "expected shape"),
        ((name, i + 1, h, layers, bidirectional, bias), "expected shape"),
        ((name, i, h, layers + 1, bidirectional, bias), "weights: expected"),
        ((name, i, h, layers, not bidirectional, bias), "weights: expected"),
        ((name, i, h, layers, bidirectional, not bias), "weights: expected"),
        (("lstm" if cell != "lstm" else "gru", i, h, layers, bidirectional, bias), "expected shape"),
        ((name, i, 2**20, layers, bidirectional, bias), "expected shape"),
        ((name, i, 2**40, layers, bidirectional, bias), "the parameter count does not fit in 64 bits"),
    ]:
        with pytest.raises(ValueError, match=re.escape(pattern)):
            core.forward(config=_core.ModelConfig(*config))


def test_core_model_config_is_a_value():
    config = _core.ModelConfig("gru", 3, 5, num_layers=2, bidirectional=True, bias=False)
    assert (config.cell, config.input_size, config.hidden_size, config.num_layers) == ("gru", 3, 5, 2)
    assert config.bidirectional and not config.bias and config.gates == 3 and config.directions == 2
    assert config == _core.ModelConfig("gru", 3, 5, 2, True, False) != _core.ModelConfig("gru", 3, 5, 2, True, True)
    assert hash(config) == hash(_core.ModelConfig("gru", 3, 5, 2, True, False))
    assert repr(config) == ("ModelConfig(cell='gru', input_size=3, hidden_size=5, num_layers=2, "
                            "bidirectional=True, bias=False)")
    import copy
    import pickle
    assert pickle.loads(pickle.dumps(config)) == config == copy.deepcopy(config)
    with pytest.raises(AttributeError):
        config.hidden_size = 6


@all_cells
def test_core_backward_bad_cache(cell):
    core = Core(cell)
    for bad in (None, "cache", 3, core.m.forward(x_tm())[2]):  # the last is a Python ForwardCache
        with pytest.raises(TypeError, match=names("cache:")):
            core.backward(cache=bad)
    # a float32 cache with float64 weights
    core32 = Core(cell, dtype=np.float32)
    cache32 = core32.forward()[3]
    with pytest.raises(TypeError, match=re.escape("weights[0] (w_ih): expected dtype float32")):
        core.backward(cache=cache32)


@all_cells
def test_core_backward_cache_of_another_configuration(cell):
    # backward runs the cache's own configuration (it is not sent again), so weights of another
    # configuration are refused by their count or shapes before any kernel reads them.
    core = Core(cell)
    # uni-directional, 1 layer: a valid configuration whose weights are a prefix of the 2-layer bi
    small = make(cell, num_layers=1)
    _, _, _, small_cache = _core.forward(small.config, core_weights(small), x_tm(), None, None, None, True)
    assert small_cache.config == small.config
    with pytest.raises(ValueError, match=names("weights: expected 4 arrays, got 16")):
        core.backward(cache=small_cache)
    # same sizes, other cell: the kernels would read gates that are not there
    other = "gru" if cell != "gru" else "lstm"
    other_m = make(other, num_layers=2, bidirectional=True)
    _, _, _, other_cache = _core.forward(other_m.config, core_weights(other_m), x_tm(), None, None, None, True)
    with pytest.raises(ValueError, match=names("weights[0] (w_ih): expected shape")):
        core.backward(cache=other_cache)


@all_cells
def test_core_backward_bad_grads(cell):
    core = Core(cell)
    y_shape, s_shape = (T, N, 2 * H), (4, N, H)
    cases = [
        ("grad_y", np.zeros((T, N, H)), ValueError, "expected shape (5, 2, 8)"),
        ("grad_y", np.zeros((T - 1,) + y_shape[1:]), ValueError, "expected shape (5, 2, 8)"),
        ("grad_y", np.zeros(y_shape, np.float32), TypeError, "expected dtype float64"),
        ("grad_y", np.zeros(y_shape[::-1]).T, ValueError, "expected a C-contiguous array"),
        ("grad_h_n", np.zeros((2, N, H)), ValueError, "expected shape (4, 2, 4)"),
        ("grad_h_n", np.zeros(s_shape, np.int64), TypeError, "expected dtype float64"),
        ("grad_h_n", np.zeros(s_shape[::-1]).T, ValueError, "expected a C-contiguous array"),
    ]
    if cell == "lstm":
        cases += [
            ("grad_c_n", np.zeros((4, N + 1, H)), ValueError, "expected shape (4, 2, 4)"),
            ("grad_c_n", np.zeros(s_shape, np.float32), TypeError, "expected dtype float64"),
        ]
    for name, bad, error, pattern in cases:
        with pytest.raises(error, match=names(f"{name}: {pattern}")):
            core.backward(**{name: bad})
    # None means zero for every upstream gradient
    grad_x, *_ = core.backward(grad_y=None, grad_h_n=None, grad_c_n=None)
    np.testing.assert_array_equal(grad_x, 0.0)


@all_cells
def test_core_backward_bad_weights(cell):
    core = Core(cell)
    w = core.weights
    with pytest.raises(ValueError, match=names("weights: expected")):
        core.backward(weights=w[:-1])
    weights = list(w)
    weights[-1] = np.zeros(w[-1].shape + (2,))
    with pytest.raises(ValueError, match="expected shape"):
        core.backward(weights=weights)
    weights = [a.astype(np.float32) for a in w]
    with pytest.raises(TypeError, match="expected dtype float64"):
        core.backward(weights=weights)


def test_core_set_num_threads_rejects_nonpositive():
    with pytest.raises(ValueError, match=names("num_threads:")):
        rc.set_num_threads(0)


# ---------------------------------------------------------------------------------------------
# What is accepted, and converted


@both_backends
@all_cells
@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.uint8, np.int8])
def test_integer_x_is_accepted_and_converted(cell, backend, int_dtype):
    m = make(cell, backend, dtype=np.float32, bidirectional=True)
    xi = (np.arange(T * N * I).reshape(T, N, I) % 5).astype(int_dtype)
    y, state = m(xi)
    y_ref, _ = m(xi.astype(np.float32))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, y_ref)
    y_list, _ = m(xi.tolist())  # nested Python ints too
    np.testing.assert_array_equal(y_list, y_ref)
    y_fwd, _, cache = m.forward(xi)
    g = m.backward(cache, np.ones(y_fwd.shape, np.int64))  # integer upstream gradients as well
    assert g.input.dtype == np.float32 and g.input.shape == xi.shape


@both_backends
@all_cells
@pytest.mark.parametrize("batch_first", [False, True])
def test_non_contiguous_arrays_equal_their_contiguous_copies(cell, backend, batch_first):
    m = make(cell, backend, batch_first=batch_first, num_layers=2, bidirectional=True)
    base = np.random.default_rng(5).standard_normal((I, T, N) if batch_first else (I, N, T))
    x = base.T  # a (N, T, I) or (T, N, I) view in Fortran order
    assert not x.flags.c_contiguous
    xc = np.ascontiguousarray(x)
    hx_view = np.random.default_rng(6).standard_normal((H, N, 4)).T  # (4, N, H), Fortran order
    hx = (hx_view, hx_view[::-1]) if cell == "lstm" else hx_view
    hxc = tuple(np.ascontiguousarray(h) for h in hx) if cell == "lstm" else np.ascontiguousarray(hx)
    lengths = np.array([T, 9, 3, 9])[::2]  # a strided view: [T, 3]
    assert not lengths.flags.c_contiguous

    y, s, cache = m.forward(x, hx, lengths)
    yc, sc, cachec = m.forward(xc, hxc, np.ascontiguousarray(lengths))
    # Not bitwise: the compiled kernels' vectorised tanh/logistic and reductions may round the
    # last bit differently depending on the alignment of the arrays they allocate.
    np.testing.assert_allclose(y, yc, rtol=1e-13, atol=1e-15)
    for a, b in zip(s if cell == "lstm" else [s], sc if cell == "lstm" else [sc]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)

    grad_y = np.random.default_rng(7).standard_normal(y.shape[::-1]).T  # non-contiguous
    g = m.backward(cache, grad_y)
    gc = m.backward(cachec, np.ascontiguousarray(grad_y))
    np.testing.assert_allclose(g.input, gc.input, rtol=1e-13, atol=1e-15)
    for name in g.params:
        np.testing.assert_allclose(g.params[name], gc.params[name], rtol=1e-13, atol=1e-15, err_msg=name)


@both_backends
@all_cells
def test_float64_input_into_float32_model_is_cast_to_float32(cell, backend):
    """The chosen behaviour: input is converted to the model's dtype (never the model to the
    input's), so a float32 model returns float32 for float64 input, equal to casting first."""
    m = make(cell, backend, dtype=np.float32)
    x64 = x_tm(np.float64)
    hx64 = zero_hx(make(cell, dtype=np.float64))
    y, state = m(x64, hx64)
    y_ref, _ = m(x64.astype(np.float32))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, y_ref)
    for s in (state if cell == "lstm" else (state,)):
        assert s.dtype == np.float32
    y, _, cache = m.forward(x64)
    g = m.backward(cache, np.ones(y.shape, np.float64))
    assert g.input.dtype == np.float32
    assert all(v.dtype == np.float32 for v in g.params.values())


@both_backends
@all_cells
def test_float32_input_into_float64_model_is_cast_to_float64(cell, backend):
    m = make(cell, backend, dtype=np.float64)
    x32 = x_tm(np.float32)
    y, _ = m(x32)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, m(x32.astype(np.float64))[0])


@both_backends
def test_torch_tensors_are_accepted(backend):
    torch = pytest.importorskip("torch")
    m = make("lstm", backend)
    x = x_tm()
    h = np.random.default_rng(1).standard_normal((1, N, H))
    xt = torch.tensor(x, requires_grad=True)  # detached, not refused
    y, _ = m(xt, (torch.from_numpy(h), torch.from_numpy(h)), torch.tensor([3, T]))
    y_ref, _ = m(x, (h, h), [3, T])
    np.testing.assert_array_equal(y, y_ref)


@both_backends
@all_cells
def test_model_still_works_after_every_kind_of_refusal(cell, backend):
    m = make(cell, backend)
    y_before, _ = m(x_tm())
    for bad in (lambda: m(np.zeros((T, N, I + 1))), lambda: m(x_tm(), lengths=[0, 1]),
                lambda: m.load_state_dict({}), lambda: m.backward("cache", None)):
        with pytest.raises((ValueError, TypeError)):
            bad()
    y_after, _ = m(x_tm())
    np.testing.assert_array_equal(y_before, y_after)


# ------------------------------------------------------------------ sizes beyond what can exist
# (issue 14, defect 5): refused up front with a message naming the size, never a NumPy or pybind11
# error from deep inside, and never after minutes of allocating.


@pytest.mark.parametrize("arg", ["input_size", "hidden_size", "num_layers"])
@pytest.mark.parametrize("value", [2**63, 2**64, 10**40])
def test_sizes_beyond_64_bits_name_the_argument_and_the_limit(arg, value):
    kwargs = dict(input_size=I, hidden_size=H, num_layers=1)
    kwargs[arg] = value
    with pytest.raises(ValueError, match=names(f"{arg}: expected at most {2**63 - 1}") + rf".*got {value}$"):
        rc.LSTM(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(hidden_size=2**62), dict(hidden_size=2**31), dict(input_size=2**62),
                                    dict(num_layers=10**12), dict(num_layers=2**62)])
def test_models_beyond_memory_are_refused_before_allocating(kwargs):
    import tracemalloc

    args = dict(input_size=I, hidden_size=H, num_layers=1) | kwargs
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=r"^GRU\(.*\) \(\d+ parameters in \d+ arrays\) needs \d+ bytes"):
            rc.GRU(**args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated before the MemoryError"


def test_a_hundred_million_layers_are_refused_at_once(monkeypatch):
    # The case: RNN(1, 1, num_layers=10**8) spent 30 s and 6 GB before its MemoryError.
    # Its 4e8 arrays need ~160 GB of Python objects; the machine's memory is pinned at 16 GiB so
    # that the verdict does not depend on where the test runs.
    import tracemalloc

    from rnncore import _limits

    monkeypatch.setattr(_limits, "physical_memory_bytes", lambda: 16 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=r"RNN\(1, 1, num_layers=100000000\).*more than this machine's memory \(16 GiB\)"):
            rc.RNN(1, 1, num_layers=10**8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_the_parameter_count_is_exact_for_huge_stacks():
    assert rc.parameter_count("rnn", 1, 1, num_layers=10**8) == 4 * 10**8
    assert rc.parameter_count("lstm", 3, 5, num_layers=3, bidirectional=True) == \
        rc.LSTM(3, 5, num_layers=3, bidirectional=True).num_parameters()


@pytest.mark.parametrize("call, pattern", [
    (lambda: _core.forward_flops(2, 8, 2**62, 1, False, 1, 1), r"hidden_size = 4611686018427387904.*does not fit in 64 bits"),
    (lambda: _core.wavefront_threads(2, 8, 64, 2, False, 2**40, 2**40), r"steps \* batch .* does not fit in 64 bits"),
    (lambda: _core.time_loop_split(2, 64, 2**40, 2**20), r"steps \* batch \* the widest row"),
    (lambda: _core.StreamF64.bytes_needed(3, 8, 64, 1, 2**61), r"batch_size \* "),
])
def test_the_compiled_core_refuses_sizes_that_overflow(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
