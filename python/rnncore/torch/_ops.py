"""rnncore's forward and BPTT as torch custom operators (torch.library.custom_op).

rnncore::rnn_forward runs the whole stack and, when a backward pass may follow, keeps the kernels'
training cache; rnncore::rnn_backward runs BPTT from it. Both have fake (meta) implementations,
so torch.compile traces a model through them without a graph break, and register_autograd joins
them into autograd. The cache is a C++ object that no tensor can hold: rnn_forward returns a
one-element int64 "handle" tensor whose key finds it in _CACHES. The handle's storage owns a
small NumPy array, and the cache is dropped when that array is freed (weakref.finalize), which
is when autograd frees what it saved for backward (after backward, or with the graph).

(No `from __future__ import annotations` here: custom_op reads the annotations as types.)
"""

import itertools
import weakref
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from rnncore.torch import _kernels

_CACHES: dict = {}
_KEYS = itertools.count(1)


class _HandleArray(np.ndarray):
    """An ndarray that can be weakly referenced: the owner of a handle tensor's storage."""


def _new_handle(cache) -> Tensor:
    return _keyed_handle(cache)[0]


def _keyed_handle(cache) -> Tuple[Tensor, int]:
    """(a handle for cache, its key)."""
    key = next(_KEYS)
    owner = np.array([key], dtype=np.int64).view(_HandleArray)
    _CACHES[key] = cache
    weakref.finalize(owner, _CACHES.pop, key, None)
    return torch.from_numpy(owner), key


def _cache_of(handle: Tensor, key: Optional[int] = None):
    """The cache `handle` stands for (key: its key, when the caller kept it: reading it from the
    tensor costs ~10 us)."""
    if handle.numel() != 1:
        raise RuntimeError("rnncore.torch: backward through a forward call that kept no training "
                           "cache (it ran without gradients)")
    cache = _CACHES.get(int(handle[0]) if key is None else key)
    if cache is None:
        raise RuntimeError("rnncore.torch: the forward call's training cache was freed before backward")
    return cache


def _numpy(t: Optional[Tensor]):
    return None if t is None else t.detach().numpy()


def _config(cell: str, x_width: int, weights: List[Tensor], num_layers: int, bidirectional: bool,
            bias: bool) -> tuple:
    return _kernels.config(cell, x_width, weights[1].shape[1], num_layers, bidirectional, bias)


def _arrays(weights) -> list:
    """NumPy views (no copy) of the weight tensors."""
    return [_numpy(w) for w in weights]


def _run_forward(x, h0, c0, lengths, dropout_masks, weights, cell, num_layers, bidirectional, bias,
                 keep_cache=True, arrays=None):
    """The kernels' forward: (y, h_n, c_n or None, the training cache or None) as NumPy arrays.
    arrays: _arrays(weights) when the caller already has them."""
    cfg = _config(cell, x.shape[-1], weights, num_layers, bidirectional, bias)
    return _kernels.forward(cfg, _arrays(weights) if arrays is None else arrays, _numpy(x), _numpy(h0),
                            _numpy(c0), _numpy(lengths), _numpy(dropout_masks), keep_cache)


def forward_no_grad(x, h0, c0, lengths, dropout_masks, weights, cell, num_layers, bidirectional, bias,
                    arrays):
    """Eager inference (no gradient wanted): (y, h_n, c_n (LSTM; else empty)), no cache kept.
    arrays: the weights' NumPy views (_arrays(weights))."""
    y, h_n, c_n, _ = _run_forward(x, h0, c0, lengths, dropout_masks, weights, cell, num_layers,
                                  bidirectional, bias, keep_cache=False, arrays=arrays)
    return _states_out(x, y, h_n, c_n)


def _states_out(x, y, h_n, c_n):
    c_n_t = torch.from_numpy(c_n) if c_n is not None else x.new_empty((0,))
    return torch.from_numpy(y), torch.from_numpy(h_n), c_n_t


