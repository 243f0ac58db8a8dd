"""`rnncore gradflow`: how far back the gradient of a loss at the last step reaches.

For each cell (vanilla RNN, LSTM, GRU, with the demo's matched parameter counts) we take the
adding-problem model of ``rnncore.demo`` (cell + Linear head on the last hidden state, MSE
loss on the last output) and measure ``||dL/dx_t||`` for every input step t, from the last
step T-1 back to t = 0. The model is the one its seed initialises (PyTorch's default
initialisation, no forget-gate bias trick), or, with ``train_steps``, that model after so many
Adam steps on the adding problem. The norm of step t is the Frobenius norm over the batch and
input features (``rnncore.per_step_grad_norms``); we average it over several random batches
as a geometric mean (the mean of log10), because the values span many orders of magnitude.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass

import numpy as np

from .._cli import DEFAULT_OUT, add_common, cell_list, int_at_least, threads
from .demo import CELL_NAMES, DemoConfig, LastStepRegressor, adding_batch, matched_hidden_sizes, train_cell
from .._plotting import log_scale_axes, save_figure
from ..nn.grads import per_step_grad_norms
from ..nn.losses import mse

__all__ = ["GradFlow", "step_gradient_norms", "measure", "format_table", "plot_norms"]


@dataclass
class GradFlow:
    cell: str  # "RNN", "LSTM" or "GRU"
    hidden_size: int
    norms: np.ndarray  # (T,), geometric mean over batches of ||dL/dx_t||

    @property
    def decay(self) -> float:
        """||dL/dx_0|| / ||dL/dx_{T-1}||: how much of the gradient reaches the first step."""
        return float(self.norms[0] / self.norms[-1])


def step_gradient_norms(model: LastStepRegressor, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``||dL/dx_t||`` for t = 0 … T-1, L = MSE of the prediction from the last hidden state."""
    recurrent = model.recurrent
    _, state, cache = recurrent.forward(x)
    prediction, head_cache = model.head.forward(model._last_hidden(state))
    _, grad_prediction = mse(prediction, target)
    grad_last, _ = model.head.backward(head_cache, grad_prediction)
    grad_state = (grad_last[None], None) if model.cell == "lstm" else grad_last[None]
    grads = recurrent.backward(cache, None, grad_state)
    return per_step_grad_norms(grads.input)


def measure(cell: str, hidden_size: int, steps: int = 100, batch: int = 64, batches: int = 8,
            seed: int = 0, train_steps: int = 0, progress: bool = True) -> GradFlow:
    """The per-step gradient norms of one cell, geometric mean over ``batches`` random batches.

    The model is initialised with ``seed`` (float64, so that norms down to ~1e-300 are
    resolved) and, when ``train_steps`` > 0, first trained that many steps on the adding
    problem with the demo's settings.
    """
    model = LastStepRegressor(cell, hidden_size, seed=seed, dtype=np.float64)
    if train_steps:
        config = DemoConfig(steps_per_sequence=steps, train_steps=train_steps, seed=seed,
                            progress=progress, eval_every=max(train_steps, 1), test_size=256)
        result = train_cell(cell, hidden_size, config, model=model)
        if result.interrupted:
            raise KeyboardInterrupt
    rng = np.random.default_rng(seed + 2)
    logs = []
    for _ in range(batches):
        x, target = adding_batch(rng, steps, batch, dtype=np.float64)
        with np.errstate(divide="ignore"):
            logs.append(np.log10(step_gradient_norms(model, x, target)))
    return GradFlow(CELL_NAMES[cell], hidden_size, 10.0 ** np.mean(logs, axis=0))


def measure_all(cells, lstm_hidden: int = 32, **kwargs) -> list[GradFlow]:
    sizes = matched_hidden_sizes(lstm_hidden, cells)
    return [measure(cell, sizes[cell], **kwargs) for cell in cells]


def table_steps(steps: int, every: int) -> list[int]:
    """T-1, T-1-every, …, and always 0."""
    rows = list(range(steps - 1, -1, -every))
    if rows[-1] != 0:
        rows.append(0)
    return rows


def format_table(flows: list[GradFlow], every: int = 10) -> str:
    steps = len(flows[0].norms)
    header = f"{'t':>5} " + " ".join(f"{f'{f.cell} H={f.hidden_size}':>14}" for f in flows)
    lines = [header]
    for t in table_steps(steps, every):
        lines.append(f"{t:>5} " + " ".join(f"{f.norms[t]:>14.3e}" for f in flows))
    lines.append(f"{'x0/xT':>5} " + " ".join(f"{f.decay:>14.3e}" for f in flows))
    return "\n".join(lines)


