"""The compiled CPU kernels (rnncore._core) behind the backend interface (rnncore.backends).

rnncore._core re-checks shapes, dtypes and layouts so that no caller can make a kernel read or
write out of bounds; everything else was checked once by the caller.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from .._spec import param_names

__all__ = ["CppBackend", "stream_type"]


def _weights(config: Any, params: dict) -> list[np.ndarray]:
    """The params as the kernels take them: a list in PyTorch's order."""
    return [params[name] for name in param_names(config.num_layers, config.bidirectional, config.bias)]


class CppBackend:
    """The compiled kernels: forward, BPTT, prepared weights and streams."""

    name = "cpp"

    def forward(self, config, params, x, h0, c0, lengths, *, training, dropout_masks=None):
        if lengths is not None and (lengths == x.shape[0]).all():
            lengths = None  # every sequence full: the kernels' unmasked path
        return _core.forward(config, _weights(config, params), x, h0, c0, lengths, training, dropout_masks)

    def backward(self, cache, params, grad_y, grad_h_n, grad_c_n, *, need_grad_input=True,
                 need_weight_grads=None):
        config = cache.config
        names = param_names(config.num_layers, config.bidirectional, config.bias)
        flags = None if need_weight_grads is None else [bool(need_weight_grads[n]) for n in names]
        grad_x, grad_h0, grad_c0, grads = _core.backward(cache, _weights(config, params), grad_y, grad_h_n,
                                                         grad_c_n, need_grad_input, flags)
        return grad_x, grad_h0, grad_c0, dict(zip(names, grads))

    def prepare(self, config, params):
        return _PreparedCpp(_core.prepare(config, _weights(config, params)))

    def stream(self, config, params, batch_size, threads):
        if config.bidirectional:
            raise ValueError("stream: a bidirectional model cannot run frame by frame")
        impl_type = stream_type(params["weight_ih_l0"].dtype)
        sizes = (config.cell_code, config.input_size, config.hidden_size, config.num_layers)
        return impl_type(*sizes, config.bias, _weights(config, params), batch_size, threads)


def stream_type(dtype: np.dtype) -> Any:
    """rnncore._core's stream class for `dtype` (its bytes_needed sizes a stream before it is made)."""
    return _core.StreamF32 if dtype == np.float32 else _core.StreamF64


class _PreparedCpp:
    """rnncore._core's packed weights, called as the interface's prepared object."""

    __slots__ = ("_handle",)

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    @property
    def nbytes(self) -> int:
        return int(self._handle.nbytes)

    def __call__(self, x, h0, c0, lengths):
        if lengths is not None and (lengths == x.shape[0]).all():
            lengths = None
        return _core.forward_prepared(self._handle, x, h0, c0, lengths)
