"""The fast paths of the compiled kernels, each against the NumPy reference.

The kernels (except for a single step of at most 4 sequences, which uses the weights as they
are) pack W_hh / W_ih into column panels two SIMD packets wide (32 floats with AVX-512,
16 with AVX2; half that in float64): all G*H gate columns as one run of panels, except W_hh
when the time loop splits over threads (one run per gate, so that a thread owns the same units
in every gate). They run row blocks of up to 8 (AVX-512) or 6 rows, cut as evenly as possible,
and a separate kernel for 1-3 rows that walks several panels at once; they cut the depth into
slices (128 float rows with AVX-512), cut the T*N rows of the input product into blocks of 96,
run the pointwise cell math on whole packets with an Eigen tail, and split the time loop over
threads either by sequences (each thread all units of some of the N sequences, no barrier) or by
slots (SIMD packets of hidden units, so a thread's share may start mid-panel; a panel's last
packet that holds no unit is skipped). The sizes below straddle every one of those edges: hidden sizes
below, at and above a packet and a panel (and gate runs whose panels end mid-gate), batches of
1-3 and around 6, 8 and 16, input widths that are not multiples of anything, depths above one
slice, T*N across row blocks. tests/cpp/test_recurrent_gemm.cpp checks the packed product
itself at every row count from 1 to 21.

Tolerances are those of test_kernels.py: float64 rtol 1e-10, float32 vs the float64 reference
rtol/atol 1e-5 (relative to the largest magnitude, as there).
"""

from __future__ import annotations

import numpy as np
import pytest

import rnncore as rc
from rnncore import _core

# These tests force particular splits across threads; the fixed plan keeps each call on the
# threads it was given (tests/test_differential.py covers the default measured plan).
pytestmark = pytest.mark.usefixtures("fixed_thread_plan")

CELLS = {
    "rnn_tanh": lambda **kw: rc.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: rc.RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: rc.LSTM(**kw),
    "gru": lambda **kw: rc.GRU(**kw),
}


def model_for(cell, input_size, hidden_size, dtype, **kw):
    return CELLS[cell](input_size=input_size, hidden_size=hidden_size, dtype=dtype, seed=3, **kw)


def forward_backward(model, x, lengths=None, backend="cpp", seed=5):
    """Outputs, final state and every gradient, flattened into one dict of float64 arrays."""
    y, state, cache = model.forward(x, None, lengths, backend=backend)
    rng = np.random.default_rng(seed)
    grad_y = rng.standard_normal(y.shape).astype(model.dtype)
    states = state if isinstance(state, tuple) else (state,)
    grad_state = tuple(rng.standard_normal(s.shape).astype(model.dtype) for s in states)
    g = model.backward(cache, grad_y, grad_state if isinstance(state, tuple) else grad_state[0])
    out = {"y": y, "grad_input": g.input}
    for i, s in enumerate(states):
        out[f"state{i}"] = s
    hx = g.hx if isinstance(g.hx, tuple) else (g.hx,)
    for i, s in enumerate(hx):
        out[f"grad_hx{i}"] = s
    out.update({f"grad_{k}": v for k, v in g.params.items()})
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def assert_close(got, want, rtol, atol=0.0, what=""):
    for key in want:
        scale = max(1.0, float(np.max(np.abs(want[key])))) if want[key].size else 1.0
        err = float(np.max(np.abs(got[key] - want[key]))) / scale if want[key].size else 0.0
        assert err <= rtol + atol, f"{what} {key}: max relative error {err:.3g} > {rtol + atol:g}"


def check_against_reference(cell, input_size, hidden_size, steps, batch, lengths=None, **kw):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((steps, batch, input_size))
    m64 = model_for(cell, input_size, hidden_size, np.float64, **kw)
    want = forward_backward(m64, x, lengths, backend="numpy")
    got64 = forward_backward(m64, x, lengths)
    assert_close(got64, want, 1e-10, what=f"float64 {cell} H={hidden_size} N={batch}")
    m32 = m64.astype(np.float32)
    got32 = forward_backward(m32, x.astype(np.float32), lengths)
    assert_close(got32, want, 1e-5, 1e-5, what=f"float32 {cell} H={hidden_size} N={batch}")


@pytest.fixture
def threads():
    """Restores the thread count a test changes."""
    before = _core.get_num_threads()
    yield
    _core.set_num_threads(before)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("hidden_size", [1, 7, 15, 16, 17, 31, 33, 47, 100])
