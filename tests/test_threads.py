"""The measured thread plan (rnncore.threads, cpp/include/rnncore/thread_plan.h): a call that may
use two threads times itself against one thread and runs the faster. It must never change a
result, must time only the calls it is meant to, and must report what it learned.
tests/cpp/test_thread_plan.cpp drives the choice itself with synthetic times."""

from __future__ import annotations

import numpy as np
import pytest

import rnncore as rc
from rnncore import _core


@pytest.fixture
def measured():
    """Two threads, the measured plan on and empty; restored afterwards."""
    threads, plan = rc.get_num_threads(), rc.get_thread_plan()
    rc.set_num_threads(2)
    rc.set_thread_plan("measured")
    rc.reset_thread_plan()
    yield
    rc.reset_thread_plan()
    rc.set_thread_plan(plan)
    rc.set_num_threads(threads)


def _train(model, x, seed=3):
    y, state, cache = model.forward(x)
    grad_y = np.random.default_rng(seed).standard_normal(y.shape).astype(model.dtype)
    g = model.backward(cache, grad_y)
    return [y, g.input, *g.params.values()]


def test_set_thread_plan_rejects_bad_values():
    before = rc.get_thread_plan()
    with pytest.raises(TypeError, match=r"plan: expected 'measured' or 'fixed', got int 3"):
        rc.set_thread_plan(3)
    with pytest.raises(ValueError, match=r"plan: expected 'measured' or 'fixed', got 'fast'"):
        rc.set_thread_plan("fast")
    with pytest.raises(ValueError, match="plan"):
        _core.set_thread_plan("Measured")
    with pytest.raises(ValueError, match=r"got 'xxxxxxxxxx.*\.\.\.'$"):
        rc.set_thread_plan("x" * 10_000)
    assert rc.get_thread_plan() == before  # unchanged


def test_get_thread_plan_follows_set(measured):
    assert rc.get_thread_plan() == "measured"
    rc.set_thread_plan("fixed")
    assert rc.get_thread_plan() == "fixed"


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_measured_calls_give_the_bits_of_fixed_ones(measured, cell):
    make = {"lstm": rc.LSTM, "gru": rc.GRU, "rnn": rc.RNN}[cell]
    model = make(20, 48, seed=1)
    x = np.random.default_rng(0).standard_normal((60, 6, 20)).astype(np.float32)
    rc.set_thread_plan("fixed")
    want_y = model(x)[0]
    want_train = _train(model, x)
    rc.set_thread_plan("measured")
    for _ in range(12):  # enough for both options to run (warm-up, then alone/team in turn)
        np.testing.assert_array_equal(model(x)[0], want_y)
    for _ in range(12):
        for got, want in zip(_train(model, x), want_train):
            np.testing.assert_array_equal(got, want)
    report = {e["pass"]: e for e in rc.thread_plan_report()}
    assert set(report) == {"inference", "training forward", "backward"}
    for name, e in report.items():
        assert e["cell"].startswith(cell) and e["hidden_size"] == 48 and e["input_size"] == 20
        assert e["batch"] == 6 and e["steps"][0] <= 60 <= e["steps"][1] and e["dtype"] == "float32"
        assert e["threads"] == 2 and e["num_layers"] == 1 and not e["bidirectional"] and not e["lengths"]
        assert e["calls"] == 12 and 1 <= e["alone_calls"] <= 11, (name, e)
        assert e["decided"] and e["choice"] in ("team", "alone")
        assert e["team_us_per_step"] > 0 and e["alone_us_per_step"] > 0


def test_only_calls_that_can_use_threads_are_timed(measured, monkeypatch):
    x_small = np.zeros((10, 1, 8), np.float32)
    rc.LSTM(8, 8)(x_small)  # ~0.1 MFLOP: one thread by size
    x = np.zeros((60, 6, 20), np.float32)
    model = rc.GRU(20, 48)
    rc.set_num_threads(1)
    model(x)  # one thread: nothing to choose
    rc.set_num_threads(2)
    monkeypatch.setenv("RNNCORE_TIME_LOOP", "units")
    _core._reload_thread_settings()  # the library reads RNNCORE_* once otherwise
    model(x)  # a split asked for by an experiment
    monkeypatch.delenv("RNNCORE_TIME_LOOP")
    _core._reload_thread_settings()
    rc.set_thread_plan("fixed")
    model(x)
    assert rc.thread_plan_report() == []
    rc.set_thread_plan("measured")
    model(x)
    model(x, lengths=np.full(6, 60))  # all full: the same kind of call (lengths dropped)
    model(x, lengths=np.array([60, 5, 60, 9, 60, 60]))
    report = rc.thread_plan_report()
    assert [(e["lengths"], e["calls"]) for e in report] == [(False, 2), (True, 1)]
    rc.reset_thread_plan()
    assert rc.thread_plan_report() == []


def test_steps_within_a_factor_of_two_share_an_entry(measured):
    model = rc.RNN(32, 64)
    for steps in (40, 50, 63, 64):
        model(np.zeros((steps, 8, 32), np.float32))
    ranges = [(e["steps"], e["calls"]) for e in rc.thread_plan_report()]
    assert ranges == [((32, 63), 3), ((64, 127), 1)]


def test_thread_scaling_harness_compares_the_plans(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "thread_scaling.py"
    spec = importlib.util.spec_from_file_location("thread_scaling", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "plans.json"
    before = rc.get_thread_plan()
    code = module.main(["--cells", "gru", "--hidden", "16", "--batch", "4", "--steps", "40",
                        "--input-size", "16,5", "--modes", "inference", "--rounds", "1",
                        "--min-time", "0.001", "--tolerance", "1", "--plans", "--json", str(out)])
    assert code == 0
    assert rc.get_thread_plan() == before  # the harness leaves the plan as it found it
    rows = json.loads(out.read_text())["rows"]
    assert [r["input_size"] for r in rows] == [16, 5]
    assert all(r["ms_2_threads_fixed"] > 0 and r["speedup_fixed"] > 0 for r in rows)
