"""`rnncore forecast`: tiny runs, the baselines' arithmetic, bad arguments, Ctrl-C."""

import importlib.util
import re
import sys

import numpy as np
import pytest

from rnncore.apps import forecast
from _apps_testing import assert_one_line_error, interrupt_after_header, interrupt_on_call, run

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAS_STATSMODELS = importlib.util.find_spec("statsmodels") is not None

TINY = ["forecast", "--series", "synthetic", "--window", "24", "--horizon", "6", "--season", "24",
        "--steps", "300", "--hidden", "16", "--batch", "16", "--lr", "0.01", "--eval-every", "50",
        "--no-progress"]


def table(out):
    """{method: (MAE, RMSE)} from the printed table."""
    rows = {}
    for line in out.splitlines():
        match = re.match(r"(LSTM|GRU|last value|seasonal naive|linear AR)\s+([0-9.e+-]+)\s+([0-9.e+-]+)", line)
        if match:
            rows[match.group(1)] = (float(match.group(2)), float(match.group(3)))
    return rows


def test_tiny_run_learns_beats_the_last_value_and_writes_its_files(capsys, tmp_path):
    code, out, _ = run(capsys, *TINY, "--out", str(tmp_path))
    assert code == 0
    assert "synthetic hourly series" in out
    untrained, trained = map(float, re.search(r"validation ([0-9.]+) untrained, ([0-9.]+) at step", out).groups())
    assert trained < 0.6 * untrained  # it learned: well below where it started
    rows = table(out)
    assert set(rows) == {"LSTM", "last value", "seasonal naive", "linear AR"}
    assert rows["LSTM"][0] < 0.85 * rows["last value"][0]  # better than repeating the last value
    assert re.search(r"^(the LSTM beats|the LSTM does NOT beat|mixed:)", out, re.M)
    errors = (tmp_path / "forecast_errors.csv").read_text().splitlines()
    assert errors[0] == "method,horizon_step,mae" and len(errors) == 1 + 4 * 7
    paths = (tmp_path / "forecast_vs_truth.csv").read_text().splitlines()
    assert paths[0] == "index,origin,truth,LSTM,last_value,seasonal_naive,linear_AR"
    assert (tmp_path / "forecast.png").exists() == HAS_MATPLOTLIB


def test_gru_and_no_plot(capsys, tmp_path):
    code, out, _ = run(capsys, *TINY, "--cell", "gru", "--steps", "20", "--out", str(tmp_path), "--no-plot")
    assert code == 0
    assert "GRU" in table(out)
    assert "(--no-plot)" in out
    assert not (tmp_path / "forecast.png").exists()


@pytest.mark.skipif(not HAS_STATSMODELS, reason="statsmodels (the forecast extra) is not installed")
@pytest.mark.parametrize("series, size", [("sunspots", 309), ("co2", 526)])
def test_the_real_series_come_from_statsmodels(series, size):
    loaded = forecast.load_series(series, seed=0)
    assert loaded.name == series and len(loaded.values) == size
    assert np.all(np.isfinite(loaded.values))