def test_odd_hidden_sizes_match_reference(cell, hidden_size):
    check_against_reference(cell, input_size=9, hidden_size=hidden_size, steps=4, batch=3)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 17])
def test_batch_sizes_around_the_micro_kernel_rows_match_reference(cell, batch):
    check_against_reference(cell, input_size=19, hidden_size=37, steps=5, batch=batch)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_depth_above_one_slice_and_rows_across_blocks_match_reference(cell):
    # H = 150 > 128 rows per depth slice; T*N = 3*65 = 195 rows crosses two 96-row blocks.
    check_against_reference(cell, input_size=131, hidden_size=150, steps=3, batch=65)


@pytest.mark.parametrize("cell", list(CELLS))
def test_single_hidden_unit_and_single_input(cell):
    check_against_reference(cell, input_size=1, hidden_size=1, steps=7, batch=2)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
@pytest.mark.parametrize("lengths", [[9, 9, 7, 7, 3, 2, 1, 1], [2, 9, 1, 5, 9, 4, 9, 3]],
                         ids=["sorted", "unsorted"])
def test_lengths_on_threaded_time_loop_match_reference(cell, lengths, threads):
    # H = 80, N = 8: each step's product (2*N*G*H*H >= 0.25 MFLOP for LSTM and GRU) is big enough
    # for the time loop to split its hidden units (3 chunks) over two threads.
    _core.set_num_threads(2)
    check_against_reference(cell, input_size=33, hidden_size=80, steps=9, batch=8, lengths=lengths,
                            bidirectional=True, num_layers=2)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("steps,lengths", [(2, [1, 2]), (3, [3, 1]), (2, [2, 1, 1]),
                                           (7, [1, 7, 2, 7, 4, 1, 6, 3, 5])],
                         ids=["3rows", "4rows", "4rows-n3", "36rows"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_lengths_read_x_and_write_y_where_they_lie(cell, steps, lengths, n_threads, threads):
    # With lengths the first layer's input product reads x's rows in the caller's order (no
    # gathered copy; the training cache still keeps one) and the top layer writes h straight into
    # y's rows, dL/dy read the same way: 3 packed rows go through the few-row kernel, 4 through one
    # row block, 36 through several. Inference (the call) and training (forward + backward).
    _core.set_num_threads(n_threads)
    kw = dict(num_layers=2, bidirectional=True)
    check_against_reference(cell, input_size=11, hidden_size=21, steps=steps, batch=len(lengths),
                            lengths=lengths, **kw)
    x = np.random.default_rng(3).standard_normal((steps, len(lengths), 11))
    m64 = model_for(cell, 11, 21, np.float64, **kw)
    want_y, want_state = m64(x, None, lengths, backend="numpy")
    for model, data, tol in ((m64, x, 1e-10), (m64.astype(np.float32), x.astype(np.float32), 1e-5)):
        for _ in range(2):  # repeated calls
            y, state = model(data, None, lengths)
            assert_close(call_outputs(y, state), call_outputs(want_y, want_state), tol,
                         what=f"call {cell} {model.dtype}")


def call_outputs(y, state):
    states = state if isinstance(state, tuple) else (state,)
    out = {"y": y, **{f"state{i}": s for i, s in enumerate(states)}}
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("hidden_size,batch", [(96, 16), (67, 1), (40, 3)])
def test_one_and_two_threads_agree(cell, hidden_size, batch, threads):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20, batch, hidden_size)).astype(np.float32)
    model = model_for(cell, hidden_size, hidden_size, np.float32, bidirectional=True)
    results = []
    for n in (1, 2):
        _core.set_num_threads(n)
        results.append(forward_backward(model, x))
    # Each output element is summed in the same order whatever the split; only Eigen's weight-
    # gradient GEMMs may split their sums differently.
    assert_close(results[1], results[0], 1e-5, what=f"threads 2 vs 1, {cell}")


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("batch", [1, 4, 5])
@pytest.mark.parametrize("layers,bidirectional,bias", [(1, False, True), (2, True, True),
                                                       (1, False, False)])
def test_single_step_of_few_sequences_matches_reference(cell, batch, layers, bidirectional, bias):
    # T = 1 and N <= 4: the weights are used as they are (Eigen matrix-vector products), not
    # packed; N = 5 is the packed path's first batch for a single step.
    check_against_reference(cell, input_size=13, hidden_size=37, steps=1, batch=batch,
                            num_layers=layers, bidirectional=bidirectional, bias=bias)


