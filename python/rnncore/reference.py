"""Plain-NumPy forward pass and backpropagation through time for RNN, LSTM and GRU.

This module is the oracle: every compiled kernel is checked against it, so it is written to be
read, not to be fast. It follows PyTorch's conventions exactly (gate order, bias placement,
parameter names and shapes, layout of bidirectional outputs and final states), so weights move
between the two unchanged.

Shapes used throughout (time-major, always batched):

    x        (T, N, I)        T steps, N sequences, I input features
    y        (T, N, D*H)      D = 2 if bidirectional else 1; [forward, reverse] on the last axis
    h0, h_n  (D*L, N, H)      L layers; ordered layer0-fwd, layer0-rev, layer1-fwd, ...
    c0, c_n  (D*L, N, H)      LSTM only
    lengths  (N,)             sequence b runs steps 0 .. lengths[b]-1 only

Parameters use PyTorch's names: ``weight_ih_l{k}[_reverse]`` (G*H, I_k), ``weight_hh_l{k}…``
(G*H, H), ``bias_ih_l{k}…`` (G*H,), ``bias_hh_l{k}…`` (G*H,), where G is :func:`gate_count`,
I_0 is the input size and I_k = D*H for k > 0. The bias keys are absent for a model without bias.

The cell math is defined once, in the ``_*_step`` functions; the public single-step cells
(:func:`rnn_cell`, :func:`lstm_cell`, :func:`gru_cell`) and :func:`forward` both use them, and
each step's backward sits right after its forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from ._spec import CELLS, gate_count

__all__ = [
    "CELLS",
    "ForwardCache",
    "backward",
    "forward",
    "gate_count",
    "gru_cell",
    "lstm_cell",
    "rnn_cell",
]



# ---------------------------------------------------------------------------------------------
# Pointwise functions


def _sigmoid(a: np.ndarray) -> np.ndarray:
    # exp of a non-positive number never overflows, so neither branch warns for large |a|.
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def _affine(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray]) -> np.ndarray:
    return x @ w.T if b is None else x @ w.T + b


# ---------------------------------------------------------------------------------------------
# One step of each cell, forward and backward. A backward returns dL/d(x W_ih^T + b_ih), dL/d(h W_hh^T
# + b_hh) (they differ for the GRU only, whose W_hn h + b_hn sits inside the product with r) and the
# gradient reaching the previous state directly; _backward_direction derives the rest for every cell.


class _RNNGates(NamedTuple):
    h_new: np.ndarray


def _rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity: str) -> _RNNGates:
    a = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)
    if nonlinearity == "tanh":
        return _RNNGates(np.tanh(a))
    if nonlinearity == "relu":
        return _RNNGates(np.maximum(a, 0))
    raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def _rnn_step_backward(gates: _RNNGates, grad_h_new, nonlinearity: str):
    h_new = gates.h_new
    if nonlinearity == "tanh":
        grad_a = grad_h_new * (1 - h_new * h_new)
    else:
        # Derivative 0 at a == 0, as PyTorch's threshold_backward.
        grad_a = np.where(h_new > 0, grad_h_new, 0)
    return grad_a, grad_a, None, None


class _LSTMGates(NamedTuple):
    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray
    c_prev: np.ndarray
    tanh_c_new: np.ndarray
    h_new: np.ndarray
    c_new: np.ndarray


def _lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh) -> _LSTMGates:
    a = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=-1)
    i, f, g, o = _sigmoid(a_i), _sigmoid(a_f), np.tanh(a_g), _sigmoid(a_o)
    c_new = f * c + i * g
    tanh_c_new = np.tanh(c_new)
    h_new = o * tanh_c_new
    return _LSTMGates(i, f, g, o, c, tanh_c_new, h_new, c_new)


def _lstm_step_backward(gates: _LSTMGates, grad_h_new, grad_c_new):
    i, f, g, o, c_prev, tanh_c_new = gates[:6]
    grad_c = grad_c_new + grad_h_new * o * (1 - tanh_c_new * tanh_c_new)
    grad_a = np.concatenate(
        [
            grad_c * g * i * (1 - i),
            grad_c * c_prev * f * (1 - f),
            grad_c * i * (1 - g * g),
            grad_h_new * tanh_c_new * o * (1 - o),
        ],
        axis=-1,
    )
    return grad_a, grad_a, None, grad_c * f


class _GRUGates(NamedTuple):
    r: np.ndarray
    z: np.ndarray
    n: np.ndarray
    hidden_n: np.ndarray  # W_hn h + b_hn, needed for dL/dr
    h_prev: np.ndarray
    h_new: np.ndarray


def _gru_step(x, h, w_ih, w_hh, b_ih, b_hh) -> _GRUGates:
    input_r, input_z, input_n = np.split(_affine(x, w_ih, b_ih), 3, axis=-1)
    hidden_r, hidden_z, hidden_n = np.split(_affine(h, w_hh, b_hh), 3, axis=-1)
    r = _sigmoid(input_r + hidden_r)
    z = _sigmoid(input_z + hidden_z)
    n = np.tanh(input_n + r * hidden_n)
    h_new = (1 - z) * n + z * h
    return _GRUGates(r, z, n, hidden_n, h, h_new)


def _gru_step_backward(gates: _GRUGates, grad_h_new):
    r, z, n, hidden_n, h_prev = gates[:5]
    grad_a_n = grad_h_new * (1 - z) * (1 - n * n)
    grad_a_r = grad_a_n * hidden_n * r * (1 - r)
    grad_a_z = grad_h_new * (h_prev - n) * z * (1 - z)
    grad_gates_x = np.concatenate([grad_a_r, grad_a_z, grad_a_n], axis=-1)
    grad_gates_h = np.concatenate([grad_a_r, grad_a_z, grad_a_n * r], axis=-1)
    return grad_gates_x, grad_gates_h, grad_h_new * z, None


# ---------------------------------------------------------------------------------------------
# Public single-step cells (x: (N, I), h and c: (N, H); weights as in the module docstring).


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity: str = "tanh") -> np.ndarray:
    """One Elman RNN step: ``act(x W_ih^T + b_ih + h W_hh^T + b_hh)``; returns h_new (N, H)."""
    return _rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity).h_new


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM step with PyTorch's gate order i, f, g, o; returns (h_new, c_new), each (N, H)."""
    gates = _lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh)
    return gates.h_new, gates.c_new


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None) -> np.ndarray:
    """One GRU step with PyTorch's gate order r, z, n (b_hn inside r*(...)); returns h_new."""
    return _gru_step(x, h, w_ih, w_hh, b_ih, b_hh).h_new


