"""One model shared by several Python threads: the kernels release the GIL, so calls overlap for
real. A model, a prepared model and forward/backward are safe to share (they read the weights
and keep nothing per call outside the returned cache); every concurrent call must give the bits
of the same call made alone. (Streams hold per-stream state and serve one caller at a time:
tests/test_streaming.py tests that contract.)"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import rnncore as rc

THREADS = 4
CALLS = 6


def inputs(model, count, steps=12, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((steps, batch, model.input_size)).astype(model.dtype) for _ in range(count)]


def flat(result):
    out = []
    for part in result:
        if isinstance(part, tuple):
            out.extend(np.array(p) for p in part)
        elif isinstance(part, np.ndarray):
            out.append(np.array(part))
    return out


def run_concurrently(work, items):
    """work(item) for every item, THREADS threads each taking every THREADS-th item, all started
    together; returns the results in item order and re-raises the first error."""
    results = [None] * len(items)
    errors = []
    start = threading.Barrier(THREADS)

    def worker(first):
        try:
            start.wait()
            for i in range(first, len(items), THREADS):
                results[i] = work(items[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def assert_bitwise(concurrent, serial):
    for i, (a, b) in enumerate(zip(concurrent, serial)):
        assert len(a) == len(b)
        for j, (p, q) in enumerate(zip(a, b)):
            assert np.array_equal(p, q), f"call {i}, output {j}: concurrent result differs from the serial one"


MODELS = {
    "lstm": lambda: rc.LSTM(6, 40, num_layers=2, seed=1),
    "gru-bidirectional": lambda: rc.GRU(6, 33, bidirectional=True, seed=2),
    "rnn-float64": lambda: rc.RNN(6, 64, nonlinearity="relu", dtype=np.float64, seed=3),
}


@pytest.mark.parametrize("name", MODELS)
def test_model_call_shared_by_threads_gives_the_serial_bits(name):
    model = MODELS[name]()
    xs = inputs(model, THREADS * CALLS)
    serial = [flat(model(x)) for x in xs]
    assert_bitwise(run_concurrently(lambda x: flat(model(x)), xs), serial)


@pytest.mark.parametrize("name", MODELS)
def test_prepared_model_shared_by_threads_gives_the_serial_bits(name):
    model = MODELS[name]()
    prepared = model.prepare()
    xs = inputs(model, THREADS * CALLS, seed=1)
    serial = [flat(prepared(x)) for x in xs]
    assert_bitwise(run_concurrently(lambda x: flat(prepared(x)), xs), serial)


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_shared_by_threads_gives_the_serial_bits(name):
    model = MODELS[name]()
    xs = inputs(model, THREADS * CALLS, seed=2)

    def step(x):
        y, state, cache = model.forward(x)
        g = model.backward(cache, np.ones_like(y))
        return flat((y, state, g.input)) + [g.params[k] for k in sorted(g.params)]

    serial = [step(x) for x in xs]
    assert_bitwise(run_concurrently(step, xs), serial)