@pytest.mark.parametrize("cell", list(CELLS))
def test_inference_equals_training_forward(cell):
    # The inference path keeps no cache and reuses scratch buffers; its outputs must be identical.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 5, 21)).astype(np.float32)
    model = model_for(cell, 21, 45, np.float32, num_layers=2)
    y_infer, state_infer = model(x)
    y_train, state_train, _ = model.forward(x)
    np.testing.assert_array_equal(y_infer, y_train)
    for a, b in zip(np.atleast_1d(state_infer) if not isinstance(state_infer, tuple) else state_infer,
                    np.atleast_1d(state_train) if not isinstance(state_train, tuple) else state_train):
        np.testing.assert_array_equal(a, b)


def test_benchmark_harness_runs_without_peers(tmp_path):
    from rnncore import benchmark

    out = tmp_path / "bench.json"
    code = benchmark.main(["--cells", "gru", "--shapes", "8x2x3", "--modes", "inference,training",
                           "--repeats", "1", "--min-time", "0.001", "--no-torch", "--json", str(out)])
    assert code == 0
    import json

    data = json.loads(out.read_text())
    assert [r["name"] for r in data["results"]] == ["infer gru 8x2x3 t1", "train gru 8x2x3 t1"]
    assert all(r["ms"]["rnncore"] > 0 for r in data["results"])
    assert any("PyTorch disabled" in note for note in data["meta"]["notes"])


