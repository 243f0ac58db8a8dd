"""The one place where rnncore.torch reaches rnncore's compiled kernels: the "cpp" backend
(rnncore.backends), through the same interface the NumPy layers use.

Arrays are NumPy views of CPU tensors (no copy): time-major, C-contiguous, one dtype (float32 or
float64). Weights travel as a list in PyTorch's order (per layer and direction: w_ih, w_hh, then
b_ih, b_hh with bias), which is also the order of rnncore._spec.param_names.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from rnncore import _core, backends
from rnncore._spec import param_names

_CPP = backends.get("cpp")


def config(cell: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
           bias: bool) -> Any:
    """The kernels' model configuration (rnncore._core.ModelConfig; checks the sizes)."""
    return _core.ModelConfig(cell, input_size, hidden_size, num_layers, bidirectional, bias)


def _params(cfg: Any, weights: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    return dict(zip(param_names(cfg.num_layers, cfg.bidirectional, cfg.bias), weights))


def forward(cfg: Any, weights: Sequence[np.ndarray], x: np.ndarray, h0: Optional[np.ndarray],
            c0: Optional[np.ndarray], lengths: Optional[np.ndarray], dropout_masks: Optional[np.ndarray],
            training: bool) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Any]:
    """(y [T, N, D*H], h_n, c_n or None, cache or None). The GIL is released while it runs."""
    return _CPP.forward(cfg, _params(cfg, weights), x, h0, c0, lengths, training=training,
                        dropout_masks=dropout_masks)


def backward(cfg: Any, weights: Sequence[np.ndarray], cache: Any, grad_y: Optional[np.ndarray],
             grad_h_n: Optional[np.ndarray], grad_c_n: Optional[np.ndarray], need_grad_input: bool,
             need_weight_grads: Sequence[bool]
             ) -> tuple[Optional[np.ndarray], np.ndarray, Optional[np.ndarray], list[Optional[np.ndarray]]]:
    """BPTT for the forward call that made `cache` (whose configuration it uses): (grad_x or None
    when not needed, grad_h0, grad_c0 or None, weight gradients in the order of weights, None
    where need_weight_grads says False: those are not computed). The GIL is released."""
    params = _params(cfg, weights)
    wanted = dict(zip(params, need_weight_grads))
    grad_x, grad_h0, grad_c0, grads = _CPP.backward(cache, params, grad_y, grad_h_n, grad_c_n,
                                                    need_grad_input=need_grad_input,
                                                    need_weight_grads=wanted)
    return grad_x, grad_h0, grad_c0, [grads[name] for name in params]