def test_auto_says_which_series_it_used(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(forecast, "statsmodels_available", lambda: False)
    code, out, _ = run(capsys, *TINY[:1], "--window", "24", "--horizon", "6", "--season", "24",
                       "--steps", "2", "--hidden", "4", "--no-progress", "--out", str(tmp_path), "--no-plot")
    assert code == 0
    assert "synthetic hourly series" in out and "statsmodels is not installed" in out


def test_a_real_series_without_statsmodels_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setattr(forecast, "statsmodels_available", lambda: False)
    code, _, err = run(capsys, "forecast", "--series", "sunspots")
    assert_one_line_error(code, err, "rnncore forecast", 2)
    assert "pip install 'rnncore[forecast]'" in err


# ---------------------------------------------------------------- the baselines' arithmetic
def periodic_split(period=5, length=60, window=7, horizon=8):
    values = np.tile(np.arange(period, dtype=np.float64) ** 2, length // period)
    return forecast.make_split(values, window, horizon, test_fraction=0.3)


def test_seasonal_naive_is_exact_on_a_periodic_series_and_last_value_repeats():
    split = periodic_split()
    origins = split.origins("test")
    truth = split.targets(origins)
    np.testing.assert_array_equal(forecast.seasonal_naive(split, origins, 5), truth)
    assert np.abs(forecast.seasonal_naive(split, origins, 4) - truth).max() > 0
    last = forecast.last_value(split, origins)
    np.testing.assert_array_equal(last, np.repeat(split.values[origins][:, None], 8, axis=1))


def test_linear_ar_recovers_an_exact_autoregression():
    values = np.empty(300)
    values[:2] = 1.0, 2.0
    for t in range(2, 300):  # a damped oscillation: y_t = 1.6 y_{t-1} - 0.8 y_{t-2} + 3
        values[t] = 1.6 * values[t - 1] - 0.8 * values[t - 2] + 3.0
    split = forecast.make_split(values, window=4, horizon=5, test_fraction=0.25)
    origins = split.origins("test")
    prediction = forecast.linear_ar(split, origins, forecast.fit_linear_ar(split))
    np.testing.assert_allclose(prediction, split.targets(origins), atol=1e-6)


def test_fit_and_validation_targets_do_not_overlap_and_test_targets_are_held_out():
    split = periodic_split(length=200, window=10, horizon=6)
    fit, valid, test = (split.origins(p) for p in ("fit", "valid", "test"))
    assert fit.max() + split.horizon < valid.min() + 1  # fit targets end before validation's start
    assert valid.max() + split.horizon < split.train_end
    assert test.min() + 1 >= split.train_end and test.max() + split.horizon == len(split.values) - 1


def test_verdict_says_plainly_who_wins():
    def s(name, mae, rmse):
        return forecast.Score(name, mae, rmse, np.zeros(1))

    assert forecast.verdict([s("LSTM", 1, 1), s("last value", 2, 2), s("linear AR", 1.5, 1.5)]).startswith(
        "the LSTM beats every baseline")
    assert "does NOT beat" in forecast.verdict([s("LSTM", 2, 2), s("linear AR", 1, 1)])
    assert forecast.verdict([s("LSTM", 1, 3), s("linear AR", 2, 2)]).startswith("mixed: the LSTM has the best MAE")


# ---------------------------------------------------------------- errors and Ctrl-C
@pytest.mark.parametrize("argv", [
    ["--window", "1"],
    ["--horizon", "0"],
    ["--test-fraction", "0.9"],
    ["--test-fraction", "0"],
    ["--series", "bitcoin"],
    ["--cell", "rnn"],
    ["--lr", "nan"],
    ["--steps", "x"],
])
def test_bad_arguments_are_one_line_usage_errors(capsys, argv):
    code, _, err = run(capsys, "forecast", *argv)
    assert_one_line_error(code, err, "rnncore forecast", 2)


def test_a_window_too_long_for_the_series_is_a_one_line_error(capsys, tmp_path):
    code, _, err = run(capsys, "forecast", "--series", "synthetic", "--window", "3000", "--out", str(tmp_path))
    assert_one_line_error(code, err, "rnncore forecast", 1)
    assert "series too short" in err


def test_help(capsys):
    code, out, _ = run(capsys, "forecast", "--help")
    assert code == 0 and out.startswith("usage: rnncore forecast")


def test_interrupted_training_still_scores_the_model(capsys, tmp_path, monkeypatch):
    interrupt_on_call(monkeypatch, forecast.WindowForecaster, "loss_and_grads", 120)
    code, out, _ = run(capsys, *TINY, "--out", str(tmp_path), "--no-plot")
    assert code == 130
    assert "interrupted at step 119 of 300" in out
    assert "at step 100, the lowest: the parameters kept" in out
    assert set(table(out)) == {"LSTM", "last value", "seasonal naive", "linear AR"}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_prints_the_table_and_exits_130(tmp_path):
    code, out, err = interrupt_after_header([*TINY, "--steps", "1000000", "--out", str(tmp_path), "--no-plot"],
                                            "baselines:")
    assert code == 130, err
    assert "Traceback" not in err
    assert "interrupted at step" in out
    assert "LSTM" in table(out)
