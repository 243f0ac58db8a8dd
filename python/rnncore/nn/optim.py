"""SGD, Adam and AdamW on NumPy arrays, updating them in place with torch.optim's formulas.

Parameters are given as a mapping ``{name: ndarray}`` — for example a layer's live
``parameters()`` — or as a nested mapping, or a list of mappings, for several layers::

    opt = Adam({"lstm": lstm.parameters(), "head": head.parameters()}, lr=1e-3)
    opt.step({"lstm": lstm_grads.params, "head": head_grads})

Nested mappings are flattened to dotted names ("head.weight"); the mappings of a list are
merged, and their names must then be unique (two Linear layers both have "weight": nest
them instead). ``step`` flattens the gradients the same way and needs exactly the same names.

The arrays are updated in place, so the layers that own them see every step. Each must be a
writeable float32 or float64 ``numpy.ndarray``; no two may share memory. Updates run in the
parameter's dtype, like PyTorch's.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._checks import FLOAT_DTYPES, boolean, describe, exact_shape, real_array

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


def _hyperparameter(name: str, value: Any, below: float | None = None) -> float:
    """A finite real number ``>= 0`` (and ``< below`` when given); bool is refused."""
    need = f"a number in [0, {below:g})" if below is not None else "a finite number >= 0"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {need}, got {describe(value)}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (below is not None and value >= below):
        raise ValueError(f"{name}: expected {need}, got {value:g}")
    return value


def _flatten(name: str, tree: Any, require_ndarray: bool) -> dict[str, Any]:
    """Flatten a mapping of arrays, maybe nested, or a list/tuple of such mappings.

    Nested mappings give dotted names (``{"head": {"weight": w}}`` -> ``"head.weight"``); the
    mappings of a list are merged and their names must be unique. The values are returned as
    given (no copies), so live parameter arrays stay live.
    """
    flat: dict[str, Any] = {}

    def add(prefix: str, node: Mapping) -> None:
        for key, value in node.items():
            if not isinstance(key, str):
                raise TypeError(f"{name}: expected str keys, got the key {describe(key)}")
            full = f"{prefix}{key}"
            if isinstance(value, Mapping):
                add(full + ".", value)
            elif full in flat:
                raise ValueError(
                    f"{name}: expected unique names, got {full!r} twice; nest the mappings "
                    f"(e.g. {{'encoder': ..., 'head': ...}}) to give them distinct prefixes"
                )
            elif require_ndarray and not isinstance(value, np.ndarray):
                raise TypeError(
                    f"{name}[{full!r}]: expected a numpy.ndarray (it is updated in place), "
                    f"got {describe(value)}"
                )
            else:
                flat[full] = value

    items = [tree] if isinstance(tree, Mapping) else tree
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, Mapping) for i in items):
        raise TypeError(
            f"{name}: expected a mapping {{name: ndarray}} (maybe nested) or a list of such "
            f"mappings, got {describe(tree)}"
        )
    for item in items:
        add("", item)
    return flat


def _check_params(params: Any) -> dict[str, np.ndarray]:
    flat = _flatten("params", params, require_ndarray=True)
    if not flat:
        raise ValueError("params: expected at least one array, got none")
    for name, array in flat.items():
        if array.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"params[{name!r}]: expected dtype float32 or float64, got dtype {array.dtype}"
            )
        if not array.flags.writeable:
            raise ValueError(f"params[{name!r}]: expected a writeable array, got a read-only one")
    # Two names for one buffer would be updated twice per step.
    names = list(flat)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = flat[first], flat[second]
            if np.may_share_memory(a, b) and np.shares_memory(a, b):
                raise ValueError(
                    f"params: expected each array once, got {first!r} and {second!r} sharing memory"
                )
    return flat


class Optimizer:
    """Base class: parameter bookkeeping, gradient checks, hyperparameters and state I/O.

    Subclasses define ``_buffers`` (the per-parameter state names), ``_checked`` (validate
    a full hyperparameter dict) and ``_update`` (one parameter's in-place step).
    """

    _buffers: tuple[str, ...] = ()

    def __init__(self, params: Any, **hyperparams: Any) -> None:
        self._params = _check_params(params)
        self._hyper = self._checked(hyperparams)
        self._steps = 0
        self._state: dict[str, dict[str, np.ndarray]] = {}

    # -- hyperparameters ------------------------------------------------------------------
    def _checked(self, hyper: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def hyperparams(self) -> dict[str, Any]:
        """A copy of the hyperparameters, e.g. ``{"lr": 0.1, "momentum": 0.9, ...}``."""
        return dict(self._hyper)

    def set_hyperparams(self, **changes: Any) -> None:
        """Change hyperparameters between steps (a schedule); all are checked together."""
        unknown = sorted(set(changes) - set(self._hyper))
        if unknown:
            raise TypeError(
                f"set_hyperparams: expected names among {sorted(self._hyper)}, got {unknown[0]!r}"
            )
        self._hyper = self._checked({**self._hyper, **changes})

    @property
    def lr(self) -> float:
        """The learning rate; assign to it to schedule it."""
        return self._hyper["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.set_hyperparams(lr=value)

    # -- parameters and state -------------------------------------------------------------
    @property
    def params(self) -> dict[str, np.ndarray]:
        """``{flat name: live array}`` (a new dict; the arrays are the ones updated)."""
        return dict(self._params)

    @property
    def steps(self) -> int:
        """How many times ``step`` has run since construction or ``zero_state``."""
        return self._steps

    def zero_state(self) -> None:
        """Forget the step count and every buffer (momentum, moments): a fresh start."""
        self._steps = 0
        self._state = {}

    def state_dict(self) -> dict[str, Any]:
        """A copy of everything needed to resume::

            {"optimizer": "Adam", "steps": int, "hyperparams": {...},
             "state": {param name: {buffer name: ndarray}}}

        ``state`` is empty before the first step (and for SGD without momentum).
        """
        return {
            "optimizer": type(self).__name__,
            "steps": self._steps,
            "hyperparams": dict(self._hyper),
            "state": {
                name: {key: value.copy() for key, value in buffers.items()}
                for name, buffers in self._state.items()
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned, strictly and atomically.

        The optimizer class, the parameter names and the buffer shapes must match (buffers
        are cast to the parameter's dtype); hyperparameters are restored too. On any error
        (``ValueError`` / ``TypeError`` naming the key) nothing changes.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state: expected the mapping of state_dict(), got {describe(state)}")
        need = {"optimizer", "steps", "hyperparams", "state"}
        if set(state) != need:
            raise ValueError(f"state: expected keys {sorted(need)}, got {sorted(map(str, state))}")
        if state["optimizer"] != type(self).__name__:
            raise ValueError(
                f"state['optimizer']: expected {type(self).__name__!r}, got {state['optimizer']!r}"
            )
        steps = state["steps"]
        if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, numbers.Integral):
            raise TypeError(f"state['steps']: expected an int >= 0, got {describe(steps)}")
        if steps < 0:
            raise ValueError(f"state['steps']: expected an int >= 0, got {steps}")
        hyper = state["hyperparams"]
        if not isinstance(hyper, Mapping) or set(hyper) != set(self._hyper):
            got = sorted(hyper) if isinstance(hyper, Mapping) else describe(hyper)
            raise ValueError(f"state['hyperparams']: expected keys {sorted(self._hyper)}, got {got}")
        hyper = self._checked(dict(hyper))
        buffers = self._checked_buffers(state["state"], steps)
        self._hyper, self._steps, self._state = hyper, int(steps), buffers

    def _checked_buffers(self, state: Any, steps: int) -> dict[str, dict[str, np.ndarray]]:
        if not isinstance(state, Mapping):
            raise TypeError(f"state['state']: expected a mapping, got {describe(state)}")
        if not state:
            return {}
        # All parameters step together, so the state covers all of them or none.
        if set(state) != set(self._params):
            missing = sorted(set(self._params) - set(state))
            extra = sorted(set(state) - set(self._params))
            what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
            raise ValueError(f"state['state']: expected every parameter name or none, {what}")
        if steps == 0:
            raise ValueError("state['steps']: expected >= 1 with buffers present, got 0")
        checked = {}
        for name, param in self._params.items():
            entry = state[name]
            if not isinstance(entry, Mapping) or set(entry) != set(self._buffers):
                got = sorted(entry) if isinstance(entry, Mapping) else describe(entry)
                raise ValueError(
                    f"state['state'][{name!r}]: expected keys {sorted(self._buffers)}, got {got}"
                )
            checked[name] = {}
            for key in self._buffers:
                label = f"state['state'][{name!r}][{key!r}]"
                value = real_array(label, entry[key], param.dtype)
                exact_shape(label, value, param.shape)
                checked[name][key] = value.copy()
        return checked

    # -- stepping -------------------------------------------------------------------------
    def _checked_grads(self, grads: Any) -> dict[str, np.ndarray]:
        flat = _flatten("grads", grads, require_ndarray=False)
        for name, param in self._params.items():
            if name not in flat:
                raise ValueError(
                    f"grads: missing {name!r} (shape {param.shape}); expected exactly the "
                    f"names of params: {list(self._params)}"
                )
        for name in flat:
            if name not in self._params:
                raise ValueError(
                    f"grads: unexpected {name!r}; expected exactly the names of params: "
                    f"{list(self._params)}"
                )
        checked = {}
        for name, param in self._params.items():
            grad = real_array(f"grads[{name!r}]", flat[name], param.dtype)
            exact_shape(f"grads[{name!r}]", grad, param.shape)
            checked[name] = grad
        return checked

    def step(self, grads: Any) -> None:
        """Update every parameter in place from its gradient.

        Args:
            grads: the gradients, structured like ``params`` (or already flat with dotted
                names): exactly the same names, each of exactly its parameter's shape,
                real numbers (cast to the parameter's dtype; never modified).
        All gradients are checked before any parameter changes: on error nothing moves.
        """
        grads = self._checked_grads(grads)
        self._steps += 1
        for name, param in self._params.items():
            self._update(name, param, grads[name])

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self._hyper.items())
        return f"{type(self).__name__}({len(self._params)} arrays, {hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

    Per step, for each parameter p with gradient g::

        g = g + weight_decay * p
        if momentum:  b = g (first step), else b = momentum * b + (1 - dampening) * g
                      g = g + momentum * b  (nesterov)  or  g = b
        p -= lr * g

    Args:
        params: see the module docstring.
        lr: learning rate >= 0.
        momentum: >= 0.
        weight_decay: L2 penalty coefficient >= 0 (added to the gradient).
        nesterov: Nesterov momentum; needs momentum > 0 and dampening == 0.
        dampening: >= 0, scales the gradient's share of the momentum buffer.
    State: ``momentum_buffer`` per parameter (with momentum > 0).
    """

    _buffers = ("momentum_buffer",)

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        dampening: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            dampening=dampening,
        )

    def _checked(self, hyper: dict[str, Any]) -> dict[str, Any]:
        checked = {
            "lr": _hyperparameter("lr", hyper["lr"]),
            "momentum": _hyperparameter("momentum", hyper["momentum"]),
            "weight_decay": _hyperparameter("weight_decay", hyper["weight_decay"]),
            "nesterov": boolean("nesterov", hyper["nesterov"]),
            "dampening": _hyperparameter("dampening", hyper["dampening"]),
        }
        if checked["nesterov"] and (checked["momentum"] == 0 or checked["dampening"] != 0):
            raise ValueError(
                f"nesterov: expected momentum > 0 and dampening == 0 with it, got momentum="
                f"{checked['momentum']:g} and dampening={checked['dampening']:g}"
            )
        return checked

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        h = self._hyper
        if h["weight_decay"]:
            grad = grad + h["weight_decay"] * param
        if h["momentum"]:
            buffers = self._state.get(name)
            if buffers is None:
                self._state[name] = {"momentum_buffer": np.array(grad, copy=True)}
                buffer = self._state[name]["momentum_buffer"]
            else:
                buffer = buffers["momentum_buffer"]
                buffer *= h["momentum"]
                buffer += (1.0 - h["dampening"]) * grad
            grad = grad + h["momentum"] * buffer if h["nesterov"] else buffer
        param -= h["lr"] * grad


def _check_betas(betas: Any) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas: expected a pair (beta1, beta2), got {describe(betas)}")
    return (
        _hyperparameter("betas[0]", betas[0], below=1.0),
        _hyperparameter("betas[1]", betas[1], below=1.0),
    )


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (amsgrad=False).

    Per step t (counting from 1), for each parameter p with gradient g::

        g = g + weight_decay * p                       (L2 penalty, coupled)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Args:
        params: see the module docstring.
        lr: learning rate >= 0.
        betas: (beta1, beta2), each in [0, 1).
        eps: >= 0, added to the denominator.
        weight_decay: L2 penalty coefficient >= 0 (for decoupled decay use ``AdamW``).
    State: ``exp_avg`` (m) and ``exp_avg_sq`` (v) per parameter; the step count t is
    ``steps``.
    """

    _buffers = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _checked(self, hyper: dict[str, Any]) -> dict[str, Any]:
        return {
            "lr": _hyperparameter("lr", hyper["lr"]),
            "betas": _check_betas(hyper["betas"]),
            "eps": _hyperparameter("eps", hyper["eps"]),
            "weight_decay": _hyperparameter("weight_decay", hyper["weight_decay"]),
        }

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        h = self._hyper
        beta1, beta2 = h["betas"]
        if h["weight_decay"]:
            if self._decoupled:
                param *= 1.0 - h["lr"] * h["weight_decay"]
            else:
                grad = grad + h["weight_decay"] * param
        if name not in self._state:
            self._state[name] = {"exp_avg": np.zeros_like(param), "exp_avg_sq": np.zeros_like(param)}
        exp_avg = self._state[name]["exp_avg"]
        exp_avg_sq = self._state[name]["exp_avg_sq"]
        # m.lerp_(g, 1 - beta1) in PyTorch: the same rounding as m + (1 - beta1) * (g - m).
        exp_avg += (1.0 - beta1) * (grad - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * grad * grad
        step_size = h["lr"] / (1.0 - beta1**self._steps)
        denom = np.sqrt(exp_avg_sq)
        denom /= math.sqrt(1.0 - beta2**self._steps)
        denom += h["eps"]
        param -= step_size * (exp_avg / denom)


class AdamW(Adam):
    """AdamW (decoupled weight decay), as ``torch.optim.AdamW``.

    The same as ``Adam`` except that weight decay multiplies the parameter by
    ``1 - lr * weight_decay`` before the update instead of adding to the gradient.
    The default ``weight_decay`` is 1e-2, as in PyTorch.
    """

    _decoupled = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