# ---------------------------------------------------------------------------------------------
# Dispatch by cell name, so the sequence code below is the same for all cells.


def _step(cell: str, x, h, c, weights: _Weights):
    if cell == "lstm":
        return _lstm_step(x, h, c, *weights)
    if cell == "gru":
        return _gru_step(x, h, *weights)
    return _rnn_step(x, h, *weights, nonlinearity=cell[len("rnn_"):])


def _step_backward(cell: str, gates, grad_h_new, grad_c_new):
    if cell == "lstm":
        return _lstm_step_backward(gates, grad_h_new, grad_c_new)
    if cell == "gru":
        return _gru_step_backward(gates, grad_h_new)
    return _rnn_step_backward(gates, grad_h_new, nonlinearity=cell[len("rnn_"):])


# ---------------------------------------------------------------------------------------------
# Sequences


class _Weights(NamedTuple):
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: Optional[np.ndarray]
    b_hh: Optional[np.ndarray]


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction == 1 else "")


def _weights(params: dict, layer: int, direction: int) -> _Weights:
    s = _suffix(layer, direction)
    return _Weights(
        params[f"weight_ih{s}"],
        params[f"weight_hh{s}"],
        params.get(f"bias_ih{s}"),
        params.get(f"bias_hh{s}"),
    )


@dataclass
class _DirectionCache:
    """What backward needs from one direction of one layer."""

    x: np.ndarray  # (T, N, I_k): this layer's input
    h_prev: np.ndarray  # (T, N, H): the state each step t started from
    active: np.ndarray  # (T, N, 1) bool: t < lengths
    gates: list  # per t, the cell's gate NamedTuple