def plot_norms(flows: list[GradFlow], path: str, title: str) -> bool:
    """A log-scale PNG of ||dL/dx_t|| against t; False when matplotlib is absent."""
    plot = log_scale_axes()
    if plot is None:
        return False
    plt, figure, axes = plot
    for f in flows:
        steps = np.arange(len(f.norms))
        shown = np.where(f.norms > 0, f.norms, np.nan)  # log scale: leave exact zeros out
        axes.plot(steps, shown, label=f"{f.cell} (H={f.hidden_size})")
    axes.set_xlabel("input step t (the loss is on the last step)")
    axes.set_ylabel(r"$\|\partial L / \partial x_t\|$")
    axes.set_title(title)
    save_figure(plt, figure, axes, path)
    return True


def first_against_last(ratio: float, last_step: int) -> str:
    """How the gradient at t=0 compares with the one at the last step, from their ratio
    (``GradFlow.decay``): 'is 22.8 decades below the one at t=99', '... above ...', or
    'is within 0.05 decades of ...'."""
    last = f"the one at t={last_step}"
    if ratio == 0:
        return f"underflowed to 0 ({last} did not)"
    if not (ratio > 0 and math.isfinite(ratio)):
        return f"cannot be compared with {last} (ratio {ratio})"
    exponent = math.log10(ratio)
    if abs(exponent) < 0.05:  # shown as 0.0 decades: neither above nor below
        return f"is within 0.05 decades of {last}"
    return f"is {abs(exponent):.1f} decades {'above' if exponent > 0 else 'below'} {last}"


# ---------------------------------------------------------------- the command
def _cmd_gradflow(args: argparse.Namespace) -> int:
    if args.plot:
        os.makedirs(args.out, exist_ok=True)
    sizes = matched_hidden_sizes(args.hidden, args.cells)
    state = "at initialisation" if args.train_steps == 0 else f"after {args.train_steps} training steps"
    print(f"rnncore gradflow: ||dL/dx_t|| for the adding-problem model {state}, T={args.T}")
    print(f"  loss: MSE of a Linear head on the last hidden state; geometric mean over {args.batches} "
          f"random batches of {args.batch}, float64; model seed {args.seed}")
    print("  hidden sizes matched to the LSTM's parameter count: "
          + ", ".join(f"{c.upper()} H={sizes[c]}" for c in args.cells), flush=True)
    flows = []
    with threads(args.threads):
        for cell in args.cells:
            flows.append(measure(cell, sizes[cell], steps=args.T, batch=args.batch,
                                          batches=args.batches, seed=args.seed,
                                          train_steps=args.train_steps, progress=args.progress))
    print(format_table(flows, every=args.every))
    for f in flows:
        print(f"  {f.cell}: the gradient at t=0 {first_against_last(f.decay, args.T - 1)}")
    if args.train_steps == 0:
        print("  (PyTorch's default initialisation; to see what training on the adding problem changes, "
              "add --train-steps 1500, about a minute)")
    png_path = os.path.join(args.out, "gradflow.png")
    if args.plot and plot_norms(flows, png_path, f"Gradient norm per input step, T={args.T}, {state}"):
        print(f"plot: {png_path}")
    elif args.plot:
        print("plot: install matplotlib (pip install 'rnncore[plot]') for the PNG")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `rnncore gradflow` subcommand."""
    flow = subparsers.add_parser(
        "gradflow", help="gradient norm per input step for RNN, LSTM and GRU",
        description="||dL/dx_t|| for every input step t of the adding-problem model (loss on the last "
                    "output), from t=T-1 back to t=0, per cell: a table and a log-scale PNG. "
                    "Measured at initialisation (or after --train-steps of training), as the "
                    "geometric mean over --batches random batches.")
    flow.add_argument("--T", type=int_at_least(2), default=100, help="sequence length (default 100)")
    flow.add_argument("--hidden", type=int_at_least(1), default=32,
                      help="LSTM hidden size; the others are matched to its parameter count (default 32)")
    flow.add_argument("--cells", type=cell_list, default=("rnn", "lstm", "gru"),
                      help="comma-separated cells (default rnn,lstm,gru)")
    flow.add_argument("--batch", type=int_at_least(1), default=64, help="batch size (default 64)")
    flow.add_argument("--batches", type=int_at_least(1), default=8,
                      help="random batches to average over (default 8)")
    flow.add_argument("--train-steps", type=int_at_least(0), default=0,
                      help="train this many adding-problem steps first (default 0: at initialisation)")
    flow.add_argument("--every", type=int_at_least(1), default=10, help="table row every k steps (default 10)")
    flow.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    flow.add_argument("--no-plot", dest="plot", action="store_false", help="do not write the PNG")
    add_common(flow)
    flow.set_defaults(func=_cmd_gradflow)
