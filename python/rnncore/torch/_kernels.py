"""The one place where rnncore.torch reaches rnncore's compiled kernels (rnncore._core, the "cpp"
backend's kernels), with the weights as the list the kernels take.

Arrays are NumPy views of CPU tensors (no copy): time-major, C-contiguous, one dtype (float32 or
float64). Weights travel as a list in PyTorch's order (per layer and direction: w_ih, w_hh, then
b_ih, b_hh with bias), which is also the order of rnncore._spec.param_names and the order
rnncore._core takes. (Through the backend interface (rnncore.backends), which takes and returns
dicts by name, a 2-layer call spent ~30 us of a training call's ~0.1 ms of kernels at T = 1
turning lists into dicts and back.) rnncore._core checks every array's shape, dtype and layout
again, as it does for the backend.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from rnncore import _core


def config(cell: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
           bias: bool) -> Any:
    """The kernels' model configuration (rnncore._core.ModelConfig; checks the sizes)."""
    return _core.ModelConfig(cell, input_size, hidden_size, num_layers, bidirectional, bias)


def forward(cfg: Any, weights: Sequence[np.ndarray], x: np.ndarray, h0: Optional[np.ndarray],
            c0: Optional[np.ndarray], lengths: Optional[np.ndarray], dropout_masks: Optional[np.ndarray],
            training: bool) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Any]:
    """(y [T, N, D*H], h_n, c_n or None, cache or None). lengths: None where every sequence runs
    all T steps (the caller's check). The GIL is released while it runs."""
    return _core.forward(cfg, weights, x, h0, c0, lengths, training, dropout_masks)


def backward(cache: Any, weights: Sequence[np.ndarray], grad_y: Optional[np.ndarray],
             grad_h_n: Optional[np.ndarray], grad_c_n: Optional[np.ndarray], need_grad_input: bool,
             need_weight_grads: Sequence[bool]
             ) -> tuple[Optional[np.ndarray], np.ndarray, Optional[np.ndarray], list[Optional[np.ndarray]]]:
    """BPTT for the forward call that made `cache` (whose configuration it uses): (grad_x or None
    when not needed, grad_h0, grad_c0 or None, weight gradients in the order of weights, None
    where need_weight_grads says False: those are not computed). The GIL is released."""
    return _core.backward(cache, weights, grad_y, grad_h_n, grad_c_n, need_grad_input, need_weight_grads)
