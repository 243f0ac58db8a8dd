"""Threads: how many, and whether a call may fall back to one thread when that is faster.

``set_num_threads(n)`` caps the OpenMP threads of every kernel. With two or more, a call whose
size gets it a second thread runs, by default, under the *measured thread plan*: per kind of call
(pass, cell, dtype, sizes, batch, steps within a factor of two) it times itself with its threads
and on one thread, runs the faster (the threads only where >= 5% faster), and now and then times
the other again, so a machine whose second core is busy elsewhere stops costing time. Results are
the same bit for bit either way. ``set_thread_plan("fixed")`` (or ``RNNCORE_THREAD_PLAN=fixed`` in
the environment) gives every call the threads its size rules give it.
"""

from __future__ import annotations

from typing import Any

from . import _checks, _core


def set_thread_plan(plan: str) -> None:
    """'measured' (default) or 'fixed'; see the module docstring. Any other string raises
    ValueError (from the core, which also guards direct callers)."""
    if not isinstance(plan, str):
        raise TypeError(f"plan: expected 'measured' or 'fixed', got {_checks.describe(plan)}")
    _core.set_thread_plan(plan)


def get_thread_plan() -> str:
    """The current thread plan: 'measured' or 'fixed'."""
    return _core.get_thread_plan()


def thread_plan_report() -> list[dict[str, Any]]:
    """What the measured plan has timed, one dict per kind of call: pass, cell, dtype, sizes,
    batch, steps (the range sharing the entry), threads, calls, alone_calls (run on one thread),
    choice ('team', 'alone' or 'measuring'), team_us_per_step and alone_us_per_step (each one's
    time per step as the plan estimates it from its last 4 calls, the slowest left out; 0 until
    timed)."""
    return _core.thread_plan_report()


def reset_thread_plan() -> None:
    """Forget every time the measured plan has taken; the next calls measure afresh."""
    _core.reset_thread_plan()
