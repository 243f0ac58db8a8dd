"""Argument checks shared by the public classes.

Every failure names the argument, what it got and what it needed, and is raised before any array
reaches compiled code.
"""

from __future__ import annotations

import numbers
import operator
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def describe(value: Any) -> str:
    """A short description of a value for error messages: type, and shape/dtype for arrays."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if _is_small(value):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, (tuple, list)):
        # Never the repr of the items: they may be whole arrays.
        return f"a {type(value).__name__} of length {len(value)}"
    return type(value).__name__


_SCALARS = (numbers.Number, str, bool, type(None))


def _is_small(value: Any) -> bool:
    return isinstance(value, _SCALARS) or (
        isinstance(value, (tuple, list)) and len(value) <= 4 and all(isinstance(v, _SCALARS) for v in value)
    )


def positive_int(name: str, value: Any) -> int:
    """An integer ≥ 1; bools and non-integral numbers are refused (TypeError), ≤ 0 is ValueError."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a positive integer, got bool {value!r}")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected a positive integer, got {describe(value)}") from None
    if result <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {result}")
    return result


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {describe(value)}")
    return bool(value)


def float_dtype(name: str, value: Any) -> np.dtype:
    if value is None:  # np.dtype(None) would silently mean float64
        raise TypeError(f"{name}: expected float32 or float64, got None")
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"{name}: expected float32 or float64, got {describe(value)}") from None
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected float32 or float64, got {dtype}")
    return dtype


def optional_seed(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected None or a non-negative integer, got bool")
    try:
        seed = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected None or a non-negative integer, got {describe(value)}") from None
    if seed < 0:
        raise ValueError(f"{name}: expected None or a non-negative integer, got {seed}")
    return seed


def to_numpy(name: str, value: Any) -> np.ndarray:
    """np.asarray that also takes torch tensors (detached, on the CPU) and refuses what is not a
    real number array: bool, complex, object and string dtypes raise TypeError."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise TypeError(f"{name}: expected an array of real numbers, got {describe(value)} ({exc})") from None
    if array.dtype.kind not in "fiu":
        raise TypeError(
            f"{name}: expected an array of real numbers (float or integer dtype), got dtype {array.dtype}"
        )
    return array


def real_array(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """to_numpy, then converted once to `dtype` (float or integer input is accepted and cast)."""
    return to_numpy(name, value).astype(dtype, copy=False)


def exact_shape(name: str, array: np.ndarray, shape: tuple[int, ...], meaning: str = "") -> None:
    if array.shape != tuple(shape):
        what = f" {meaning}" if meaning else ""
        raise ValueError(f"{name}: expected shape {tuple(shape)}{what}, got {array.shape}")
