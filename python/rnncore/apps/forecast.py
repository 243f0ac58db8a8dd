"""`rnncore forecast`: multi-step time-series forecasting with an LSTM or GRU, against baselines.

The series is a real one where statsmodels is installed (the ``forecast`` extra): its
``sunspots`` data set (yearly sunspot numbers, 1700-2008) or ``co2`` (Mauna Loa CO2, weekly
1958-2001, averaged here to months); without statsmodels, a synthetic hourly series with a
daily and a weekly cycle (the daily swing smaller at weekends), a slow trend and AR(1) noise.

The last part of the series (``--test-fraction``) is held out. A forecast starts at an origin t:
the model sees the window y[t-W+1..t] and predicts y[t+1..t+H] all at once (a direct multi-step
forecast). The network is a one-layer LSTM or GRU over the window and a Linear head on its last
hidden state, H outputs. Input and targets are relative to the window's last value and scaled
by the training part's standard deviation, so a level never seen in training (a trend) is no
new input. Training draws random windows from the training part (the targets inside it),
minimises the MSE with Adam and clipping. Every forecast from every origin whose H targets lie
in the held-out part is scored, in the series' units, against three baselines on the same
origins: the last value repeated; the seasonal naive forecast (the value one season earlier);
and a linear autoregression on the same window, fitted by least squares on the training part
(one set of coefficients and an intercept per horizon step).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .._cli import CommandError, DEFAULT_OUT, INTERRUPTED, add_common, float_range, int_at_least
from .._cli import threads as kernel_threads
from .._plotting import files_line, new_axes, save_figure
from .._progress import progress_bar
from ..nn.grads import clip_grad_norm
from ..layers import GRU, LSTM
from ..nn.losses import mse
from ..nn import Linear
from ..nn.optim import Adam

SERIES = ("auto", "sunspots", "co2", "synthetic")
METHODS = ("last value", "seasonal naive", "linear AR")


def statsmodels_available() -> bool:
    return importlib.util.find_spec("statsmodels") is not None


# ---------------------------------------------------------------- the series
@dataclass
class Series:
    name: str
    description: str
    values: np.ndarray  # float64
    season: int  # the seasonal naive forecast's lag
    window: int  # default W
    horizon: int  # default H
    unit: str = ""  # what one step is


def sunspots() -> Series:
    from statsmodels.datasets import sunspots as data

    frame = data.load_pandas().data
    values = frame["SUNACTIVITY"].to_numpy(dtype=np.float64)
    first, last = int(frame["YEAR"].iloc[0]), int(frame["YEAR"].iloc[-1])
    return Series("sunspots", f"statsmodels' sunspots: yearly sunspot numbers {first}-{last}", values,
                  season=11, window=22, horizon=11, unit="year")


def co2() -> Series:
    from statsmodels.datasets import co2 as data

    weekly = data.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().interpolate()  # some weeks are missing
    values = monthly.to_numpy(dtype=np.float64)
    first, last = monthly.index[0], monthly.index[-1]
    return Series("co2", f"statsmodels' co2: Mauna Loa CO2 (ppm), weekly averaged to months, "
                  f"{first:%Y-%m} to {last:%Y-%m}", values, season=12, window=36, horizon=12, unit="month")


def synthetic(seed: int, length: int = 24 * 7 * 20) -> Series:
    """Hourly: a daily cycle (smaller at weekends), a weekly cycle, a slow trend, AR(1) noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)
    day = 2 * np.pi * t / 24
    daily = np.sin(day - 1.0) + 0.4 * np.sin(2 * day)
    weekend = ((t // 24) % 7) >= 5
    weekly = 0.8 * np.sin(2 * np.pi * t / 168)
    noise = np.empty(length)
    noise[0] = 0.0
    shocks = rng.normal(0.0, 0.25, length)
    for i in range(1, length):
        noise[i] = 0.8 * noise[i - 1] + shocks[i]
    values = 10.0 + t / 2000.0 + weekly + np.where(weekend, 0.4, 1.0) * daily + noise
    return Series("synthetic", f"synthetic hourly series, {length} hours: daily cycle (40% at weekends), "
                  "weekly cycle, trend, AR(1) noise", values, season=168, window=168, horizon=24, unit="hour")


def load_series(name: str, seed: int) -> Series:
    if name == "auto":
        name = "sunspots" if statsmodels_available() else "synthetic"
    return {"sunspots": sunspots, "co2": co2}.get(name, lambda: synthetic(seed))()


def series_name(text: str) -> str:
    """--series: one of SERIES; the real ones need statsmodels."""
    name = text.strip().lower()
    if name not in SERIES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(SERIES)}, got {text!r}")
    if name in ("sunspots", "co2") and not statsmodels_available():
        raise argparse.ArgumentTypeError(
            f"{name} needs statsmodels, which is not installed (pip install 'rnncore[forecast]'); "
            "--series synthetic needs nothing")
    return name


# ---------------------------------------------------------------- windows
@dataclass
class Split:
    values: np.ndarray
    train_end: int  # values[:train_end] is the training part
    window: int
    horizon: int

    def origins(self, part: str) -> np.ndarray:
        """Origins t (the window's last index) whose targets lie wholly in ``part``: "train"
        (the training part), "test" (the held-out part), or the training part's two pieces,
        "fit" (what the network trains on) and "valid" (its last sixth, to choose the step).
        Fit targets end before validation targets start, so no value is in both."""
        first = self.window - 1
        train = np.arange(first, self.train_end - self.horizon)
        cut = train[len(train) - max(1, len(train) // 6)] if len(train) else first
        if part == "train":
            return train
        if part == "fit":
            return train[train <= cut - self.horizon]
        if part == "valid":
            return train[train >= cut]
        return np.arange(max(first, self.train_end - 1), len(self.values) - self.horizon)

    def windows(self, origins: np.ndarray) -> np.ndarray:
        """(len(origins), W) raw values."""
        return self.values[origins[:, None] + np.arange(-self.window + 1, 1)]

    def targets(self, origins: np.ndarray) -> np.ndarray:
        """(len(origins), H) raw values."""
        return self.values[origins[:, None] + np.arange(1, self.horizon + 1)]


def make_split(values: np.ndarray, window: int, horizon: int, test_fraction: float) -> Split:
    test = int(round(len(values) * test_fraction))
    split = Split(values, len(values) - test, window, horizon)
    train_origins, test_origins = len(split.origins("fit")), len(split.origins("test"))
    if train_origins < 16 or test_origins < 1:
        raise CommandError(
            f"series too short for --window {window} --horizon {horizon} --test-fraction {test_fraction:g}: "
            f"{len(values)} values give {train_origins} training windows (need 16) and {test_origins} "
            "held-out forecasts (need 1)")
    return split


# ---------------------------------------------------------------- baselines
def last_value(split: Split, origins: np.ndarray) -> np.ndarray:
    return np.repeat(split.values[origins][:, None], split.horizon, axis=1)


def seasonal_naive(split: Split, origins: np.ndarray, season: int) -> np.ndarray:
    """y[t+h] predicted by the last observed value at the same phase: y[t+h - season*ceil(h/season)]."""
    steps = np.arange(1, split.horizon + 1)
    back = season * np.ceil(steps / season).astype(np.int64)
    return split.values[origins[:, None] + steps - back]


def fit_linear_ar(split: Split) -> np.ndarray:
    """Least-squares coefficients (W + 1, H): [1, window] @ coef predicts the H values."""
    origins = split.origins("train")
    design = np.hstack([np.ones((len(origins), 1)), split.windows(origins)])
    coef, *_ = np.linalg.lstsq(design, split.targets(origins), rcond=None)
    return coef


def linear_ar(split: Split, origins: np.ndarray, coef: np.ndarray) -> np.ndarray:
    return np.hstack([np.ones((len(origins), 1)), split.windows(origins)]) @ coef


# ---------------------------------------------------------------- the network
class WindowForecaster:
    """cell over the window (scaled, relative to its last value) -> Linear(hidden, H) on h_T."""

    def __init__(self, cell: str, hidden: int, horizon: int, scale: float, seed: int) -> None:
        self.cell = cell
        self.recurrent = {"lstm": LSTM, "gru": GRU}[cell](1, hidden, seed=seed)
        self.head = Linear(hidden, horizon, seed=seed + 1)
        self.scale = scale

    def parameters(self) -> dict:
        return {"recurrent": self.recurrent.parameters(), "head": self.head.parameters()}

    def num_parameters(self) -> int:
        return self.recurrent.num_parameters() + self.head.num_parameters()

    def _inputs(self, windows: np.ndarray) -> np.ndarray:
        """(W, N, 1), time-major: each value relative to the window's last one, scaled. (A second
        input, the standardised level, made the held-out error no better on sunspots and worse
        on co2 and the synthetic series, whose test levels lie above the training part's.)"""
        relative = (windows - windows[:, -1:]) / self.scale
        return relative.T[:, :, None].astype(np.float32)

    def _last_hidden(self, state) -> np.ndarray:
        return (state[0] if self.cell == "lstm" else state)[-1]

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """(N, H) forecasts in the series' units."""
        _, state = self.recurrent(self._inputs(windows))
        return windows[:, -1:] + self.scale * self.head(self._last_hidden(state)).astype(np.float64)

    def scaled_mse(self, windows: np.ndarray, targets: np.ndarray) -> float:
        """The training loss's measure (MSE in scaled units) without gradients."""
        return float(np.mean(((self.predict(windows) - targets) / self.scale) ** 2))

    def loss_and_grads(self, windows: np.ndarray, targets: np.ndarray):
        """MSE in scaled units, and the gradients (nested like parameters())."""
        _, state, cache = self.recurrent.forward(self._inputs(windows))
        prediction, head_cache = self.head.forward(self._last_hidden(state))
        scaled_targets = ((targets - windows[:, -1:]) / self.scale).astype(np.float32)
        loss, grad_prediction = mse(prediction, scaled_targets)
        grad_last, head_grads = self.head.backward(head_cache, grad_prediction)
        grad_state = grad_last[None]
        grads = self.recurrent.backward(cache, None, (grad_state, None) if self.cell == "lstm" else grad_state)
        return float(loss), {"recurrent": grads.params, "head": head_grads}


@dataclass
class ForecastConfig:
    cell: str = "lstm"
    hidden: int = 32
    steps: int = 1500
    batch: int = 64
    lr: float = 3e-3
    clip: float = 1.0
    seed: int = 0
    eval_every: int = 50
    progress: bool = True


@dataclass
class TrainResult:
    steps_done: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    first_loss: float = float("nan")  # the first batch's, scaled MSE
    train_loss: float = float("nan")  # running mean at the end
    best_step: int = 0  # the step whose parameters the model ends with
    best_valid: float = float("inf")  # their validation MSE (scaled)
    start_valid: float = float("nan")  # the untrained model's
    curve: list = field(default_factory=list)  # [(step, running training MSE, validation MSE)]


def _copy(tree: dict) -> dict:
    return {k: _copy(v) if isinstance(v, dict) else v.copy() for k, v in tree.items()}


def _restore(live: dict, saved: dict) -> None:
    for key, value in saved.items():
        if isinstance(value, dict):
            _restore(live[key], value)
        else:
            np.copyto(live[key], value)


def train(model: WindowForecaster, split: Split, config: ForecastConfig) -> TrainResult:
    """Random windows from the fit piece; every ``eval_every`` steps the validation MSE, and at
    the end the model takes the parameters of the step where it was lowest (early stopping: with
    a few hundred windows the network overfits long before the last step). Ctrl-C stops early
    and does the same with the evaluations made."""
    origins = split.origins("fit")
    valid = split.origins("valid")
    valid_windows, valid_targets = split.windows(valid), split.targets(valid)
    rng = np.random.default_rng(config.seed)
    optimizer = Adam(model.parameters(), lr=config.lr)
    result = TrainResult()
    best = None
    running = None
    result.start_valid = model.scaled_mse(valid_windows, valid_targets)
    bar = progress_bar(config.steps, desc=f"forecast {config.cell.upper()}", disable=not config.progress)
    try:
        for step in range(1, config.steps + 1):
            start = time.perf_counter()
            batch = rng.choice(origins, size=min(config.batch, len(origins)), replace=False)
            loss, grads = model.loss_and_grads(split.windows(batch), split.targets(batch))
            clip_grad_norm(grads, config.clip)
            optimizer.step(grads)
            result.seconds += time.perf_counter() - start
            result.steps_done = step
            if step == 1:
                result.first_loss = loss
            running = loss if running is None else 0.98 * running + 0.02 * loss
            result.train_loss = running
            if step % config.eval_every == 0 or step == config.steps:
                valid_loss = model.scaled_mse(valid_windows, valid_targets)
                result.curve.append((step, running, valid_loss))
                if valid_loss < result.best_valid:
                    result.best_step, result.best_valid, best = step, valid_loss, _copy(model.parameters())
                bar.set_postfix_str(f"MSE (scaled) train {running:.4f}, validation {valid_loss:.4f}",
                                    refresh=False)
            bar.update(1)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
    if best is not None:
        _restore(model.parameters(), best)
    else:  # interrupted before the first evaluation: the model as it is
        result.best_step = result.steps_done
    return result


# ---------------------------------------------------------------- scoring
@dataclass
class Score:
    method: str
    mae: float
    rmse: float
    mae_by_step: np.ndarray  # (H,)


def score(method: str, prediction: np.ndarray, truth: np.ndarray) -> Score:
    error = prediction - truth
    return Score(method, float(np.mean(np.abs(error))), float(np.sqrt(np.mean(error ** 2))),
                 np.mean(np.abs(error), axis=0))


def forecasts(model: WindowForecaster, split: Split, season: int, origins: np.ndarray) -> dict:
    """Every method's (len(origins), H) forecasts, the network's first."""
    coef = fit_linear_ar(split)
    windows = split.windows(origins)
    return {model.cell.upper(): model.predict(windows), "last value": last_value(split, origins),
            "seasonal naive": seasonal_naive(split, origins, season),
            "linear AR": linear_ar(split, origins, coef)}


def format_table(scores: list[Score]) -> str:
    best_mae = min(s.mae for s in scores)
    best_rmse = min(s.rmse for s in scores)
    lines = [f"{'method':<15} {'MAE':>10} {'RMSE':>10}"]
    for s in scores:
        marks = " ".join(m for m, best in (("best MAE", s.mae == best_mae), ("best RMSE", s.rmse == best_rmse))
                         if best)
        lines.append(f"{s.method:<15} {s.mae:>10.4g} {s.rmse:>10.4g}  {marks}".rstrip())
    return "\n".join(lines)


def verdict(scores: list[Score]) -> str:
    """Whether the network (scores[0]) beats every baseline, said plainly."""
    net, baselines = scores[0], scores[1:]
    best_mae = min(baselines, key=lambda s: s.mae)
    best_rmse = min(baselines, key=lambda s: s.rmse)
    beats_mae, beats_rmse = net.mae < best_mae.mae, net.rmse < best_rmse.rmse
    if beats_mae and beats_rmse:
        return (f"the {net.method} beats every baseline: MAE {net.mae:.4g} vs {best_mae.mae:.4g} "
                f"({best_mae.method}), RMSE {net.rmse:.4g} vs {best_rmse.rmse:.4g} ({best_rmse.method})")
    if not beats_mae and not beats_rmse:
        return (f"the {net.method} does NOT beat the baselines: {best_mae.method} has MAE "
                f"{best_mae.mae:.4g} (the {net.method} {net.mae:.4g}), {best_rmse.method} RMSE "
                f"{best_rmse.rmse:.4g} (the {net.method} {net.rmse:.4g})")
    won, lost = ("MAE", "RMSE") if beats_mae else ("RMSE", "MAE")
    best_lost = best_rmse if beats_mae else best_mae
    return (f"mixed: the {net.method} has the best {won} but not the best {lost} "
            f"({best_lost.method}: {getattr(best_lost, lost.lower()):.4g}, the {net.method} "
            f"{getattr(net, lost.lower()):.4g})")


def path_origins(split: Split) -> np.ndarray:
    """Origins H apart from the start of the held-out part: their forecasts tile it."""
    test = split.origins("test")
    return test[::split.horizon]


def write_csv(scores: list[Score], split: Split, paths: dict, origins: np.ndarray, folder: str) -> tuple[str, str]:
    metrics = os.path.join(folder, "forecast_errors.csv")
    with open(metrics, "w", encoding="utf-8") as handle:
        handle.write("method,horizon_step,mae\n")
        for s in scores:
            handle.writelines(f"{s.method},{h + 1},{v:.6g}\n" for h, v in enumerate(s.mae_by_step))
            handle.write(f"{s.method},all,{s.mae:.6g}\n")
    series = os.path.join(folder, "forecast_vs_truth.csv")
    names = list(paths)
    with open(series, "w", encoding="utf-8") as handle:
        handle.write("index,origin,truth," + ",".join(n.replace(" ", "_") for n in names) + "\n")
        for row, origin in enumerate(origins):
            for h in range(split.horizon):
                t = origin + 1 + h
                values = ",".join(f"{paths[n][row, h]:.6g}" for n in names)
                handle.write(f"{t},{origin},{split.values[t]:.6g},{values}\n")
    return metrics, series


def plot(split: Split, paths: dict, origins: np.ndarray, scores: list[Score], title: str, path: str) -> bool:
    """Forecast vs truth over the held-out part (forecasts tiled H at a time), and the MAE per
    horizon step; False when matplotlib is absent."""
    made = new_axes(rows=2, figsize=(8, 6.5))
    if made is None:
        return False
    plt, figure, (top, bottom) = made
    start = max(0, split.train_end - 2 * split.window)
    top.plot(np.arange(start, len(split.values)), split.values[start:], color="black", linewidth=1,
             label="truth")
    top.axvline(split.train_end - 0.5, color="gray", linestyle=":", label="held-out part starts")
    steps = (origins[:, None] + np.arange(1, split.horizon + 1)).ravel()
    for name, style in zip(paths, ("-", ":", "--", "-.")):
        top.plot(steps, paths[name].ravel(), linestyle=style, linewidth=1.2 if style == "-" else 1,
                 label=f"{name} forecast")
    top.set_title(title, fontsize=9)
    top.set_ylabel("value")
    for s, style in zip(scores, ("-", ":", "--", "-.")):
        bottom.plot(np.arange(1, split.horizon + 1), s.mae_by_step, linestyle=style, marker=".",
                    label=f"{s.method} (MAE {s.mae:.3g})")
    bottom.set_xlabel("steps ahead")
    bottom.set_ylabel("held-out MAE")
    save_figure(plt, figure, np.array([top, bottom]), path)
    return True


# ---------------------------------------------------------------- the command
def run(args: argparse.Namespace) -> int:
    os.makedirs(args.out, exist_ok=True)  # fail on a bad --out before training, not after
    series = load_series(args.series, args.seed)
    window = args.window or series.window
    horizon = args.horizon or series.horizon
    season = args.season or series.season
    split = make_split(series.values, window, horizon, args.test_fraction)
    if season > split.train_end:  # the seasonal naive forecast looks back one season from the held-out part
        raise CommandError(f"--season {season} is longer than the training part ({split.train_end} values)")
    train_values = series.values[:split.train_end]
    scale = float(np.std(train_values)) or 1.0
    config = ForecastConfig(cell=args.cell, hidden=args.hidden, steps=args.steps, batch=args.batch,
                            lr=args.lr, seed=args.seed, eval_every=args.eval_every, progress=args.progress)
    model = WindowForecaster(args.cell, args.hidden, horizon, scale, args.seed)
    test_origins = split.origins("test")
    print("rnncore forecast: multi-step forecasting with an RNN against baselines")
    print(f"  series: {series.description} ({len(series.values)} values, one per {series.unit})")
    if args.series == "auto" and series.name == "synthetic":
        print("  (statsmodels is not installed: pip install 'rnncore[forecast]' for the real sunspots "
              "and co2 series)")
    print(f"  held out: the last {len(series.values) - split.train_end} values; {len(test_origins)} "
          f"forecasts of {horizon} steps from a window of {window}, every origin in the held-out part")
    print(f"  model: {args.cell.upper()}(1, {args.hidden}) -> Linear({args.hidden}, {horizon}) on the last "
          f"hidden state, {model.num_parameters()} parameters; input and targets relative to the "
          f"window's last value, / {scale:.4g}")
    print(f"  training: {len(split.origins('fit'))} windows, batch {config.batch}, {config.steps} steps, "
          f"Adam lr {config.lr:g}, clip 1.0, seed {args.seed}, {args.threads} thread(s); the step kept is "
          f"the one with the lowest MSE on {len(split.origins('valid'))} validation windows (the training "
          f"part's end), checked every {config.eval_every} steps")
    print(f"  baselines: last value; seasonal naive (season {season}); linear AR on the same window "
          "(least squares, an intercept and W coefficients per step ahead)", flush=True)
    with kernel_threads(args.threads):
        result = train(model, split, config)
        predictions = forecasts(model, split, season, test_origins)
        path_starts = path_origins(split)
        paths = forecasts(model, split, season, path_starts)
    truth = split.targets(test_origins)
    scores = [score(name, prediction, truth) for name, prediction in predictions.items()]
    print()
    if result.interrupted:
        print(f"interrupted at step {result.steps_done} of {config.steps}: the model as it was then")
    print(f"MSE (scaled): training {result.first_loss:.4f} on the first batch, {result.train_loss:.4f} "
          f"(running mean) after {result.steps_done} steps ({result.seconds:.1f} s); validation "
          f"{result.start_valid:.4f} untrained, {result.best_valid:.4f} at step {result.best_step}, "
          "the lowest: the parameters kept")
    print(f"held-out error over {len(test_origins)} forecasts x {horizon} steps, in the series' units:")
    print(format_table(scores))
    print(verdict(scores))
    metrics_csv, series_csv = write_csv(scores, split, paths, path_starts, args.out)
    png = os.path.join(args.out, "forecast.png")
    title = (f"{series.name}: {args.cell.upper()} vs baselines, {horizon}-step forecasts from origins "
             f"{horizon} apart")
    wrote = args.plot and plot(split, paths, path_starts, scores, title, png)
    print(files_line(wrote, args.plot, png, [series_csv, metrics_csv]))
    return INTERRUPTED if result.interrupted else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "forecast", help="time-series forecasting: LSTM/GRU vs last value, seasonal naive, linear AR",
        description="Train an LSTM or GRU on windows of a univariate series to forecast the next H "
                    "values at once, and score it on the held-out end of the series (MAE, RMSE) "
                    "against the last value, the seasonal naive forecast and a least-squares linear "
                    "autoregression. The series: statsmodels' sunspots or co2 (pip install "
                    "'rnncore[forecast]'), else a synthetic one with a daily and a weekly cycle. "
                    "Writes forecast vs truth (CSV, and a PNG with matplotlib) to --out.")
    parser.add_argument("--series", type=series_name, default="auto",
                        help="auto (sunspots with statsmodels, else synthetic), sunspots, co2 or "
                             "synthetic (default auto)")
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm", help="the recurrent cell (default lstm)")
    parser.add_argument("--window", type=int_at_least(2), default=None,
                        help="input window W (default per series: sunspots 22, co2 36, synthetic 168)")
    parser.add_argument("--horizon", type=int_at_least(1), default=None,
                        help="steps forecast H (default per series: sunspots 11, co2 12, synthetic 24)")
    parser.add_argument("--season", type=int_at_least(1), default=None,
                        help="the seasonal naive forecast's lag (default per series: 11, 12, 168)")
    parser.add_argument("--test-fraction", type=float_range(0.0, 0.5), default=0.2,
                        help="fraction of the series held out at its end (default 0.2)")
    parser.add_argument("--hidden", type=int_at_least(1), default=ForecastConfig.hidden,
                        help=f"hidden size (default {ForecastConfig.hidden})")
    parser.add_argument("--steps", type=int_at_least(1), default=ForecastConfig.steps,
                        help=f"training steps (default {ForecastConfig.steps})")
    parser.add_argument("--batch", type=int_at_least(1), default=ForecastConfig.batch,
                        help=f"windows per step (default {ForecastConfig.batch})")
    parser.add_argument("--lr", type=float_range(0.0), default=ForecastConfig.lr,
                        help=f"Adam learning rate (default {ForecastConfig.lr:g})")
    parser.add_argument("--eval-every", type=int_at_least(1), default=ForecastConfig.eval_every,
                        help="steps between validation checks; the model keeps the best step's "
                             f"parameters (default {ForecastConfig.eval_every})")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="do not write the PNG")
    add_common(parser)
    parser.set_defaults(func=run)
