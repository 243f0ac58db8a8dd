"""Every Python script in bench/ and examples/ still starts: it imports what it needs from
rnncore (a script that imported a removed private module, bench/torch_train.py importing
rnncore._compiled after issue 15's seams, failed only when somebody ran it) and parses --help."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(ROOT.glob("bench/*.py")) + sorted(ROOT.glob("examples/*.py"))
NEEDS = {"torch_train.py": "torch", "ddp_train.py": "torch"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_script_starts_and_prints_its_help(script):
    needed = NEEDS.get(script.name)
    if needed and importlib.util.find_spec(needed) is None:
        pytest.skip(f"{script.name} needs {needed}")
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()
