"""The one place where rnncore.torch calls rnncore's compiled kernels.

Everything else in rnncore.torch goes through forward() and backward() here, so that a change in
how the kernels are reached (a backend interface) touches this file only. Arrays are NumPy views
of CPU tensors (no copy): time-major, C-contiguous, one dtype (float32 or float64).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from rnncore import _core
from rnncore._compiled import CELL_CODES


def config(cell: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
           bias: bool) -> tuple:
    """The kernels' model configuration: (cell code, sizes..., bidirectional, bias)."""
    return (CELL_CODES[cell], input_size, hidden_size, num_layers, bidirectional, bias)


def forward(cfg: tuple, weights: Sequence[np.ndarray], x: np.ndarray, h0: Optional[np.ndarray],
            c0: Optional[np.ndarray], lengths: Optional[np.ndarray], dropout_masks: Optional[np.ndarray],
            training: bool) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Any]:
    """(y [T, N, D*H], h_n, c_n or None, cache or None). The GIL is released while it runs.
    weights: PyTorch's order (per layer and direction: w_ih, w_hh, then b_ih, b_hh with bias)."""
    return _core.forward(*cfg, list(weights), x, h0, c0, lengths, training, dropout_masks)


def backward(cfg: tuple, weights: Sequence[np.ndarray], cache: Any, grad_y: Optional[np.ndarray],
             grad_h_n: Optional[np.ndarray], grad_c_n: Optional[np.ndarray], need_grad_input: bool,
             need_weight_grads: Sequence[bool]
             ) -> tuple[Optional[np.ndarray], np.ndarray, Optional[np.ndarray], list[Optional[np.ndarray]]]:
    """BPTT for the forward call that made `cache`: (grad_x or None when not needed, grad_h0,
    grad_c0 or None, weight gradients in the order of weights, None where need_weight_grads
    says False: those are not computed). The GIL is released."""
    return _core.backward(*cfg, list(weights), cache, grad_y, grad_h_n, grad_c_n, need_grad_input,
                          list(need_weight_grads))
