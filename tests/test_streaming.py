"""model.stream(): frame-by-frame inference against the whole-sequence call."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

import rnncore as rc
from rnncore import _core

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


# step is a C function (the binding's fast_step, with the stream's general step as its fallback):
# it runs the C++ step itself on frames that need nothing done (a C-contiguous, aligned,
# native-order array of the stream's dtype and exact shape, and such an out) and hands
# everything else to the general way. Both give the same bits, for 1-D and 2-D frames, batch 1
# and 3, hidden sizes with steps of their own (16, 64) and without (24), state carried.
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("hidden_size", [16, 24, 64])
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fast_step_gives_what_the_general_step_gives(cell, hidden_size, batch_size, dtype):
    model = make(cell, hidden_size=hidden_size, num_layers=2, dtype=dtype)
    fast, general = model.stream(batch_size), model.stream(batch_size)
    shape = (5,) if batch_size == 1 else (batch_size, 5)
    x = frames((12, *shape), dtype=dtype)
    x = np.concatenate([x, x[:6]])
    out = np.empty((*shape[:-1], hidden_size), dtype)
    bare = fast._impl.fast_step()  # the C function without a fallback
    for t in range(18):
        if t == 6:
            fast.reset()
            general.reset()
        # each frame through the C function alone, then step called each way it can be
        call = [lambda: bare(x[t], out), lambda: fast.step(x[t], out=out),
                lambda: fast.step(x[t], out), lambda: fast.step(x_t=x[t], out=out)][t % 4]
        assert call() is out
        np.testing.assert_array_equal(out, general.step(x[t % 12].tolist()))  # a list: the general way
    np.testing.assert_array_equal(np.stack(split_state(model, fast.state)),
                                  np.stack(split_state(model, general.state)))


def test_frames_the_fast_step_does_not_take_go_the_general_way():
    model = make("lstm")
    stream = model.stream(1)
    x, out = frames(5), np.empty(24, np.float32)
    big_endian = x.astype(">f4")
    misaligned = np.frombuffer(np.zeros(4 * 5 + 1, np.uint8).data, np.uint8)[1:].view(np.float32)
    misaligned[:] = x
    read_only = np.empty(24, np.float32)
    read_only.flags.writeable = False
    declined = [(x.astype(np.float64), out), (big_endian, out), (misaligned, out), (x[None, None], out),
                (x, np.empty(24)), (x, read_only), (x, np.empty((1, 1, 24), np.float32)),
                (x.tolist(), out), (x, None), (np.empty((2, 5), np.float32)[:, 0], out)]
    bare = stream._impl.fast_step()  # without a fallback it says None where step goes the general way
    for args in declined:
        assert bare(*args) is None
    assert bare(x) is None and bare(x_t=x) is None
    reference = model.stream(1)
    for frame in (big_endian, misaligned):
        np.testing.assert_array_equal(stream.step(frame, out=out), reference.step(x))
    with pytest.raises(ValueError, match="read-only"):
        stream.step(x, out=read_only)
    for args, kwargs in [((x, out, out), {}), ((x,), {"bogus": out}), ((), {"out": out}), ((x,), {"x_t": x})]:
        with pytest.raises(TypeError, match="step: expected"):
            bare(*args, **kwargs)
        with pytest.raises(TypeError, match=r"Stream\.step\(\)"):
            stream.step(*args, **kwargs)


def test_step_is_a_c_function_that_outlives_its_stream_without_a_cycle():
    import gc
    import inspect

    model = make("gru")
    stream = model.stream(1)
    assert str(inspect.signature(stream.step)) == "(x_t, out=None)"
    x, out = frames((2, 5)), np.empty(24, np.float32)
    reference = model.stream(1)
    want = [reference.step(x[0]), reference.step(x[1])]
    step = model.stream(1).step  # the stream is gone at once; its step keeps the C++ stream
    np.testing.assert_array_equal(step(x[0], out), want[0])  # the C function's own path
    np.testing.assert_array_equal(step(x[1].tolist()), want[1])  # the general way
    gc.collect()
    gc.disable()
    try:  # no cycle: a stream goes when its last reference does, without the garbage collector
        before = len(gc.get_objects())
        for _ in range(20):
            model.stream(1).step(x[0])
        assert len(gc.get_objects()) - before < 20
    finally:
        gc.enable()


def test_the_fast_step_releases_the_gil_on_large_models():
    # LSTM 1 -> 256: 4 * 256 * 257 multiply-adds, above the binding's 2e5 threshold.
    model = make("lstm", input_size=1, hidden_size=256)
    stream, reference = model.stream(1), model.stream(1)
    x, out = frames(1), np.empty(256, np.float32)
    assert stream.step(x, out=out) is out
    np.testing.assert_array_equal(out, reference.step(x))


def test_step_with_out_allocates_nothing():
    tracemalloc = pytest.importorskip("tracemalloc")
    import itertools

    for cell in ("lstm", "gru"):
        stream = make(cell, hidden_size=16).stream(1)
        x, out = frames(5), np.empty(16, np.float32)
        tracemalloc.start()
        try:
            for _ in itertools.repeat(None, 10):
                stream.step(x, out=out)
            steps = itertools.repeat(None, 500)  # (range would allocate its ints past 256)
            tracemalloc.reset_peak()
            held, _ = tracemalloc.get_traced_memory()
            for _ in steps:
                stream.step(x, out=out)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak == held, f"{cell}: step(x, out=) allocated {peak - held} bytes"


@pytest.mark.parametrize("touch_bytes", [0, 64, 4096])
def test_time_steps_runs_the_steps_it_times(touch_bytes):
    """bench/python_step.py's C++ loop: the same frames as step, whatever is touched between."""
    model = make("lstm", hidden_size=16)
    timed, stepped = model.stream(1), model.stream(1)
    x, out = frames(5), np.empty(16, np.float32)
    seconds = timed._impl.time_steps(x, out, 7, touch_bytes)
    assert seconds > 0
    for _ in range(7):
        expected = stepped.step(x)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="touch_bytes must be in 0..2"):
        timed._impl.time_steps(x, out, 1, -1)


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


