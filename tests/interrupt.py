"""Ctrl-C for the tests of the rnncore.apps commands: for a command run as a process (start it,
wait until its header is printed, send SIGINT, collect what it printed), and in-process."""

import signal
import subprocess
import sys
import time


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default. A shell starts a background job with
    SIGINT ignored, and an ignored signal stays ignored across exec, so without this the child of
    a pytest run started with `&` would never see the Ctrl-C the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_command(argv: list, ready: str, wait: float = 1.0, timeout: float = 120.0):
    """Run ``python -m rnncore *argv``, send SIGINT ``wait`` seconds after a stdout line starting
    with ``ready`` (stripped), and return (returncode, stdout, stderr). The child is killed if
    it outlives the test."""
    process = subprocess.Popen([sys.executable, "-m", "rnncore", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.strip().startswith(ready):
                break
        time.sleep(wait)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=timeout)
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
