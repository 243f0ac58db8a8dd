"""Gradient utilities: global norms, clipping, and per-time-step gradient norms.

Gradients may be given as a single ndarray, a mapping ``{name: ndarray}`` (nested mappings
allowed), or a list/tuple of any of these — e.g. ``[lstm_grads.params, head_grads]``.
Names need not be unique here (two layers may both have "weight"), but for in-place
clipping one array may not appear twice.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._checks import FLOAT_DTYPES, boolean, describe, to_numpy

__all__ = ["global_norm", "clip_grad_norm", "per_step_grad_norms"]

# The same epsilon as torch.nn.utils.clip_grad_norm_, so clipped values agree with PyTorch.
_CLIP_EPS = 1e-6


def _leaves(grads: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(grads, Mapping):
        for key, value in grads.items():
            yield from _leaves(value, f"{path}[{key!r}]")
    elif isinstance(grads, (list, tuple)):
        for index, value in enumerate(grads):
            yield from _leaves(value, f"{path}[{index}]")
    else:
        yield path, grads


def _real_number(name: str, value: Any, need: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {need}, got {describe(value)}")
    return float(value)


def _norm_type(norm_type: Any) -> float:
    need = "a number > 0, inf or 'inf'"
    if isinstance(norm_type, str):
        if norm_type.lower() != "inf":
            raise ValueError(f"norm_type: expected {need}, got {norm_type!r}")
        return math.inf
    value = _real_number("norm_type", norm_type, need)
    if not value > 0:  # also NaN
        raise ValueError(f"norm_type: expected {need}, got {value:g}")
    return value


def _max_norm(max_norm: Any) -> float:
    need = "a number >= 0 (inf: never clip)"
    value = _real_number("max_norm", max_norm, need)
    if not value >= 0:  # also NaN
        raise ValueError(f"max_norm: expected {need}, got {value:g}")
    return value


def _vector_norm(values: np.ndarray, p: float) -> float:
    """The p-norm of all entries, in float64, without overflow for large entries."""
    if values.size == 0:
        return 0.0
    magnitudes = np.abs(values.astype(np.float64, copy=False))
    largest = float(magnitudes.max())  # NaN if any entry is NaN
    if p == math.inf or largest == 0.0 or not math.isfinite(largest):
        return largest
    # Dividing by the largest entry first keeps |x|**p in range for any p.
    scaled = magnitudes / largest
    if p == 2.0:
        return largest * math.sqrt(float(np.dot(scaled.ravel(), scaled.ravel())))
    return largest * float(np.sum(scaled**p)) ** (1.0 / p)


def _norm_of_arrays(arrays: list[np.ndarray], p: float) -> float:
    # Like PyTorch: the norm of the per-array norms, which equals the norm of everything.
    return _vector_norm(np.array([_vector_norm(a, p) for a in arrays], dtype=np.float64), p)


def global_norm(grads: Any, norm_type: float | str = 2.0) -> float:
    """The p-norm of all gradient entries taken together, as one vector.

    Args:
        grads: an array, a (nested) mapping of arrays, or a list/tuple of those; leaves are
            anything ``np.asarray`` takes with real entries.
        norm_type: p > 0, or ``inf`` / ``"inf"`` for the largest absolute entry.
    Returns:
        A Python float, computed in float64 (0.0 for no entries; NaN or inf when an entry is).
    """
    p = _norm_type(norm_type)
    arrays = [to_numpy(label, leaf) for label, leaf in _leaves(grads, "grads")]
    return _norm_of_arrays(arrays, p)


def clip_grad_norm(
    grads: Any,
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Scale the gradients in place so that their global norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: with ``total = global_norm(grads, norm_type)``,
    every array is multiplied by ``max_norm / (total + 1e-6)`` when that is below 1, and
    left alone otherwise.

    Args:
        grads: an ndarray, a (nested) mapping of ndarrays or a list/tuple of those; each a
            writeable float32/float64 ndarray, no array twice.
        max_norm: the largest allowed norm, >= 0 (inf: never clip).
        norm_type: p > 0, or ``inf`` / ``"inf"``.
        error_if_nonfinite: what to do when the total norm is NaN or inf. False (default):
            leave the gradients unchanged and return that norm, so the caller can skip the
            step (PyTorch would scale them into NaNs instead). True: raise ``ValueError``,
            gradients unchanged.
    Returns:
        The total norm before clipping, a Python float.
    """
    max_norm = _max_norm(max_norm)
    p = _norm_type(norm_type)
    error_if_nonfinite = boolean("error_if_nonfinite", error_if_nonfinite)
    arrays = []
    for label, leaf in _leaves(grads, "grads"):
        if not isinstance(leaf, np.ndarray):
            raise TypeError(
                f"{label}: expected a numpy.ndarray (clipped in place), got {describe(leaf)}"
            )
        if leaf.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{label}: expected dtype float32 or float64, got dtype {leaf.dtype}")
        if not leaf.flags.writeable:
            raise ValueError(f"{label}: expected a writeable array, got a read-only one")
        if any(leaf is seen for seen in arrays):
            raise ValueError(f"{label}: expected each array once, got one twice (scaled twice)")
        arrays.append(leaf)
    total = _norm_of_arrays(arrays, p)
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise ValueError(
                f"clip_grad_norm: the total {p:g}-norm of the gradients is {total}; "
                f"gradients left unchanged"
            )
        return total
    coefficient = max_norm / (total + _CLIP_EPS)
    if coefficient < 1.0:
        for array in arrays:
            array *= array.dtype.type(coefficient)
    return total


def per_step_grad_norms(grad_input: ArrayLike, batch_first: bool = False) -> np.ndarray:
    """``||dL/dx_t||_2`` for every time step t of an input gradient.

    This is the measurement behind the vanishing / exploding gradient picture: how much the
    loss at the end of a sequence still depends on the input t steps earlier. The norm of
    step t is the Euclidean (Frobenius) norm over the whole (N, I) slice — batch and feature
    axes together — i.e. the gradient with respect to everything the model read at step t.
    For a loss averaged over the batch, divide by nothing: the 1/N is already in dL/dx.

    Args:
        grad_input: dL/dx of shape (T, N, I); (N, T, I) with ``batch_first=True``; or
            (T, I) for one unbatched sequence (``batch_first`` is then ignored, as PyTorch
            ignores it for unbatched input).
        batch_first: whether a 3-D ``grad_input`` is (N, T, I).
    Returns:
        A float64 array of shape (T,), computed in float64.
    """
    grad = to_numpy("grad_input", grad_input)
    batch_first = boolean("batch_first", batch_first)
    if grad.ndim not in (2, 3):
        raise ValueError(
            f"grad_input: expected shape (T, N, I), (N, T, I) with batch_first=True, or (T, I), "
            f"got {grad.shape}"
        )
    if grad.ndim == 3 and batch_first:
        grad = grad.transpose(1, 0, 2)
    steps = grad.shape[0]
    rows = grad.reshape(steps, grad.size // steps if steps else 0).astype(np.float64, copy=False)
    with np.errstate(over="ignore"):  # only entries beyond ~1e154 overflow, to inf
        return np.sqrt(np.einsum("ij,ij->i", rows, rows))
