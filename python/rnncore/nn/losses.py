"""Losses that return their gradient: ``loss, grad = f(prediction, target)``.

Each loss returns the reduced loss and the gradient of that reduced loss with respect to its
first argument, ready to pass to a layer's ``backward``. Shapes must match exactly: nothing is
broadcast. Results have the dtype of the first argument (float32 or float64; float16 becomes
float32, integers float64).

A mean over zero elements (an empty batch, or every target equal to ``ignore_index``) is NaN
with a zero gradient, as in PyTorch, and raises no NumPy warning.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .._checks import describe, positive_int, real_array, to_numpy

__all__ = ["softmax_cross_entropy", "mse", "one_hot", "softmax", "log_softmax"]

_REDUCTIONS = ("mean", "sum", "none")


def _float_array(name: str, value: Any) -> np.ndarray:
    """Real numbers as float32/float64: those stay, float16 becomes float32, the rest float64."""
    array = to_numpy(name, value)
    if array.dtype in (np.float32, np.float64):
        return array
    return array.astype(np.float32 if array.dtype == np.float16 else np.float64)


def _checked_indices(
    name: str, value: Any, upper: int, what: str, ignore: int | None = None
) -> np.ndarray:
    """Integer indices, each in [0, upper) or equal to ``ignore``, as an intp array.

    Shared with ``nn.Embedding``. Float indices are refused even when whole: they are a bug.
    """
    array = to_numpy(name, value)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer dtype, got dtype {array.dtype}")
    considered = array if ignore is None else array[array != ignore]
    if considered.size:
        low, high = int(considered.min()), int(considered.max())
        if low < 0 or high >= upper:
            also = f" or ignore_index {ignore}" if ignore is not None else ""
            raise ValueError(
                f"{name}: expected values in [0, {upper}) ({what}){also}, "
                f"got {low if low < 0 else high}"
            )
    return array.astype(np.intp, copy=False)


def _reduction(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"reduction: expected one of {_REDUCTIONS}, got {describe(value)}")
    if value not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {value!r}")
    return value


def _logits(logits: ArrayLike) -> np.ndarray:
    array = _float_array("logits", logits)
    if array.ndim == 0 or array.shape[-1] == 0:
        raise ValueError(f"logits: expected shape (..., C) with C >= 1 classes, got {array.shape}")
    return array


def log_softmax(logits: ArrayLike) -> np.ndarray:
    """``log(softmax(logits))`` over the last axis, computed stably; shape of ``logits``.

    Uses ``x - max(x) - log(sum(exp(x - max(x))))``, so large logits do not overflow.
    Logits of -inf are allowed (a masked class gets -inf); +inf or NaN give NaN.
    """
    logits = _logits(logits)
    # errstate: non-finite logits propagate as documented instead of warning.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        shifted = logits - logits.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: ArrayLike) -> np.ndarray:
    """``softmax`` over the last axis, computed stably; shape of ``logits``, rows sum to 1."""
    return np.exp(log_softmax(logits))


def _reduced(values: np.ndarray, count: int, reduction: str, dtype: np.dtype) -> Any:
    """Sum or mean in float64 (accurate for long float32 batches), as a ``dtype`` scalar."""
    if reduction == "none":
        return values
    total = float(values.sum(dtype=np.float64))
    if reduction == "sum":
        return dtype.type(total)
    return dtype.type(total / count if count else np.nan)


def softmax_cross_entropy(
    logits: ArrayLike,
    targets: ArrayLike,
    reduction: str = "mean",
    ignore_index: int | None = None,
) -> tuple[Any, np.ndarray]:
    """Cross-entropy of softmax(logits) against integer class targets, and its gradient.

    The same loss as ``torch.nn.functional.cross_entropy`` with class-index targets, but the
    class axis is the *last* one (a sequence model's natural (T, N, C) layout works as is).

    Args:
        logits: (..., C) unnormalised scores, C >= 1.
        targets: integers of shape ``logits.shape[:-1]``, each in [0, C) or equal to
            ``ignore_index``. Float targets raise ``TypeError`` (probabilities are not taken).
        reduction: "mean" (over the non-ignored positions), "sum" or "none".
        ignore_index: None, or an int (e.g. the padding class, or -100 as in PyTorch):
            positions whose target equals it add 0 to the loss and get a zero gradient.
    Returns:
        ``(loss, grad_logits)``. loss: a scalar of the logits' dtype for "mean" / "sum";
        for "none", an array of shape ``logits.shape[:-1]`` (0 at ignored positions).
        grad_logits: d(loss)/d(logits), shape of ``logits``; for "none" it is the gradient
        of ``loss.sum()``, i.e. each position's row is the gradient of its own loss.
        Non-finite logits give non-finite results (no warning).
    """
    logits = _logits(logits)
    reduction = _reduction(reduction)
    if ignore_index is not None:
        if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"ignore_index: expected None or an int, got {describe(ignore_index)}")
        ignore_index = int(ignore_index)
    num_classes = logits.shape[-1]
    targets = _checked_indices("targets", targets, num_classes, "C classes", ignore_index)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets: expected shape logits.shape[:-1] = {logits.shape[:-1]} (logits has "
            f"shape {logits.shape}), got {targets.shape}"
        )

    valid = np.ones(targets.shape, dtype=bool) if ignore_index is None else targets != ignore_index
    # Ignored positions look up class 0 and are masked out afterwards.
    safe_targets = np.where(valid, targets, 0)[..., None]
    log_probs = log_softmax(logits)
    # np.where, not a multiply by the mask: ignored positions get exact zeros even when
    # their logits are garbage (NaN in padding must not reach the gradient).
    losses = np.where(valid, -np.take_along_axis(log_probs, safe_targets, -1)[..., 0], 0)
    grad = np.exp(log_probs)
    np.put_along_axis(grad, safe_targets, np.take_along_axis(grad, safe_targets, -1) - 1, -1)
    grad = np.where(valid[..., None], grad, 0).astype(logits.dtype, copy=False)
    count = int(valid.sum())
    if reduction == "mean" and count:
        with np.errstate(invalid="ignore", over="ignore"):
            grad *= logits.dtype.type(1.0 / count)
    return _reduced(losses, count, reduction, logits.dtype), grad


def mse(
    pred: ArrayLike, target: ArrayLike, reduction: str = "mean"
) -> tuple[Any, np.ndarray]:
    """Mean squared error ``(pred - target)**2`` and its gradient, as ``torch.nn.MSELoss``.

    Args:
        pred: real numbers of any shape S.
        target: real numbers of exactly shape S (no broadcasting), cast to pred's dtype.
        reduction: "mean" (over all elements), "sum" or "none".
    Returns:
        ``(loss, grad_pred)``. loss: a scalar of pred's dtype, or for "none" an array of
        shape S. grad_pred: d(loss)/d(pred), shape S (for "none", the gradient of
        ``loss.sum()``, i.e. ``2 * (pred - target)``).
    """
    pred = _float_array("pred", pred)
    target = real_array("target", target, pred.dtype)
    reduction = _reduction(reduction)
    if target.shape != pred.shape:
        raise ValueError(
            f"target: expected pred's shape {pred.shape} (mse does not broadcast), "
            f"got {target.shape}"
        )
    with np.errstate(invalid="ignore", over="ignore"):
        diff = pred - target
        losses = diff * diff
        grad = 2 * diff
    if reduction == "mean":
        grad *= pred.dtype.type(1.0 / pred.size) if pred.size else pred.dtype.type(0.0)
    return _reduced(losses, pred.size, reduction, pred.dtype), grad


def one_hot(indices: ArrayLike, num_classes: int, dtype: DTypeLike = np.float32) -> np.ndarray:
    """One-hot encoding: shape S + (num_classes,) for integer ``indices`` of shape S.

    Args:
        indices: integers of any shape S, each in [0, num_classes).
        num_classes: int >= 1.
        dtype: any bool, integer or float dtype of the result (float32 by default).
    """
    num_classes = positive_int("num_classes", num_classes)
    indices = _checked_indices("indices", indices, num_classes, "num_classes")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected a bool, int or float dtype, got {describe(dtype)}") from None
    if dtype.kind not in "biuf":
        raise TypeError(f"dtype: expected a bool, int or float dtype, got {dtype}")
    encoded = np.zeros(indices.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(encoded, indices[..., None], 1, axis=-1)
    return encoded
