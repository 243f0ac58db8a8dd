"""`rnncore cost`: tiny timings, the parameter-count formula, bad arguments, Ctrl-C."""

import importlib.util
import sys

import numpy as np
import pytest

import rnncore as rc
from rnncore.apps import cost
from _apps_testing import assert_one_line_error, interrupt_after_header, interrupt_on_call, run

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None

TINY = ["cost", "--lengths", "4,8", "--batch", "2", "--input", "8", "--hidden", "8", "--repeats", "1",
        "--sizes", "4,8", "--no-progress"]


def timing_rows(out):
    return [line for line in out.splitlines() if line.split("|")[0].strip().isdigit()]


def test_tiny_run_prints_ratios_counts_and_writes_its_files(capsys, tmp_path):
    code, out, _ = run(capsys, *TINY, "--out", str(tmp_path))
    assert code == 0
    rows = timing_rows(out)
    assert [r.split("|")[0].strip() for r in rows] == ["4", "8"]
    assert all(len(r.split("|")) == (3 if HAS_TORCH else 2) for r in rows)
    assert "rnncore: the LSTM takes" in out and "textbook's >10x" in out
    lines = (tmp_path / "cost_ratio.csv").read_text().splitlines()
    assert lines[0] == "library,T,lstm_seconds,linear_seconds,ratio"
    assert len(lines) == 1 + 2 * (2 if HAS_TORCH else 1)
    assert (tmp_path / "cost_ratio.png").exists() == HAS_MATPLOTLIB
    assert "8n^2 + 8n (LSTM)" in out
    counts = [line.split() for line in out.splitlines() if line.startswith(("RNN ", "LSTM ", "GRU "))]
    assert [(c[0], c[1]) for c in counts] == [(k, n) for n in ("4", "8") for k in ("RNN", "LSTM", "GRU")]


def test_no_torch_times_rnncore_only(capsys, tmp_path):
    code, out, _ = run(capsys, *TINY, "--no-torch", "--no-plot", "--out", str(tmp_path))
    assert code == 0
    assert "torch.nn: skipped (--no-torch)" in out
    assert all(len(r.split("|")) == 2 for r in timing_rows(out))
    assert "torch:" not in out


def test_two_threads_without_threadpoolctl_says_the_blas_keeps_its_threads(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cost, "_threadpool_limits", lambda: None)
    code, out, _ = run(capsys, *TINY, "--threads", "2", "--no-torch", "--no-plot", "--out", str(tmp_path))
    assert code == 0
    assert "without threadpoolctl NumPy's BLAS" in out and "times: wall time" in out


@pytest.mark.parametrize("input_size", [None, 3, 100])
@pytest.mark.parametrize("hidden", [1, 7, 256])
def test_closed_form_matches_the_counted_parameters(input_size, hidden):
    rows = cost.count_parameters([hidden], input_size, use_torch=HAS_TORCH)
    for row in rows:
        assert row.closed_form == row.counted == rc.parameter_count(row.cell.lower(), row.input, hidden)
        if HAS_TORCH:
            assert row.torch_counted == row.counted
    by_cell = {r.cell: r.counted for r in rows}
    assert by_cell["LSTM"] == 4 * by_cell["RNN"] and by_cell["GRU"] == 3 * by_cell["RNN"]


def test_flop_factor_and_the_verdict():
    assert cost.flop_factor(256, 256) == 8
    assert cost.flop_factor(128, 256) == 12
    slow = [cost.Timing(256, 0.5, 0.1), cost.Timing(512, 1.2, 0.1)]
    assert "12.0x the Linear's time at T=512 (agrees with" in cost.verdict(slow, "rnncore", 8)
    fast = [cost.Timing(16, 0.3, 0.1), cost.Timing(1024, 0.9, 0.1)]
    text = cost.verdict(fast, "torch", 8)
    assert "at T=1024 (DISAGREES with" in text and "ratio runs 3.0-9.0x" in text


def test_median_pair_interleaves_and_repeats_short_calls():
    order = []
    first, second = (lambda: order.append("a")), (lambda: order.append("b"))
    cost.median_pair(first, second, repeats=3, min_seconds=0)
    assert order == ["a", "b"] * 4  # a warm-up round, then the three timed ones
    order.clear()
    cost.median_pair(first, second, repeats=3, min_seconds=1e9)
    assert len(order) == 2 * (1 + cost.MAX_ROUNDS)


def test_on_one_thread_all_the_work_runs_in_the_calling_thread():
    """The premise of timing one-thread runs by the calling thread's CPU time."""
    import time

    from rnncore._cli import threads

    clock, _ = cost.clock_for(1)
    assert clock is time.thread_time
    make_calls = cost.rnncore_pair(64, 64, seed=0)
    x = np.zeros((64, 8, 64), np.float32)
    with threads(1, blas=1):
        for call in make_calls(x):
            call()
            process, thread = time.process_time(), time.thread_time()
            for _ in range(5):
                call()
            process, thread = time.process_time() - process, time.thread_time() - thread
            assert process <= 1.2 * thread + 0.005, (process, thread)


def test_interrupted_timing_prints_the_rows_done(capsys, tmp_path, monkeypatch):
    interrupt_on_call(monkeypatch, cost, "median_pair", 3)  # at the third length
    code, out, _ = run(capsys, *TINY, "--lengths", "4,8,16", "--no-torch", "--no-plot", "--out", str(tmp_path))
    assert code == 130
    assert "interrupted" in out
    assert [r.split("|")[0].strip() for r in timing_rows(out)] == ["4", "8"]


@pytest.mark.parametrize("argv", [
    ["--lengths", "0,16"],
    ["--lengths", "16,x"],
    ["--lengths", ""],
    ["--repeats", "0"],
    ["--batch", "-1"],
    ["--sizes", "0"],
    ["--threads", "0"],
])
def test_bad_arguments_are_one_line_usage_errors(capsys, argv):
    code, _, err = run(capsys, "cost", *argv)
    assert_one_line_error(code, err, "rnncore cost", 2)


def test_out_that_is_a_file_is_a_one_line_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, *TINY, "--out", str(blocker))
    assert_one_line_error(code, err, "rnncore cost", 1)


def test_help(capsys):
    code, out, _ = run(capsys, "cost", "--help")
    assert code == 0 and out.startswith("usage: rnncore cost")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_prints_the_lengths_done_and_exits_130(tmp_path):
    code, out, err = interrupt_after_header(
        ["cost", "--lengths", "2,4,8,16,32,64,128,256,512,1024,2048,4096,8192", "--repeats", "200",
         "--no-torch", "--no-progress", "--no-plot", "--out", str(tmp_path)], "median of")
    assert code == 130, err
    assert "Traceback" not in err
    assert "interrupted" in out
