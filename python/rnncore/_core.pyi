"""Type stub for the compiled module rnncore._core (private: use the rnncore package)."""

from typing import Any, Optional, Sequence

import numpy as np

class _TrainingCache:
    @property
    def nbytes(self) -> int: ...
    @property
    def steps(self) -> int: ...
    @property
    def batch(self) -> int: ...

class TrainingCacheF32(_TrainingCache): ...
class TrainingCacheF64(_TrainingCache): ...

class _Prepared:
    @property
    def nbytes(self) -> int: ...

class PreparedF32(_Prepared): ...
class PreparedF64(_Prepared): ...

def prepare(
    cell: int,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    bias: bool,
    weights: Sequence[np.ndarray],
) -> _Prepared: ...
def forward_prepared(
    prepared: _Prepared,
    x: np.ndarray,
    h0: Optional[np.ndarray],
    c0: Optional[np.ndarray],
    lengths: Optional[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]: ...

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
    dropout_masks: Optional[np.ndarray] = None,
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
    need_grad_input: bool = True,
    need_weight_grads: Optional[Sequence[bool]] = None,
) -> tuple[Optional[np.ndarray], np.ndarray, Optional[np.ndarray], list[Optional[np.ndarray]]]: ...
def forward_flops(
    cell: int, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool, steps: int, batch: int
) -> float: ...
def wavefront_threads(
    cell: int,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    steps: int,
    batch: int,
    dtype: str = "float32",
) -> int: ...
def time_loop_split(
    cell: int, hidden_size: int, steps: int, batch: int, dtype: str = "float32"
) -> tuple[int, str]: ...
def build_info() -> dict[str, Any]: ...
def cpu_isa_features() -> list[str] | None: ...
def l2_cache_bytes() -> float: ...
def set_flush_denormals(flush: bool) -> None: ...
def get_flush_denormals() -> bool: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def set_thread_plan(plan: str) -> None: ...
def get_thread_plan() -> str: ...
def thread_plan_report() -> list[dict[str, Any]]: ...
def reset_thread_plan() -> None: ...
def empty_cache() -> int: ...
def cache_info() -> dict[str, int]: ...

MAX_SIZE: int  # sizes are int64 in C++ (rnncore/checked.h)
MAX_ARRAY_BYTES: int  # the most bytes one array may hold

class _Stream:
    """A packed, stateful stream (rnncore/stream.h). One caller at a time: a call that overlaps
    another thread's call on the same stream raises RuntimeError and changes nothing."""

    def __init__(
        self,
        cell: int,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        weights: Sequence[np.ndarray],
        batch_size: int,
        threads: int = 1,
    ) -> None: ...
    @staticmethod
    def bytes_needed(cell: int, input_size: int, hidden_size: int, num_layers: int, batch_size: int) -> int: ...
    def step(self, x_t: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray: ...
    def step_many(self, chunk: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray: ...
    def get_state(self) -> tuple[np.ndarray, Optional[np.ndarray]]: ...
    def set_state(self, h: np.ndarray, c: Optional[np.ndarray] = None) -> None: ...
    def reset(self) -> None: ...
    def reset_rows(self, rows: Sequence[int]) -> None: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def threads(self) -> int: ...

class StreamF32(_Stream): ...
class StreamF64(_Stream): ...

class ModelFileError(ValueError): ...

def read_model_file(
    path: str, dtype: str = "float32", max_bytes: int = ...
) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...
def serialize_model(
    cell: int,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    bias: bool,
    weights: Sequence[np.ndarray],
) -> bytes: ...
def gemm_gflops(rows: int, cols: int, depth: int, repeats: int = 5) -> float: ...
