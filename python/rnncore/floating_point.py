"""Subnormal floats: flushed to zero while the kernels run (on by default).

Subnormal numbers (below 1.2e-38 in float32, 2.2e-308 in float64) make each x86 floating-point
operation that touches them ~100 cycles instead of a few. Gradients that vanish through time
pass through them: backpropagation through a vanilla RNN whose gradients vanish ran 8x slower
(H = 66, N = 64, T = 100: 3.3 -> 25 ms a step). So every thread that runs rnncore's kernels
flushes subnormal results to zero and reads subnormal inputs as zero for the duration of the
call (the SSE control register's FTZ and DAZ bits, restored afterwards: NumPy and the rest of
the program keep IEEE behaviour), as TensorFlow does by default and as PyTorch
(``torch.set_flush_denormal``) and ONNX Runtime offer. Results differ from IEEE arithmetic only
where a value below those limits appears, and then by less than that limit.
``set_flush_denormals(False)`` (or ``RNNCORE_FLUSH_DENORMALS=0`` in the environment) keeps IEEE
subnormals. Only x86 CPUs are affected.
"""

from __future__ import annotations

from . import _checks, _core


def set_flush_denormals(flush: bool) -> None:
    """Whether the kernels flush subnormals to zero (True, the default) or keep IEEE subnormals."""
    if not isinstance(flush, bool):
        raise TypeError(f"flush: expected True or False, got {_checks.describe(flush)}")
    _core.set_flush_denormals(flush)


def get_flush_denormals() -> bool:
    """Whether the kernels flush subnormals to zero."""
    return bool(_core.get_flush_denormals())
