"""Type stub for the compiled module rnncore._core (private: use the rnncore package)."""

from typing import Any, Optional, Sequence

import numpy as np

class TrainingCacheF32:
    @property
    def nbytes(self) -> int: ...
    @property
    def steps(self) -> int: ...
    @property
    def batch(self) -> int: ...

class TrainingCacheF64:
    @property
    def nbytes(self) -> int: ...
    @property
    def steps(self) -> int: ...
    @property
    def batch(self) -> int: ...

def forward(
    cell: int,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    bias: bool,
    weights: Sequence[np.ndarray],
    x: np.ndarray,
    h0: Optional[np.ndarray],
    c0: Optional[np.ndarray],
    lengths: Optional[np.ndarray],
    training: bool,
) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Any]: ...
def backward(
    cell: int,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    bias: bool,
    weights: Sequence[np.ndarray],
    cache: Any,
    grad_y: Optional[np.ndarray],
    grad_h_n: Optional[np.ndarray],
    grad_c_n: Optional[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray], list[np.ndarray]]: ...
def forward_flops(
    cell: int, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool, steps: int, batch: int
) -> float: ...
def build_info() -> dict[str, Any]: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