# ------------------------------------------------------------------ sizes (issue 14, defect 2)
@pytest.mark.parametrize("batch_size, row", [(2**62, 3), (2**62 + 1, 1000)])
def test_a_batch_size_whose_arrays_overflow_is_refused(batch_size, row):
    # batch_size * a row's values wrapped around in 64 bits: the stream got a tiny buffer and
    # reset() wrote past it (a segfault, or a corrupt heap). In a child process, so that the old
    # behaviour fails this test instead of killing the test run.
    code = (
        "import rnncore as rc\n"
        "try:\n"
        f"    s = rc.LSTM(8, 64).stream({batch_size})\n"
        f"    s.reset([{row}])\n"
        "except ValueError as e:\n"
        "    print('ValueError:', e)\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.startswith("ValueError:") and "batch_size" in child.stdout, child.stdout


@pytest.mark.parametrize("batch_size", [2**63, 2**64, 10**30])
def test_a_batch_size_beyond_64_bits_names_the_limit(batch_size):
    with pytest.raises(ValueError, match=rf"batch_size: expected at most {2**63 - 1} .*got {batch_size}"):
        make("lstm").stream(batch_size)


def test_a_batch_size_beyond_memory_is_refused_before_allocating():
    with pytest.raises(MemoryError, match=r"stream\(batch_size=1099511627776\) of LSTM\(5, 24\) needs \d+ bytes"):
        make("lstm").stream(2**40)


def test_the_compiled_stream_names_what_it_could_not_allocate():
    # rnncore._core directly, past the Python check: the C++ AllocationError (a std::bad_alloc).
    model = make("lstm")
    weights = [model.parameters()[name] for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
    with pytest.raises(MemoryError, match=r"cannot allocate \d+ bytes for a Stream of batch_size = 1099511627776"):
        _core.StreamF32(2, 5, 24, 1, True, weights, 2**40)
    with pytest.raises(ValueError, match=r"batch_size \* .* does not fit in 64 bits"):
        _core.StreamF32.bytes_needed(2, 5, 24, 1, 2**62)


def test_threads_beyond_the_core_limit_are_a_clear_error():
    with pytest.raises(ValueError, match=rf"threads: expected at most {2**31 - 1}"):
        make("gru").stream(1, threads=2**40)


# ------------------------------------------------------------------ threads (issue 14, defect 3)
def _replay_interleaving(model, batch, histories):
    """The successful calls of each thread, [(chunk, y), ...] in that thread's order, replayed on a
    fresh stream in an order that interleaves the threads: True when every y comes back bit for
    bit (calls never overlapped and refused calls changed nothing). Returns the replay stream."""
    replay = model.stream(batch)
    position = [0] * len(histories)
    while any(p < len(h) for p, h in zip(position, histories)):
        state = replay.state
        for thread, history in enumerate(histories):
            if position[thread] == len(history):
                continue
            chunk, y = history[position[thread]]
            replay.state = state
            if np.array_equal(replay.step_many(chunk), y):
                position[thread] += 1
                break
        else:
            return None  # no thread's next call follows from this state: corrupted
    return replay


def test_concurrent_calls_on_one_stream_raise_and_never_corrupt():
    # H = 256: step releases the GIL too. One thread steps chunks, the other single frames; they
    # overlap (asserted), and every call that was not refused must be what some serial order of
    # the successful calls gives.
    model = make("lstm", input_size=16, hidden_size=256)
    stream = model.stream(2)
    start = threading.Barrier(2)
    stop = threading.Event()
    histories = [[], []]
    refusals = [[], []]

    def run(thread):
        rng = np.random.default_rng(100 + thread)
        start.wait()
        for _ in range(400):
            if stop.is_set():
                break
            try:
                if thread == 0:
                    chunk = rng.standard_normal((32, 2, 16)).astype(np.float32)
                    histories[0].append((chunk, stream.step_many(chunk)))
                else:
                    frame = rng.standard_normal((2, 16)).astype(np.float32)
                    histories[1].append((frame[None], stream.step(frame)[None]))
            except RuntimeError as error:
                refusals[thread].append(str(error))
                if len(refusals[0]) + len(refusals[1]) >= 10 and len(histories[thread]) >= 3:
                    stop.set()

    workers = [threading.Thread(target=run, args=(t,)) for t in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    messages = refusals[0] + refusals[1]
    assert messages, "the two threads never overlapped"
    assert all("being used by another thread" in m and "one stream per thread, or a lock" in m for m in messages)
    replay = _replay_interleaving(model, 2, histories)
    assert replay is not None, "an output matches no serial order of the calls"
    for got, want in zip(split_state(model, stream.state), split_state(model, replay.state)):
        np.testing.assert_array_equal(got, want)


def test_every_call_of_a_busy_stream_is_refused_and_changes_nothing():
    model = make("lstm", input_size=16, hidden_size=256)
    stream = model.stream(2)
    long_chunk = frames((3000, 2, 16))
    serial = model.stream(2)
    serial_y = serial.step_many(long_chunk)
    calls = {
        "step": lambda: stream.step(frames((2, 16))),
        "step_many": lambda: stream.step_many(frames((2, 2, 16))),
        "reset": lambda: stream.reset(),
        "reset_rows": lambda: stream.reset([1]),
        "get_state": lambda: stream.state,
        "set_state": lambda: setattr(stream, "state", (np.ones((1, 2, 256)), np.ones((1, 2, 256)))),
    }
    def run_long_chunk(output):
        while True:  # the probe's get_state below can hold the stream as this call begins
            try:
                return output.append(stream.step_many(long_chunk))
            except RuntimeError:
                continue

    for _ in range(20):  # a round: every call while a long step_many from the zero state runs
        stream.reset()
        output = []
        worker = threading.Thread(target=run_long_chunk, args=(output,))
        worker.start()
        inside = False
        while worker.is_alive() and not inside:  # get_state changes nothing, refused or not
            try:
                stream.state
            except RuntimeError:
                inside = True
        refused = set()
        for name, call in calls.items():
            try:
                call()
            except RuntimeError as error:
                assert "one stream per thread, or a lock" in str(error)
                refused.add(name)
        worker.join()
        if refused == set(calls):
            break
    assert refused == set(calls), "the calls never overlapped the long step_many"
    # Refused calls changed nothing: the long chunk ran as if alone.
    np.testing.assert_array_equal(output[0], serial_y)
    for got, want in zip(stream.state, serial.state):
        np.testing.assert_array_equal(got, want)


def test_one_stream_per_thread_runs_concurrently_and_matches_serial_bitwise():
    model = make("gru", input_size=16, hidden_size=256, num_layers=2)
    chunks = [frames((40, 3, 16), seed=s) for s in range(4)]
    serial = [model.stream(3).step_many(chunk) for chunk in chunks]
    results = [None] * len(chunks)

    def run(i):
        stream = model.stream(3)
        results[i] = np.concatenate([stream.step_many(chunks[i][:20]), np.stack([stream.step(f) for f in chunks[i][20:]])])

    workers = [threading.Thread(target=run, args=(i,)) for i in range(len(chunks))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for got, want in zip(results, serial):
        np.testing.assert_array_equal(got, want)