def _run_backward(cache, grad_y, grad_h_n, grad_c_n, weights, need_grad_input, need_weight_grads,
                  arrays=None):
    """The kernels' BPTT (the cache holds the configuration): (grad_x or None, grad_h0, grad_c0 or
    None, [grad or None per weight]). grad_h_n / grad_c_n None: zeros. arrays: _arrays(weights)
    when the caller already has them."""
    return _kernels.backward(
        cache, _arrays(weights) if arrays is None else arrays, _numpy(_dense(grad_y)),
        _numpy(_dense(grad_h_n)), _numpy(_dense(grad_c_n)), need_grad_input, need_weight_grads)


def _dense(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()


@torch.library.custom_op("rnncore::rnn_forward", mutates_args=(), device_types="cpu")
def rnn_forward(x: Tensor, h0: Optional[Tensor], c0: Optional[Tensor], lengths: Optional[Tensor],
                dropout_masks: Optional[Tensor], weights: List[Tensor], cell: str, num_layers: int,
                bidirectional: bool, bias: bool, keep_cache: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(y [T, N, D*H], h_n, c_n (LSTM; else an empty tensor), handle). Every tensor is CPU,
    C-contiguous, time-major; lengths int64 [N] or None; dropout_masks [L-1, T, N, D*H] or None."""
    y, h_n, c_n, cache = _run_forward(x, h0, c0, lengths, dropout_masks, weights, cell, num_layers,
                                      bidirectional, bias, keep_cache)
    handle = _new_handle(cache) if keep_cache else torch.empty((0,), dtype=torch.int64)
    return (*_states_out(x, y, h_n, c_n), handle)


@rnn_forward.register_fake
def _(x, h0, c0, lengths, dropout_masks, weights, cell, num_layers, bidirectional, bias, keep_cache):
    steps, batch = x.shape[0], x.shape[1]
    hidden, directions = weights[1].shape[1], 2 if bidirectional else 1
    state = (num_layers * directions, batch, hidden)
    return (x.new_empty((steps, batch, directions * hidden)), x.new_empty(state),
            x.new_empty(state if cell == "lstm" else (0,)),
            x.new_empty((1 if keep_cache else 0,), dtype=torch.int64))


@torch.library.custom_op("rnncore::rnn_backward", mutates_args=(), device_types="cpu")
def rnn_backward(handle: Tensor, grad_y: Tensor, grad_h_n: Tensor, grad_c_n: Optional[Tensor],
                 weights: List[Tensor], cell: str, num_layers: int, bidirectional: bool, bias: bool,
                 x_width: int, need_grad_input: bool, need_weight_grads: List[bool]
                 ) -> Tuple[Tensor, Tensor, Tensor, List[Tensor]]:
    """(grad_x (empty when not needed), grad_h0, grad_c0 (LSTM; else empty), weight grads (empty
    where need_weight_grads is False: not computed))."""
    grad_x, grad_h0, grad_c0, grad_w = _run_backward(
        _cache_of(handle), grad_y, grad_h_n, grad_c_n, weights, need_grad_input, need_weight_grads)
    empty = grad_h_n.new_empty((0,))
    return (torch.from_numpy(grad_x) if grad_x is not None else empty, torch.from_numpy(grad_h0),
            torch.from_numpy(grad_c0) if grad_c0 is not None else empty.clone(),
            [torch.from_numpy(g) if g is not None else empty.clone() for g in grad_w])


@rnn_backward.register_fake
def _(handle, grad_y, grad_h_n, grad_c_n, weights, cell, num_layers, bidirectional, bias, x_width,
      need_grad_input, need_weight_grads):
    steps, batch = grad_y.shape[0], grad_y.shape[1]
    return (grad_y.new_empty((steps, batch, x_width) if need_grad_input else (0,)),
            grad_h_n.new_empty(grad_h_n.shape),
            grad_h_n.new_empty(grad_h_n.shape if cell == "lstm" else (0,)),
            [w.new_empty(w.shape if need else (0,)) for w, need in zip(weights, need_weight_grads)])


def _setup_context(ctx, inputs, output):
    x, h0, c0, _lengths, _masks, weights, cell, num_layers, bidirectional, bias, _keep = inputs
    ctx.save_for_backward(output[3], *weights)
    ctx.call = (cell, num_layers, bidirectional, bias, x.shape[-1], h0 is not None, c0 is not None)


def _backward(ctx, grad_y, grad_h_n, grad_c_n, _grad_handle):
    handle, *weights = ctx.saved_tensors
    cell, num_layers, bidirectional, bias, x_width, has_h0, has_c0 = ctx.call
    lstm = cell == "lstm"
    need_weights = _needs_weight_grads(ctx.needs_input_grad[5], len(weights))
    grad_x, grad_h0, grad_c0, grad_w = rnn_backward(
        handle, grad_y, grad_h_n, grad_c_n if lstm else None, weights, cell, num_layers,
        bidirectional, bias, x_width, ctx.needs_input_grad[0], need_weights)
    grad_w = [g if need else None for g, need in zip(grad_w, need_weights)]
    return (grad_x if ctx.needs_input_grad[0] else None, grad_h0 if has_h0 else None,
            grad_c0 if lstm and has_c0 else None, None, None, grad_w, None, None, None, None, None)


def _needs_weight_grads(flags, count: int) -> List[bool]:
    """needs_input_grad's entry for the weights list: one flag per weight, or one for all."""
    if isinstance(flags, (list, tuple)):
        return [bool(f) for f in flags]
    return [bool(flags)] * count


rnn_forward.register_autograd(_backward, setup_context=_setup_context)


def _no_double_backward(ctx, *grads):
    raise NotImplementedError(DOUBLE_BACKWARD)


def _save_nothing(ctx, inputs, output):
    pass


rnn_backward.register_autograd(_no_double_backward, setup_context=_save_nothing)


# ---------------------------------------------------------------- eager mode
DOUBLE_BACKWARD = ("rnncore.torch: double backward (create_graph=True through an rnncore layer, e.g. "
                   "a gradient penalty) is not supported; use torch.nn's layer")


class RnnFunction(torch.autograd.Function):
    """The same forward and BPTT as the custom ops, for eager mode: a custom op's dispatch
    (schema, pytree, redispatch) cost ~2 ms of CPU per training step of a 2-layer LSTM 64x1x200
    (2.3 ms of kernels) on the 2-vCPU EPYC; an autograd.Function costs a few tens of us.
    torch.compile traces the custom ops instead (rt layers pick by torch.compiler.is_compiling())."""

    @staticmethod
    def forward(ctx, x, h0, c0, lengths, dropout_masks, cell, num_layers, bidirectional, bias, arrays,
                *weights):
        """arrays: the weights' NumPy views (_arrays(weights))."""
        y, h_n, c_n, cache = _run_forward(x, h0, c0, lengths, dropout_masks, list(weights), cell,
                                          num_layers, bidirectional, bias, arrays=arrays)
        # Saved through a handle, as the custom op does: freed with the saved tensors, after
        # backward unless retain_graph (an attribute of ctx would live as long as the output).
        handle, key = _keyed_handle(cache)
        ctx.cell = cell
        # The handle's key and the weights' NumPy views, kept for backward (views of the saved
        # weights' storage, which save_for_backward keeps alive and checks for in-place changes).
        ctx.kernel_inputs = (key, arrays)
        ctx.set_materialize_grads(False)  # an unused output's gradient reaches backward as None
        ctx.save_for_backward(handle, *weights)
        return _states_out(x, y, h_n, c_n)

    @staticmethod
    def backward(ctx, grad_y, grad_h_n, grad_c_n):
        if torch.is_grad_enabled():
            raise NotImplementedError(DOUBLE_BACKWARD)
        handle, *weights = ctx.saved_tensors  # (checks that no weight changed in place since)
        key, arrays = ctx.kernel_inputs
        needs = ctx.needs_input_grad
        need_weights = [bool(f) for f in needs[10:]]
        # An undefined state gradient (None) goes to the kernels as None: zeros.
        grad_x, grad_h0, grad_c0, grad_w = _run_backward(
            _cache_of(handle, key), grad_y, grad_h_n, grad_c_n if ctx.cell == "lstm" else None,
            weights, needs[0], need_weights, arrays=arrays)
        tensor = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
        return (tensor(grad_x) if needs[0] else None, tensor(grad_h0) if needs[1] else None,
                tensor(grad_c0) if needs[2] else None, None, None, None, None, None, None, None,
                *[tensor(g) if need else None for g, need in zip(grad_w, need_weights)])