@dataclass
class ForwardCache:
    """Opaque to callers: everything :func:`backward` needs from :func:`forward`."""

    num_layers: int
    bidirectional: bool
    has_bias: bool
    dtype: np.dtype
    layers: list  # [layer][direction] -> _DirectionCache
    dropout_masks: Optional[np.ndarray] = None  # (L-1, T, N, D*H) or None


def _forward_direction(cell, x, h, c, weights, active, reverse):
    """Run one direction of one layer over the whole sequence.

    A sequence whose step t is inactive (t >= its length) keeps its state and emits zero; that
    one rule gives both directions their variable-length behaviour, because the reverse
    direction meets a sequence's padding first and so starts from h0 at its own last step.
    """
    steps, batch, _ = x.shape
    y = np.zeros((steps, batch, h.shape[-1]), dtype=x.dtype)
    h_prev = np.zeros_like(y)
    gates_per_step = [None] * steps
    for t in (reversed(range(steps)) if reverse else range(steps)):
        gates = _step(cell, x[t], h, c, weights)
        h_prev[t] = h
        gates_per_step[t] = gates
        h = np.where(active[t], gates.h_new, h)
        if c is not None:
            c = np.where(active[t], gates.c_new, c)
        y[t] = np.where(active[t], gates.h_new, 0)
    return y, h, c, _DirectionCache(x, h_prev, active, gates_per_step)


def forward(cell, params, x, h0, c0, lengths, *, num_layers, bidirectional, dropout_masks=None):
    """Forward pass of a (stacked, optionally bidirectional) RNN / LSTM / GRU.

    cell: one of CELLS. params: PyTorch-named weights (module docstring); absent bias keys mean
    no bias. x: (T, N, I). h0: (D*L, N, H). c0: (D*L, N, H) for "lstm", None otherwise.
    lengths: int array (N,) with values in 1..T, in any order (None means all T).
    Computes in x.dtype; params and states must be in the same dtype.
    dropout_masks: None or (L-1, T, N, D*H): the output of every layer below the top is
    multiplied by its mask (values 0 or 1/(1-p): dropout between layers) before the next reads it.

    Returns (y, h_n, c_n, cache): y (T, N, D*H), zero at t >= lengths[b]; h_n (D*L, N, H);
    c_n (D*L, N, H) or None; cache for :func:`backward`.
    """
    gate_count(cell)  # rejects an unknown cell name before any work
    steps, batch, _ = x.shape
    directions = 2 if bidirectional else 1
    if lengths is None:
        lengths = np.full(batch, steps)
    active = (np.arange(steps)[:, None] < np.asarray(lengths)[None, :])[:, :, None]
    is_lstm = cell == "lstm"

    h_n = np.empty_like(h0)
    c_n = np.empty_like(c0) if is_lstm else None
    cache = ForwardCache(
        num_layers=num_layers,
        bidirectional=bidirectional,
        has_bias="bias_ih_l0" in params,
        dtype=x.dtype,
        layers=[],
        dropout_masks=dropout_masks,
    )
    layer_input = x
    for layer in range(num_layers):
        outputs, layer_cache = [], []
        for direction in range(directions):
            index = layer * directions + direction
            y_dir, h_n[index], c_last, dir_cache = _forward_direction(
                cell,
                layer_input,
                h0[index],
                c0[index] if is_lstm else None,
                _weights(params, layer, direction),
                active,
                reverse=direction == 1,
            )
            if is_lstm:
                c_n[index] = c_last
            outputs.append(y_dir)
            layer_cache.append(dir_cache)
        cache.layers.append(layer_cache)
        layer_input = np.concatenate(outputs, axis=-1)
        if dropout_masks is not None and layer + 1 < num_layers:
            layer_input = layer_input * dropout_masks[layer]
    return layer_input, h_n, c_n, cache


