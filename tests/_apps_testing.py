"""What the tests of the rnncore.apps commands share (imported by tests/test_apps_*.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import rnncore as rc
from rnncore.__main__ import main


@pytest.fixture(autouse=True)
def keep_threads():
    previous = rc.get_num_threads()
    yield
    rc.set_num_threads(previous)


def run(capsys, *argv):
    """The command in this process: (status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, prog, expected_code=2):
    assert code == expected_code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err


def assert_gradients_match_directional_differences(parameters, grads, loss, seed=0, eps=1e-6):
    """For every parameter array: grad . d against (loss(p + eps d) - loss(p - eps d)) / 2 eps
    along a random direction d; ``parameters`` and ``grads`` nested alike, float64."""
    rng = np.random.default_rng(seed)
    for group, params in parameters.items():
        for name, param in params.items():
            direction = rng.standard_normal(param.shape)
            saved = param.copy()
            param += eps * direction
            plus = loss()
            param[...] = saved - eps * direction
            minus = loss()
            param[...] = saved
            numeric = (plus - minus) / (2 * eps)
            assert np.sum(grads[group][name] * direction) == pytest.approx(numeric, rel=1e-5, abs=1e-8), \
                (group, name)


def _default_sigint() -> None:
    """SIGINT back to its default in the child (see tests/test_cli.py: a background shell job
    starts with it ignored, and that survives exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_after_header(argv, last_header_line):
    """Run ``python -m rnncore *argv``, wait for the header line starting with
    ``last_header_line``, let it train a second, send SIGINT; (status, stdout, stderr)."""
    process = subprocess.Popen([sys.executable, "-m", "rnncore", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.lstrip().startswith(last_header_line):
                break
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:  # a failed or timed-out test must not leave a long run behind
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, "".join(lines) + out, err


def interrupt_on_call(monkeypatch, owner, name: str, call: int) -> None:
    """Make ``owner.name`` (a function of a module or a method of a class) raise
    KeyboardInterrupt on its ``call``-th call, as a Ctrl-C there would; the calls before run as
    they did."""
    original = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
