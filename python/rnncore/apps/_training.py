"""What the training commands of rnncore.apps share: the loop (Adam, clipping, a progress bar,
Ctrl-C keeping what was reached) and the options every one of them takes."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import _cli
from .._progress import progress_bar
from ..nn.grads import clip_grad_norm
from ..nn.optim import Adam


@dataclass
class TrainingRecord:
    steps_done: int = 0
    seconds: float = 0.0  # in the training steps only
    first_loss: float = float("nan")  # the mean loss of the first 10 steps
    final_loss: float = float("nan")  # the running mean at the end
    interrupted: bool = False


def train(parameters: dict, loss_and_grads: Callable[[], tuple[float, Any]], steps: int, lr: float,
          clip: float, desc: str, progress: bool) -> TrainingRecord:
    """``steps`` Adam steps on ``loss_and_grads()`` (the next batch's loss and gradients, nested
    like ``parameters``), gradients clipped to a global norm of ``clip``. Ctrl-C stops the loop
    and the record says how far it got."""
    optimizer = Adam(parameters, lr=lr)
    record, first = TrainingRecord(), []
    bar = progress_bar(steps, desc=desc, disable=not progress)
    try:
        for step in range(1, steps + 1):
            start = time.perf_counter()
            loss, grads = loss_and_grads()
            clip_grad_norm(grads, clip)
            optimizer.step(grads)
            record.seconds += time.perf_counter() - start
            record.steps_done = step
            if len(first) < 10:
                first.append(loss)
                record.first_loss = float(np.mean(first))
            running = record.final_loss
            record.final_loss = loss if step == 1 else 0.97 * running + 0.03 * loss
            if step % 10 == 0:
                bar.set_postfix_str(f"loss {record.final_loss:.3f}", refresh=False)
            bar.update(1)
    except KeyboardInterrupt:
        record.interrupted = True
    finally:
        bar.close()
    return record


def add_training_options(parser: argparse.ArgumentParser, defaults: Any, examples: str) -> None:
    """--steps, --batch, --lr (defaults from the config class ``defaults``), --out, --no-plot."""
    parser.add_argument("--steps", type=_cli.int_at_least(1), default=defaults.steps,
                        help=f"training steps per model (default {defaults.steps})")
    parser.add_argument("--batch", type=_cli.int_at_least(1), default=defaults.batch,
                        help=f"{examples} per step (default {defaults.batch})")
    parser.add_argument("--lr", type=_cli.float_range(0.0), default=defaults.lr,
                        help=f"Adam learning rate (default {defaults.lr:g})")
    parser.add_argument("--out", default=_cli.DEFAULT_OUT, help=f"output folder (default {_cli.DEFAULT_OUT})")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="do not write the PNGs")
