"""model.stream(): frame-by-frame inference against the whole-sequence call."""

from __future__ import annotations

import numpy as np
import pytest

import rnncore as rc

CELLS = {
    "rnn_tanh": lambda *a, **k: rc.RNN(*a, **k),
    "rnn_relu": lambda *a, **k: rc.RNN(*a, nonlinearity="relu", **k),
    "lstm": lambda *a, **k: rc.LSTM(*a, **k),
    "gru": lambda *a, **k: rc.GRU(*a, **k),
}


def make(cell, input_size=5, hidden_size=24, num_layers=1, **kwargs):
    kwargs.setdefault("seed", 0)
    return CELLS[cell](input_size, hidden_size, num_layers, **kwargs)


def frames(shape, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def split_state(model, state):
    return state if model.cell == "lstm" else (state,)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_step_matches_whole_sequence_float32(cell, num_layers, bias):
    model = make(cell, num_layers=num_layers, bias=bias)
    x = frames((40, 3, 5))
    y, state = model(x)
    stream = model.stream(batch_size=3)
    ys = np.stack([stream.step(x[t]) for t in range(len(x))])
    assert ys.shape == y.shape and ys.dtype == np.float32
    np.testing.assert_allclose(ys, y, rtol=1e-6, atol=1e-6)
    for got, want in zip(split_state(model, stream.state), split_state(model, state)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_step_matches_whole_sequence_float64(cell):
    model = make(cell, num_layers=2, dtype=np.float64)
    x = frames((30, 2, 5), dtype=np.float64)
    y, _ = model(x)
    stream = model.stream(2)
    np.testing.assert_allclose(stream.step_many(x), y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_initial_state_and_state_round_trip(cell):
    model = make(cell, num_layers=2)
    x = frames((12, 2, 5))
    rng = np.random.default_rng(3)
    hx = tuple(rng.standard_normal((2, 2, 24)).astype(np.float32) * 0.5 for _ in range(2 if cell == "lstm" else 1))
    hx = hx if cell == "lstm" else hx[0]
    y, _ = model(x, hx)
    stream = model.stream(2)
    stream.state = hx
    np.testing.assert_allclose(stream.step_many(x), y, atol=1e-6)
    saved = stream.state
    after = stream.step(x[0])
    stream.state = saved
    np.testing.assert_array_equal(stream.step(x[0]), after)


def test_unbatched_frames_and_state():
    model = make("lstm", num_layers=2)
    x = frames((20, 5))
    y, (h, c) = model(x)
    stream = model.stream()
    ys = np.stack([stream.step(frame) for frame in x])
    assert ys.shape == (20, 24)
    np.testing.assert_allclose(ys, y, atol=1e-6)
    assert stream.state[0].shape == (2, 1, 24)  # always batched
    np.testing.assert_allclose(stream.state[0][:, 0], h, atol=1e-6)
    stream.state = (h, c)  # (L, H) is taken when batch_size is 1
    np.testing.assert_array_equal(stream.state[1][:, 0], c)
    np.testing.assert_allclose(model.stream().step_many(x), y, atol=1e-6)


def test_rows_are_bit_identical_whatever_the_batch():
    model = make("gru", num_layers=2)
    x = frames((15, 4, 5))
    batched = model.stream(4).step_many(x)
    for b in range(4):
        np.testing.assert_array_equal(model.stream(1).step_many(x[:, b]), batched[:, b])


def test_step_many_is_bit_identical_to_step():
    model = make("lstm", num_layers=2)
    x = frames((10, 3, 5))
    one = model.stream(3)
    np.testing.assert_array_equal(model.stream(3).step_many(x), np.stack([one.step(f) for f in x]))


def test_reset_rows_restarts_only_those_rows():
    model = make("lstm")
    x = frames((20, 3, 5))
    stream = model.stream(3)
    stream.step_many(x[:10])
    h_before = stream.state[0].copy()
    stream.reset([1])
    h, c = stream.state
    np.testing.assert_array_equal(h[:, 1], 0)
    np.testing.assert_array_equal(c[:, 1], 0)
    np.testing.assert_array_equal(h[:, [0, 2]], h_before[:, [0, 2]])
    # Row 1 now runs as a fresh stream fed from frame 10 on; rows 0 and 2 as if nothing happened.
    tail = stream.step_many(x[10:])
    np.testing.assert_array_equal(tail[:, 1], model.stream(1).step_many(x[10:, 1]))
    np.testing.assert_array_equal(tail[:, 0], model.stream(1).step_many(x[:, 0])[10:])
    stream.reset(np.array([True, False, True]))
    assert not stream.state[0][:, [0, 2]].any() and stream.state[0][:, 1].any()
    stream.reset(2)
    stream.reset()
    assert not stream.state[0].any()


def test_out_is_written_and_returned():
    model = make("gru")
    stream, reference = model.stream(2), model.stream(2)
    out = np.empty((2, 24), np.float32)
    x = frames((2, 5))
    assert stream.step(x, out=out) is out
    np.testing.assert_array_equal(out, reference.step(x))
    chunk_out = np.empty((3, 2, 24), np.float32)
    assert stream.step_many(frames((3, 2, 5)), out=chunk_out) is chunk_out


def test_inputs_are_converted_like_the_layers_do():
    model = make("rnn_tanh")
    x = frames((4, 3, 5))
    expected = model.stream(3).step_many(x)
    stream = model.stream(3)
    got = [stream.step(x[0].tolist()), stream.step(x[1].astype(np.float64)),
           stream.step(np.asfortranarray(x[2])), stream.step(x[3, ::-1][::-1])]
    np.testing.assert_array_equal(np.stack(got), expected)


def test_torch_tensor_frames():
    torch = pytest.importorskip("torch")
    model = make("lstm")
    x = frames((3, 2, 5))
    np.testing.assert_array_equal(model.stream(2).step_many(torch.from_numpy(x)), model.stream(2).step_many(x))


def test_stream_keeps_the_weights_it_was_made_with():
    model = make("lstm")
    stream = model.stream()
    before = model.stream().step(frames(5))
    model.parameters()["weight_ih_l0"][:] = 0
    np.testing.assert_array_equal(stream.step(frames(5)), before)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda s: s.step(np.zeros((3, 4), np.float32)), ValueError, r"x_t: expected shape \(3, 5\), got \(3, 4\)"),
        (lambda s: s.step(np.zeros((2, 5), np.float32)), ValueError, r"x_t: expected shape \(3, 5\)"),
        (lambda s: s.step(np.zeros(5, np.float32)), ValueError, r"x_t: expected shape \(3, 5\), got \(5,\)"),
        (lambda s: s.step(np.zeros((3, 5), bool)), TypeError, "x_t"),
        (lambda s: s.step("frame"), TypeError, "x_t"),
        (lambda s: s.step(np.zeros((3, 5), np.float32), out=np.zeros((3, 24))), TypeError, "out: expected dtype float32"),
        (lambda s: s.step(np.zeros((3, 5), np.float32), out=np.zeros((3, 23), np.float32)), ValueError, "out: expected shape"),
        (lambda s: s.step(np.zeros((3, 5), np.float32), out=np.zeros((24, 3), np.float32).T), ValueError, "C-contiguous"),
        (lambda s: s.step_many(np.zeros((4, 3, 6), np.float32)), ValueError, r"chunk: expected shape \(4, 3, 5\)"),
        (lambda s: s.step_many(np.zeros(5, np.float32)), ValueError, "chunk"),
        (lambda s: setattr(s, "state", np.zeros((1, 3, 24))), TypeError, r"tuple \(h, c\)"),
        (lambda s: setattr(s, "state", (np.zeros((1, 2, 24)), np.zeros((1, 3, 24)))), ValueError,
         r"state\[0\] \(h\): expected shape \(1, 3, 24\)"),
        (lambda s: s.reset([3]), ValueError, r"rows: expected indices in 0..2"),
        (lambda s: s.reset([-1]), ValueError, "rows"),
        (lambda s: s.reset([True, False]), ValueError, r"mask needs shape \(3,\)"),
        (lambda s: s.reset([0.5]), TypeError, "rows"),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, message):
    stream = make("lstm").stream(3)
    state = stream.state
    with pytest.raises(error, match=message):
        call(stream)
    for got, want in zip(stream.state, state):
        np.testing.assert_array_equal(got, want)


def test_bad_construction():
    with pytest.raises(ValueError, match="bidirectional"):
        make("gru", bidirectional=True).stream()
    for bad, error in ((0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="batch_size"):
            make("gru").stream(bad)
        with pytest.raises(error, match="threads"):
            make("gru").stream(1, threads=bad)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_threaded_stream_is_bit_identical_to_one_thread(cell):
    model = make(cell, input_size=7, hidden_size=37, num_layers=2)
    for batch in (1, 3):
        chunk = frames((6, batch, 7), seed=batch)
        one, two = model.stream(batch), model.stream(batch, threads=2)
        assert (one.threads, two.threads) == (1, 2)
        np.testing.assert_array_equal(two.step_many(chunk), one.step_many(chunk))
        np.testing.assert_array_equal(two.step(chunk[0]), one.step(chunk[0]))
        for got, want in zip(split_state(model, two.state), split_state(model, one.state)):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="one array h"):
        make("gru").stream().state = (np.zeros((1, 1, 24)),)
