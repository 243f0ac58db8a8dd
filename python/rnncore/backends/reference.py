"""The NumPy reference (rnncore.reference) behind the backend interface (rnncore.backends):
slow, written to be read, and the oracle every other backend is tested against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import reference

__all__ = ["ReferenceBackend"]


@dataclass(frozen=True)
class _Cache:
    """What backward needs: the config and the reference's own cache."""

    config: Any
    inner: reference.ForwardCache
    steps: int
    batch: int


def _state_shape(config, batch: int) -> tuple[int, int, int]:
    return (config.num_layers * config.directions, batch, config.hidden_size)


def _run(config, params, x, h0, c0, lengths, dropout_masks=None):
    steps, batch = x.shape[:2]
    zeros = np.zeros(_state_shape(config, batch), dtype=x.dtype)
    lstm = config.cell == "lstm"
    return reference.forward(
        config.cell, params, x, zeros if h0 is None else h0,
        (zeros if c0 is None else c0) if lstm else None,
        np.full(batch, steps, dtype=np.int64) if lengths is None else lengths,
        num_layers=config.num_layers, bidirectional=config.bidirectional, dropout_masks=dropout_masks)


class ReferenceBackend:
    """rnncore.reference: forward, BPTT and prepared weights (a copy); no streams."""

    name = "numpy"

    def forward(self, config, params, x, h0, c0, lengths, *, training, dropout_masks=None):
        y, h_n, c_n, inner = _run(config, params, x, h0, c0, lengths, dropout_masks)
        cache = _Cache(config, inner, x.shape[0], x.shape[1]) if training else None
        return y, h_n, c_n, cache

    def backward(self, cache, params, grad_y, grad_h_n, grad_c_n, *, need_grad_input=True,
                 need_weight_grads=None):
        config = cache.config
        dtype = params["weight_hh_l0"].dtype
        if grad_y is None:
            grad_y = np.zeros((cache.steps, cache.batch, config.directions * config.hidden_size), dtype)
        if grad_h_n is None:
            grad_h_n = np.zeros(_state_shape(config, cache.batch), dtype)
        grad_x, grad_h0, grad_c0, grads = reference.backward(
            config.cell, params, cache.inner, grad_y, grad_h_n, grad_c_n if config.cell == "lstm" else None)
        # The oracle computes every gradient; it drops the unwanted ones so that its results
        # have the same form as a backend's that skips them.
        if need_weight_grads is not None:
            grads = {name: (value if need_weight_grads[name] else None) for name, value in grads.items()}
        return (grad_x if need_grad_input else None), grad_h0, grad_c0, grads

    def prepare(self, config, params):
        return _PreparedReference(config, {name: value.copy() for name, value in params.items()})

    def stream(self, config, params, batch_size, threads):
        raise ValueError("stream: the numpy backend has no streams (use backend 'cpp')")


class _PreparedReference:
    """A copy of the weights, run through the reference on each call."""

    __slots__ = ("_config", "_params")

    def __init__(self, config: Any, params: dict) -> None:
        self._config = config
        self._params = params

    @property
    def nbytes(self) -> int:
        return int(sum(value.nbytes for value in self._params.values()))

    def __call__(self, x, h0, c0, lengths):
        y, h_n, c_n, _ = _run(self._config, self._params, x, h0, c0, lengths)
        return y, h_n, c_n