def _backward_direction(cell, weights, saved: _DirectionCache, grad_y, grad_h, grad_c, reverse):
    """BPTT through one direction of one layer.

    grad_y: (T, N, H) for this direction's outputs; grad_h / grad_c: (N, H) for its final state.
    Returns grad_x (T, N, I_k), grad_h0, grad_c0 (or None) and the parameter gradients as a
    _Weights (bias entries None when the layer has none).
    """
    steps = grad_y.shape[0]
    grad_gates_x = [None] * steps
    grad_gates_h = [None] * steps
    for t in (range(steps) if reverse else reversed(range(steps))):
        active = saved.active[t]
        # An inactive step passes its state through unchanged and emits a constant zero, so
        # its grad_y is dropped and the carried gradient skips the cell.
        grad_h_new = np.where(active, grad_h + grad_y[t], 0)
        grad_c_new = np.where(active, grad_c, 0) if grad_c is not None else None
        grad_x_t, grad_h_t, grad_h_direct, grad_c_prev = _step_backward(
            cell, saved.gates[t], grad_h_new, grad_c_new
        )
        grad_gates_x[t], grad_gates_h[t] = grad_x_t, grad_h_t
        grad_h = np.where(active, 0, grad_h) + grad_h_t @ weights.w_hh
        if grad_h_direct is not None:
            grad_h = grad_h + grad_h_direct
        if grad_c is not None:
            grad_c = np.where(active, 0, grad_c) + grad_c_prev

    grad_gates_x = np.stack(grad_gates_x)
    grad_gates_h = np.stack(grad_gates_h)
    # One contraction over all (t, n) for each weight, instead of a small product per step.
    grad_weights = _Weights(
        np.tensordot(grad_gates_x, saved.x, axes=([0, 1], [0, 1])),
        np.tensordot(grad_gates_h, saved.h_prev, axes=([0, 1], [0, 1])),
        grad_gates_x.sum(axis=(0, 1)) if weights.b_ih is not None else None,
        grad_gates_h.sum(axis=(0, 1)) if weights.b_hh is not None else None,
    )
    return grad_gates_x @ weights.w_ih, grad_h, grad_c, grad_weights


def backward(cell, params, cache: ForwardCache, grad_y, grad_h_n, grad_c_n):
    """Backpropagation through time for the :func:`forward` call that produced ``cache``.

    grad_y: (T, N, D*H), ignored at t >= lengths[b]. grad_h_n: (D*L, N, H) (None = zeros).
    grad_c_n: (D*L, N, H) or None (= zeros) for "lstm"; None for the other cells.

    Returns (grad_x (T, N, I), grad_h0 (D*L, N, H), grad_c0 (D*L, N, H) for "lstm" else None,
    grad_params with the same keys as params).
    """
    dtype = cache.dtype
    directions = 2 if cache.bidirectional else 1
    is_lstm = cell == "lstm"
    hidden_size = params["weight_hh_l0"].shape[1]
    grad_y = np.asarray(grad_y, dtype=dtype)
    state_shape = (directions * cache.num_layers, grad_y.shape[1], hidden_size)
    grad_h_n = np.zeros(state_shape, dtype) if grad_h_n is None else np.asarray(grad_h_n, dtype)
    if is_lstm:
        grad_c_n = np.zeros(state_shape, dtype) if grad_c_n is None else np.asarray(grad_c_n, dtype)

    grad_h0 = np.empty(state_shape, dtype)
    grad_c0 = np.empty(state_shape, dtype) if is_lstm else None
    grad_params = {}
    grad_output = grad_y
    for layer in reversed(range(cache.num_layers)):
        grad_input = 0
        for direction in range(directions):
            index = layer * directions + direction
            weights = _weights(params, layer, direction)
            grad_x, grad_h0[index], grad_c_first, grad_weights = _backward_direction(
                cell,
                weights,
                cache.layers[layer][direction],
                grad_output[..., direction * hidden_size:(direction + 1) * hidden_size],
                grad_h_n[index],
                grad_c_n[index] if is_lstm else None,
                reverse=direction == 1,
            )
            if is_lstm:
                grad_c0[index] = grad_c_first
            # Both directions read the same input, so their input gradients add up.
            grad_input = grad_input + grad_x
            s = _suffix(layer, direction)
            grad_params[f"weight_ih{s}"] = grad_weights.w_ih
            grad_params[f"weight_hh{s}"] = grad_weights.w_hh
            if cache.has_bias:
                grad_params[f"bias_ih{s}"] = grad_weights.b_ih
                grad_params[f"bias_hh{s}"] = grad_weights.b_hh
        if cache.dropout_masks is not None and layer > 0:
            grad_input = grad_input * cache.dropout_masks[layer - 1]
        grad_output = grad_input
    grad_params = {name: grad_params[name] for name in params}
    return grad_output, grad_h0, grad_c0, grad_params
