"""Subnormal floats are flushed to zero while the kernels run (rnncore.floating_point).

Every thread that runs a kernel (the calling thread and a team's) must flush, the caller's own
arithmetic must keep IEEE subnormals after the call, and set_flush_denormals(False) must give
IEEE results. The models below are built so that the exact outputs are subnormal: a relu RNN
whose input projection is 1e-20 * 1e-20 = 1e-40 (float32's smallest normal is 1.18e-38).
"""

from __future__ import annotations

import platform

import numpy as np
import pytest

import rnncore as rc
from rnncore import _core

# These tests force particular splits across threads; the fixed plan keeps each call on the
# threads it was given (tests/test_differential.py covers the default measured plan).
pytestmark = pytest.mark.usefixtures("fixed_thread_plan")

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                                reason="flushing subnormals is implemented for x86 only")

TINY = np.float32(1e-20)


@pytest.fixture
def flush_setting():
    """Restores the flush setting and the thread count a test changes."""
    before, threads = rc.get_flush_denormals(), rc.get_num_threads()
    yield
    rc.set_flush_denormals(before)
    rc.set_num_threads(threads)


def subnormal_rnn(hidden_size=64, num_layers=1):
    """A relu RNN whose outputs are exactly TINY * x * TINY: subnormal for x of order 1."""
    model = rc.RNN(1, hidden_size, num_layers=num_layers, nonlinearity="relu", seed=0)
    for name, p in model.parameters().items():
        p[...] = TINY if name == "weight_ih_l0" else 0.0
    return model


def test_flushing_is_on_by_default_and_can_be_set(flush_setting):
    assert rc.get_flush_denormals() is True
    rc.set_flush_denormals(False)
    assert rc.get_flush_denormals() is False
    for bad in (1, "yes", None):
        with pytest.raises(TypeError, match="flush"):
            rc.set_flush_denormals(bad)


@pytest.mark.parametrize("threads", [1, 2])
def test_subnormal_results_are_flushed_on_every_thread(flush_setting, threads, monkeypatch):
    rc.set_num_threads(threads)
    # Split by hidden units: each thread computes outputs of its own.
    monkeypatch.setenv("RNNCORE_TIME_LOOP", "units" if threads > 1 else "one")
    _core._reload_thread_settings()  # the library reads RNNCORE_* once otherwise
    model = subnormal_rnn()
    x = np.full((5, 3, 1), TINY * np.float32(4.0), np.float32)  # exact outputs 4e-40
    rc.set_flush_denormals(True)
    y, h_n = model(x)
    assert not y.any() and not h_n.any()
    rc.set_flush_denormals(False)
    y, h_n = model(x)
    assert (y > 0).all() and (y < np.finfo(np.float32).tiny).all()


def test_training_flushes_and_the_caller_keeps_ieee_arithmetic(flush_setting):
    model = subnormal_rnn(hidden_size=8)
    x = np.full((4, 2, 1), TINY, np.float32)
    rc.set_flush_denormals(True)
    y, _, cache = model.forward(x)
    model.backward(cache, np.ones_like(y))
    assert not y.any()
    # NumPy on the calling thread keeps IEEE subnormals after the calls.
    assert np.float32(1e-39) * np.float32(1.0) != 0


@pytest.mark.parametrize("threads", [1, 2])
def test_streams_flush_on_every_thread(flush_setting, threads):
    model = subnormal_rnn(hidden_size=80)  # two weight panels: one per thread
    frame = np.full((2, 1), TINY * np.float32(3.0), np.float32)
    rc.set_flush_denormals(True)
    assert not model.stream(2, threads=threads).step(frame).any()
    rc.set_flush_denormals(False)
    out = model.stream(2, threads=threads).step(frame)
    assert (out > 0).all()