def test_thread_scaling_harness_times_each_split(tmp_path, threads):
    import importlib.util
    import json
    import os
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "thread_scaling.py"
    spec = importlib.util.spec_from_file_location("thread_scaling", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "splits.json"
    # A tolerance of 100% flags nothing: the exit code only reports the harness's own failures.
    code = module.main(["--cells", "lstm", "--hidden", "8", "--batch", "1,3", "--steps", "4",
                        "--modes", "inference,training", "--rounds", "1", "--min-time", "0.001",
                        "--tolerance", "1", "--splits", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["batch"], r["mode"]) for r in rows] == [(1, "inference"), (3, "inference"),
                                                        (1, "training"), (3, "training")]
    assert set(rows[0]["ms_split"]) == {"one", "units"}  # one sequence: no split by rows
    assert set(rows[1]["ms_split"]) == {"one", "units", "rows"}
    assert all(r["chosen"] in ("one", "units", "rows") and r["fastest"] in r["ms_split"] for r in rows)
    assert "RNNCORE_TIME_LOOP" not in os.environ


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_products_split_across_two_threads_match_reference(cell, threads):
    # T*N = 24*43 = 1032 rows, H = 100, I = 150: the hoisted input product and dL/dx (>= 31 MFLOP)
    # split their rows over two threads in uneven shares (1032 rows is not an even number of
    # 8-row tiles per thread), the weight gradients (>= 20 MFLOP) split their 100..400 gate rows,
    # and the LSTM's and GRU's time loops split their units.
    _core.set_num_threads(2)
    check_against_reference(cell, input_size=150, hidden_size=100, steps=24, batch=43)


@pytest.fixture
def wavefront_setting(monkeypatch):
    """Sets RNNCORE_WAVEFRONT for one test."""

    def set_to(value):
        monkeypatch.setenv("RNNCORE_WAVEFRONT", value)
        _core._reload_thread_settings()  # the library reads RNNCORE_* once otherwise

    return set_to


def wavefront_threads(model, steps, batch):
    from rnncore._spec import CELL_CODES

    return _core.wavefront_threads(CELL_CODES[model.cell], model.input_size, model.hidden_size,
                                   model.num_layers, model.bidirectional, steps, batch,
                                   np.dtype(model.dtype).name)


# Stacks the wavefront runs (2 threads): chunks of 8+ rows over 2-4 layers, batch 1 (the
# 1-2-row product kernel in the time loop), 3 (chunks of 3 steps) and 6 (uneven shares of
# T = 29 steps), and layers that do not divide among the threads.
WAVEFRONT_SHAPES = [(2, 1, 50, 9, 32), (3, 3, 29, 17, 17), (4, 6, 29, 5, 20)]


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("layers,batch,steps,input_size,hidden_size", WAVEFRONT_SHAPES)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_wavefront_over_layers_is_bitwise_the_layer_by_layer_result(
        cell, layers, batch, steps, input_size, hidden_size, with_lengths, threads, wavefront_setting):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((steps, batch, input_size)).astype(np.float32)
    lengths = rng.integers(1, steps + 1, size=batch) if with_lengths else None
    model = model_for(cell, input_size, hidden_size, np.float32, num_layers=layers)
    _core.set_num_threads(1)
    wavefront_setting("0")
    assert wavefront_threads(model, steps, batch) == 1
    layer_by_layer = forward_backward(model, x, lengths)
    _core.set_num_threads(2)
    wavefront_setting("1")
    assert wavefront_threads(model, steps, batch) == 2
    wavefront = forward_backward(model, x, lengths)
    # Same products over the same rows in the same order, and one thread per weight gradient:
    # equal bit for bit, not just close.
    for key in layer_by_layer:
        np.testing.assert_array_equal(wavefront[key], layer_by_layer[key], err_msg=key)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
def test_wavefront_matches_reference(cell, threads, wavefront_setting):
    _core.set_num_threads(2)
    wavefront_setting("1")
    check_against_reference(cell, input_size=11, hidden_size=24, steps=40, batch=2, num_layers=3,
                            lengths=[40, 23])


def test_wavefront_is_used_only_where_it_can_run(threads, wavefront_setting):
    lstm = model_for("lstm", 64, 64, np.float32, num_layers=2)
    _core.set_num_threads(2)
    wavefront_setting("")  # by size
    assert wavefront_threads(lstm, 96, 1) == 2  # measured 1.5x of one thread
    assert wavefront_threads(lstm, 8, 1) == 1  # too few steps for the pipeline
    assert wavefront_threads(model_for("rnn_tanh", 16, 16, np.float32, num_layers=2), 50, 1) == 1
    assert wavefront_threads(model_for("lstm", 512, 512, np.float32, num_layers=2), 50, 64) == 1
    assert wavefront_threads(model_for("lstm", 64, 64, np.float32), 96, 1) == 1  # one layer
    bidirectional = model_for("lstm", 64, 64, np.float32, num_layers=2, bidirectional=True)
    assert wavefront_threads(bidirectional, 96, 1) == 1
    wavefront_setting("0")
    assert wavefront_threads(lstm, 96, 1) == 1
    _core.set_num_threads(1)
    wavefront_setting("1")
    assert wavefront_threads(lstm, 96, 1) == 1
    with pytest.raises(ValueError, match="steps and batch: .* got steps=0, batch=1"):
        _core.wavefront_threads(2, 4, 4, 2, False, 0, 1)
    with pytest.raises(ValueError, match="dtype: expected float32 or float64, got float16"):
        _core.wavefront_threads(2, 4, 4, 2, False, 10, 1, "float16")


@pytest.fixture
def time_loop_setting(monkeypatch):
    """Sets RNNCORE_TIME_LOOP for one test."""

    def set_to(value):
        monkeypatch.setenv("RNNCORE_TIME_LOOP", value)
        _core._reload_thread_settings()

    return set_to


def time_loop_split(cell, hidden_size, steps, batch, dtype="float32"):
    from rnncore._spec import CELL_CODES

    return _core.time_loop_split(CELL_CODES[cell], hidden_size, steps, batch, dtype)


@pytest.mark.parametrize("split", ["rows", "units"])
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("hidden_size,batch,lengths", [
    (37, 5, None),                 # rows 2 + 3; units split mid-panel
    (33, 2, [6, 2]),               # one sequence per thread, one of them ending early
    (150, 7, [9, 1, 4, 9, 9, 2, 7]),  # depth of two slices; lengths on both threads' rows
], ids=["37x5", "33x2-lengths", "150x7-lengths"])
def test_time_loop_split_matches_reference(cell, split, hidden_size, batch, lengths, threads,
                                           time_loop_setting):
    _core.set_num_threads(2)
    time_loop_setting(split)
    assert time_loop_split(cell, hidden_size, 9, batch) == (2, split)
    check_against_reference(cell, input_size=13, hidden_size=hidden_size, steps=9, batch=batch,
                            lengths=lengths)


@pytest.mark.parametrize("cell", list(CELLS))
def test_time_loop_splits_are_bitwise_one_thread(cell, threads, time_loop_setting):
    # Every output element is the same chain of FMAs whoever computes it, and whatever rows it
    # was multiplied with (the few-row kernel sums the depth in the row blocks' slices): H = 150
    # has two depth slices forward, the LSTM's and GRU's backward products more.
    rng = np.random.default_rng(8)
    x = rng.standard_normal((11, 6, 20)).astype(np.float32)
    lengths = [11, 4, 11, 7, 1, 11]
    model = model_for(cell, 20, 150, np.float32, num_layers=2)
    _core.set_num_threads(2)
    results = {}
    for split in ("one", "units", "rows"):
        time_loop_setting(split)
        results[split] = forward_backward(model, x, lengths)
    for split in ("units", "rows"):
        for key in results["one"]:
            np.testing.assert_array_equal(results[split][key], results["one"][key],
                                          err_msg=f"{split}: {key}")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_weights_packed_by_two_threads_match_one_and_the_reference(cell, threads, monkeypatch):
    # W_hh (H = 150: 90-360 KB) and W_ih (I = 300: 180-720 KB) are packed by two threads from
    # 256 KB, each panel by one of them; RNNCORE_PARALLEL_PACK=0 packs on one thread. Forward
    # packs W_ih^T and W_hh^T, backward W_hh and W_ih: all four layouts.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 9, 300)).astype(np.float32)
    model = model_for(cell, 300, 150, np.float32)
    _core.set_num_threads(2)
    parallel = forward_backward(model, x)
    monkeypatch.setenv("RNNCORE_PARALLEL_PACK", "0")
    _core._reload_thread_settings()
    serial = forward_backward(model, x)
    for key in serial:
        np.testing.assert_array_equal(parallel[key], serial[key], err_msg=key)
    monkeypatch.delenv("RNNCORE_PARALLEL_PACK")
    _core._reload_thread_settings()
    check_against_reference(cell, input_size=300, hidden_size=150, steps=5, batch=9)


def test_time_loop_split_is_chosen_by_size(threads, time_loop_setting, monkeypatch):
    _core.set_num_threads(2)
    time_loop_setting("")  # by size
    # Measured on the 2-core Zen 4 with 1 MiB of L2 per core (bench/README.md, "Splitting the
    # time loop"); the split by sequences is weighed against the L2 size.
    monkeypatch.setenv("RNNCORE_L2_BYTES", "1048576")
    _core._reload_thread_settings()
    assert _core.l2_cache_bytes() == 1048576
    assert time_loop_split("lstm", 256, 100, 32) == (2, "rows")  # compute-bound: sequences
    assert time_loop_split("gru", 64, 200, 4) == (2, "rows")  # W_hh (48 KB) stays in each L2
    assert time_loop_split("lstm", 256, 100, 4) == (2, "units")  # W_hh 1 MB: half of it each
    assert time_loop_split("lstm", 256, 100, 8) == (2, "rows")  # 4 each, W_hh fits in L2
    assert time_loop_split("lstm", 384, 100, 8) == (2, "units")  # 2.3 MB does not
    assert time_loop_split("lstm", 384, 100, 16) == (2, "rows")  # 8 each: compute-bound
    # The Xeon's 2 MiB (bench/README.md, "A Xeon VM").
    monkeypatch.setenv("RNNCORE_L2_BYTES", "2097152")
    _core._reload_thread_settings()
    assert time_loop_split("lstm", 256, 100, 4) == (2, "rows")  # 1 MB: half of L2
    assert time_loop_split("lstm", 512, 100, 8) == (2, "units")  # 4 MB
    monkeypatch.delenv("RNNCORE_L2_BYTES")
    _core._reload_thread_settings()
    assert _core.l2_cache_bytes() > 0  # the system's
    monkeypatch.setenv("RNNCORE_L2_BYTES", "1048576")
    _core._reload_thread_settings()
    assert time_loop_split("lstm", 256, 150, 1) == (2, "units")
    assert time_loop_split("lstm", 48, 200, 2) == (2, "rows")  # one sequence each, 36 KB
    assert time_loop_split("rnn_tanh", 32, 200, 1) == (1, "one")  # too small for a barrier
    assert time_loop_split("rnn_tanh", 16, 2000, 8) == (1, "one")  # too small for a thread
    assert time_loop_split("lstm", 256, 1, 1) == (1, "one")  # one step
    _core.set_num_threads(1)
    assert time_loop_split("lstm", 256, 100, 32) == (1, "one")
    _core.set_num_threads(2)
    time_loop_setting("rows")
    assert time_loop_split("lstm", 256, 100, 1) == (1, "one")  # one sequence: nothing to split
    time_loop_setting("units")
    assert time_loop_split("lstm", 8, 100, 4) == (1, "one")  # one slot of units


def test_time_loop_split_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dtype"):
        _core.time_loop_split(2, 16, 10, 1, "float16")
    with pytest.raises(ValueError, match="steps and batch"):
        _core.time_loop_split(2, 16, 0, 1)
    with pytest.raises(ValueError, match="cell"):
        _core.time_loop_split(7, 16, 10, 1)
