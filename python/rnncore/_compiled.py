"""The compiled backend behind the layer classes, with the same interface as `rnncore.reference`.

Arrays arrive canonical (time-major, C-contiguous, the model's dtype); rnncore._core checks them
again before any kernel runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core

CELL_CODES = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3}


def param_names(num_layers: int, bidirectional: bool, bias: bool) -> list[str]:
    """PyTorch's parameter order: per layer, per direction, weight_ih, weight_hh, bias_ih, bias_hh."""
    kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if bias else ("weight_ih", "weight_hh")
    suffixes = ("", "_reverse") if bidirectional else ("",)
    return [f"{kind}_l{layer}{suffix}" for layer in range(num_layers) for suffix in suffixes for kind in kinds]


def _config(cell: str, params: dict[str, np.ndarray]) -> tuple:
    """(cell code, input_size, hidden_size, num_layers, bidirectional, bias), read off the params."""
    num_layers = sum(1 for name in params if name.startswith("weight_hh_l") and not name.endswith("_reverse"))
    return (
        CELL_CODES[cell],
        params["weight_ih_l0"].shape[1],
        params["weight_hh_l0"].shape[1],
        num_layers,
        "weight_hh_l0_reverse" in params,
        "bias_ih_l0" in params,
    )


def _weights(config: tuple, params: dict[str, np.ndarray]) -> tuple[list[str], list[np.ndarray]]:
    names = param_names(*config[3:])
    return names, [params[name] for name in names]


def forward(cell, params, x, h0, c0, lengths, *, num_layers, bidirectional, training=True,
            dropout_masks=None):
    """See rnncore.reference.forward; h0, c0 and lengths may also be None here (zeros / all T).
    With training=False no cache is kept and the fourth result is None."""
    config = _config(cell, params)
    if config[3:5] != (num_layers, bidirectional):
        raise ValueError(f"params: hold {config[3]} layers (bidirectional={config[4]}), "
                         f"expected {num_layers} (bidirectional={bidirectional})")
    _, weights = _weights(config, params)
    y, h_n, c_n, cache = _core.forward(*config, weights, x, h0, c0, lengths, training, dropout_masks)
    return y, h_n, c_n, cache


def prepare(cell, params) -> Any:
    """The weights packed once for forward_prepared (rnncore._core's opaque handle, a copy)."""
    config = _config(cell, params)
    _, weights = _weights(config, params)
    return _core.prepare(*config, weights)


def forward_prepared(prepared: Any, x, h0, c0, lengths):
    """Inference over prepare()'s handle: (y, h_n, c_n or None); arguments as for forward."""
    return _core.forward_prepared(prepared, x, h0, c0, lengths)


def backward(cell, params, cache: Any, grad_y, grad_h_n, grad_c_n):
    """See rnncore.reference.backward; grad_y and grad_h_n may also be None (zeros)."""
    config = _config(cell, params)
    names, weights = _weights(config, params)
    grad_x, grad_h0, grad_c0, grad_weights = _core.backward(*config, weights, cache, grad_y, grad_h_n, grad_c_n)
    return grad_x, grad_h0, grad_c0, dict(zip(names, grad_weights))
