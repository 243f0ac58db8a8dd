"""`rnncore demo`: the adding problem, trained with a vanilla RNN, an LSTM and a GRU.

The adding problem (Hochreiter & Schmidhuber 1997) tests whether a recurrent network can carry
information across many steps. Each input is a sequence of T pairs (value, marker): values are
uniform in [0, 1], markers are 0 except at two positions, and the target is the sum of the two
marked values. We use the common variant of Le et al. (2015) and Arjovsky et al. (2016): one
marker is placed uniformly in the first half of the sequence and the other uniformly in the
second half, so the first marked value must be remembered for at least ~T/2 steps.

Always predicting 1.0 (the target's mean) scores an MSE of Var(u1 + u2) = 2/12 = 0.167; a
model that solves the task gets far below it (here: < 0.01). The models are a one-layer cell
and a Linear head on its last hidden state, trained with Adam on the MSE, gradients clipped to
a global norm of 1. The three cells get the same number of parameters (hidden sizes are
matched to the LSTM's count), the same data, learning rate, steps and seed.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .._cli import DEFAULT_OUT, INTERRUPTED, add_common, cell_list, float_range, int_at_least, threads
from .._plotting import log_scale_axes, save_figure
from .._progress import progress_bar
from ..nn.grads import clip_grad_norm
from ..layers import GRU, LSTM, RNN
from ..nn.losses import mse
from ..nn import Linear, parameter_count
from ..nn.optim import Adam

__all__ = [
    "BASELINE_MSE",
    "DemoConfig",
    "CellResult",
    "adding_batch",
    "matched_hidden_sizes",
    "LastStepRegressor",
    "train_cell",
    "run_demo",
    "format_table",
    "plot_curves",
]

CELLS = ("rnn", "lstm", "gru")
CELL_NAMES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
INPUT_SIZE = 2  # (value, marker)
BASELINE_MSE = 2.0 / 12.0  # always predicting 1.0: the variance of the sum of two U(0, 1)
SOLVED_MSE = 0.01


def adding_batch(rng: np.random.Generator, steps: int, batch: int, dtype=np.float32):
    """One batch of the adding problem.

    Returns ``(x, target)``: x of shape (steps, batch, 2) holding (value, marker) per step,
    and target of shape (batch, 1), the sum of the two marked values. One marker lies in
    [0, steps//2), the other in [steps//2, steps).
    """
    if steps < 2:
        raise ValueError(f"steps: expected at least 2 (two marked positions), got {steps}")
    values = rng.random((steps, batch))
    half = steps // 2
    first = rng.integers(0, half, size=batch)
    second = rng.integers(half, steps, size=batch)
    markers = np.zeros((steps, batch))
    columns = np.arange(batch)
    markers[first, columns] = 1.0
    markers[second, columns] = 1.0
    target = values[first, columns] + values[second, columns]
    x = np.stack([values, markers], axis=-1).astype(dtype)
    return x, target[:, None].astype(dtype)


def model_parameter_count(cell: str, hidden_size: int, input_size: int = INPUT_SIZE) -> int:
    """Parameters of a one-layer ``cell`` with a Linear(hidden_size, 1) head."""
    return parameter_count(cell, input_size, hidden_size) + hidden_size + 1


def matched_hidden_sizes(lstm_hidden: int, cells=CELLS, input_size: int = INPUT_SIZE) -> dict[str, int]:
    """Hidden sizes giving each cell about the parameter count of an LSTM of ``lstm_hidden``.

    The count includes the head. For each cell we take the hidden size whose count is
    closest to the LSTM's (RNN ~ H^2, GRU ~ 3H^2, LSTM ~ 4H^2).
    """
    budget = model_parameter_count("lstm", lstm_hidden, input_size)
    sizes = {}
    for cell in cells:
        if cell == "lstm":
            sizes[cell] = lstm_hidden
            continue
        gates = {"rnn": 1, "gru": 3}[cell]
        # gates*H*(I + H) + 2*gates*H + H + 1 = budget: the positive root, then the best neighbour.
        a, b, c = gates, gates * (input_size + 2) + 1, 1 - budget
        root = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
        candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
        sizes[cell] = min(candidates, key=lambda h: abs(model_parameter_count(cell, h, input_size) - budget))
    return sizes


class LastStepRegressor:
    """A recurrent cell followed by a Linear head on its last hidden state: ``y = head(h_T)``."""

    def __init__(self, cell: str, hidden_size: int, input_size: int = INPUT_SIZE,
                 seed: int | None = None, dtype=np.float32) -> None:
        makers = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
        self.cell = cell
        self.recurrent = makers[cell](input_size, hidden_size, dtype=dtype, seed=seed)
        self.head = Linear(hidden_size, 1, dtype=dtype, seed=None if seed is None else seed + 1)

    def parameters(self) -> dict:
        return {"recurrent": self.recurrent.parameters(), "head": self.head.parameters()}

    def num_parameters(self) -> int:
        return self.recurrent.num_parameters() + self.head.num_parameters()

    def _last_hidden(self, state) -> np.ndarray:
        h_n = state[0] if self.cell == "lstm" else state
        return h_n[-1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        _, state = self.recurrent(x)
        return self.head(self._last_hidden(state))

    def loss_and_grads(self, x: np.ndarray, target: np.ndarray):
        """MSE on the last step and the gradients of every parameter (nested like parameters())."""
        _, state, cache = self.recurrent.forward(x)
        prediction, head_cache = self.head.forward(self._last_hidden(state))
        loss, grad_prediction = mse(prediction, target)
        grad_last, head_grads = self.head.backward(head_cache, grad_prediction)
        grad_h_n = grad_last[None]  # (num_layers * directions = 1, N, H)
        grad_state = (grad_h_n, None) if self.cell == "lstm" else grad_h_n
        grads = self.recurrent.backward(cache, None, grad_state)
        return float(loss), {"recurrent": grads.params, "head": head_grads}


@dataclass
class DemoConfig:
    steps_per_sequence: int = 100  # T
    train_steps: int = 3000
    lstm_hidden: int = 32
    cells: tuple = CELLS
    seed: int = 0
    batch: int = 64
    lr: float = 1e-2
    clip: float = 1.0
    eval_every: int = 100
    test_size: int = 1000
    progress: bool = True


@dataclass
class CellResult:
    cell: str
    hidden_size: int
    parameters: int
    steps_done: int = 0
    test_mse: float = float("nan")
    seconds: float = 0.0
    interrupted: bool = False
    curve: list = field(default_factory=list)  # [(step, test MSE)]

    @property
    def steps_per_second(self) -> float:
        return self.steps_done / self.seconds if self.seconds > 0 else float("nan")

    @property
    def solved(self) -> bool:
        return self.test_mse < SOLVED_MSE


def _test_mse(model: LastStepRegressor, test_x: np.ndarray, test_y: np.ndarray) -> float:
    return float(mse(model.predict(test_x), test_y)[0])


def train_cell(cell: str, hidden_size: int, config: DemoConfig, test_set=None,
               model: LastStepRegressor | None = None) -> CellResult:
    """Train one cell on the adding problem; Ctrl-C stops it and returns what was reached.

    Training batches come from a generator seeded with ``config.seed`` (the same batches for
    every cell); the test set (``test_size`` sequences) from ``config.seed + 1``. ``model``:
    train this model (a ``LastStepRegressor`` of that cell and size) instead of a new one.
    """
    if test_set is None:
        test_set = adding_batch(np.random.default_rng(config.seed + 1), config.steps_per_sequence,
                                config.test_size)
    test_x, test_y = test_set
    if model is None:
        model = LastStepRegressor(cell, hidden_size, seed=config.seed)
    optimizer = Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    result = CellResult(CELL_NAMES[cell], hidden_size, model.num_parameters())
    result.curve.append((0, _test_mse(model, test_x, test_y)))
    running = None
    training_seconds = 0.0
    bar = progress_bar(config.train_steps, desc=f"{CELL_NAMES[cell]:>4} H={hidden_size}",
                       disable=not config.progress)
    try:
        for step in range(1, config.train_steps + 1):
            start = time.perf_counter()
            x, target = adding_batch(rng, config.steps_per_sequence, config.batch)
            loss, grads = model.loss_and_grads(x, target)
            clip_grad_norm(grads, config.clip)
            optimizer.step(grads)
            training_seconds += time.perf_counter() - start
            result.steps_done = step
            running = loss if running is None else 0.98 * running + 0.02 * loss
            if step % config.eval_every == 0 or step == config.train_steps:
                result.curve.append((step, _test_mse(model, test_x, test_y)))
                bar.set_postfix_str(f"train {running:.4f}, test {result.curve[-1][1]:.4f}",
                                    refresh=False)
            bar.update(1)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
    result.seconds = training_seconds
    if result.curve[-1][0] != result.steps_done:
        result.curve.append((result.steps_done, _test_mse(model, test_x, test_y)))
    result.test_mse = result.curve[-1][1]
    return result


def run_demo(config: DemoConfig, on_result=None) -> list[CellResult]:
    """Train every cell of ``config.cells`` in turn; stops early when one is interrupted."""
    sizes = matched_hidden_sizes(config.lstm_hidden, config.cells)
    test_set = adding_batch(np.random.default_rng(config.seed + 1), config.steps_per_sequence,
                            config.test_size)
    results = []
    for cell in config.cells:
        result = train_cell(cell, sizes[cell], config, test_set)
        results.append(result)
        if on_result is not None:
            on_result(result)
        if result.interrupted:
            break
    return results


def format_table(results: list[CellResult]) -> str:
    header = (f"{'cell':<5} {'hidden':>6} {'params':>7} {'steps':>6} {'test MSE':>9} "
              f"{'baseline':>9} {'steps/s':>8}  result")
    lines = [header]
    for r in results:
        verdict = "solved" if r.solved else "not solved"
        if r.interrupted:
            verdict += " (interrupted)"
        lines.append(f"{r.cell:<5} {r.hidden_size:>6} {r.parameters:>7} {r.steps_done:>6} "
                     f"{r.test_mse:>9.4f} {BASELINE_MSE:>9.3f} {r.steps_per_second:>8.1f}  {verdict}")
    return "\n".join(lines)


def plot_curves(results: list[CellResult], config: DemoConfig, path: str) -> bool:
    """Learning curves (test MSE per step, log scale) as a PNG; False if matplotlib is absent."""
    plot = log_scale_axes()
    if plot is None:
        return False
    plt, figure, axes = plot
    for r in results:
        steps, values = zip(*r.curve)
        axes.plot(steps, values, label=f"{r.cell} (H={r.hidden_size}, {r.parameters} params)")
    axes.axhline(BASELINE_MSE, color="gray", linestyle="--", label="predict 1.0 (0.167)")
    axes.axhline(SOLVED_MSE, color="gray", linestyle=":", label="solved (0.01)")
    axes.set_xlabel("training step")
    axes.set_ylabel("test MSE")
    axes.set_title(f"Adding problem, T={config.steps_per_sequence}, batch {config.batch}, "
                   f"Adam lr={config.lr:g}")
    save_figure(plt, figure, axes, path)
    return True


# ---------------------------------------------------------------- the command
def _cmd_demo(args: argparse.Namespace) -> int:
    config = DemoConfig(steps_per_sequence=args.T, train_steps=args.steps, lstm_hidden=args.hidden,
                             cells=args.cells, seed=args.seed, batch=args.batch, lr=args.lr,
                             eval_every=args.eval_every, test_size=args.test_size,
                             progress=args.progress)
    os.makedirs(args.out, exist_ok=True)  # fail on a bad --out before training, not after
    sizes = matched_hidden_sizes(args.hidden, args.cells)
    half = args.T // 2
    print(f"rnncore demo: the adding problem (Hochreiter & Schmidhuber 1997), T={args.T}")
    print(f"  input: {args.T} steps of (value ~ U[0,1], marker); one marker in steps 0-{half - 1}, "
          f"one in {half}-{args.T - 1}")
    print(f"  target: the sum of the two marked values; always predicting 1.0 gives MSE "
          f"{BASELINE_MSE:.3f}; solved: test MSE < {SOLVED_MSE}")
    print(f"  model: cell -> Linear head on the last hidden state, MSE; Adam lr {args.lr:g}, "
          f"clip 1.0, batch {args.batch}, {args.steps} steps, seed {args.seed}, {args.threads} thread(s)")
    counts = ", ".join(f"{CELL_NAMES[c]} H={sizes[c]}: {model_parameter_count(c, sizes[c])}"
                       for c in args.cells)
    print(f"  parameters (hidden sizes matched to the LSTM's count, head included): {counts}")
    print(f"  test set: {args.test_size} sequences, evaluated every {args.eval_every} steps", flush=True)

    with threads(args.threads):
        results = run_demo(config)
    interrupted = any(r.interrupted for r in results)
    print()
    if interrupted:
        done = ", ".join(r.cell for r in results)
        print(f"interrupted: results so far ({done}; {results[-1].cell} stopped at step "
              f"{results[-1].steps_done} of {args.steps})")
    print(format_table(results))
    csv_path = os.path.join(args.out, "adding_curves.csv")
    with open(csv_path, "w", encoding="utf-8") as handle:
        handle.write("cell,hidden,step,test_mse\n")
        for r in results:
            handle.writelines(f"{r.cell},{r.hidden_size},{step},{value:.6g}\n" for step, value in r.curve)
    png_path = os.path.join(args.out, "adding_curves.png")
    if args.plot and plot_curves(results, config, png_path):
        print(f"learning curves: {png_path} (data: {csv_path})")
    else:
        reason = "--no-plot" if not args.plot else "install matplotlib (pip install 'rnncore[plot]') for the PNG"
        print(f"learning curves: {csv_path} ({reason})")
    if not interrupted:
        solved = [r.cell for r in results if r.solved]
        unsolved = [r.cell for r in results if not r.solved]
        print(f"solved (test MSE < {SOLVED_MSE}): {', '.join(solved) or 'none'}; "
              f"not solved: {', '.join(unsolved) or 'none'}")
        if len(results) > 1:
            print("every cell had the same data, steps, learning rate and seed")
        if "RNN" in unsolved and solved:
            print("why the vanilla RNN fails: see `rnncore gradflow` (the gradient per input step)")
    return INTERRUPTED if interrupted else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `rnncore demo` subcommand."""
    demo = subparsers.add_parser(
        "demo", help="the adding problem: vanilla RNN vs LSTM vs GRU (a minute or two)",
        description="Train a vanilla RNN, an LSTM and a GRU of about the same parameter count on the "
                    "adding problem (Hochreiter & Schmidhuber 1997; one marker in each half of the "
                    "sequence) and compare their test MSE with the 0.167 of always predicting 1.0. "
                    "Writes learning curves (CSV, and a PNG with matplotlib) to --out.")
    demo.add_argument("--T", type=int_at_least(2), default=DemoConfig.steps_per_sequence,
                      help=f"sequence length (default {DemoConfig.steps_per_sequence})")
    demo.add_argument("--steps", type=int_at_least(1), default=DemoConfig.train_steps,
                      help=f"training steps per cell (default {DemoConfig.train_steps})")
    demo.add_argument("--hidden", type=int_at_least(1), default=DemoConfig.lstm_hidden,
                      help="LSTM hidden size; the RNN's and GRU's are matched to its parameter count "
                           f"(default {DemoConfig.lstm_hidden})")
    demo.add_argument("--cells", type=cell_list, default=("rnn", "lstm", "gru"),
                      help="comma-separated cells to train (default rnn,lstm,gru)")
    demo.add_argument("--batch", type=int_at_least(1), default=DemoConfig.batch,
                      help=f"batch size (default {DemoConfig.batch})")
    demo.add_argument("--lr", type=float_range(0.0), default=DemoConfig.lr,
                      help=f"Adam learning rate (default {DemoConfig.lr:g})")
    demo.add_argument("--eval-every", type=int_at_least(1), default=DemoConfig.eval_every,
                      help=f"steps between test-set evaluations (default {DemoConfig.eval_every})")
    demo.add_argument("--test-size", type=int_at_least(1), default=DemoConfig.test_size,
                      help=f"test sequences (default {DemoConfig.test_size})")
    demo.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    demo.add_argument("--no-plot", dest="plot", action="store_false", help="do not write the PNG")
    add_common(demo)
    demo.set_defaults(func=_cmd_demo)
