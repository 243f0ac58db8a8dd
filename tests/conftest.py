"""Shared test settings.

No fixture here changes a default for the whole suite: tests run the thread plan, the threads and
the splits users get unless a test or module asks otherwise (issue 14: a wrong result under the
default measured plan went unseen while the suite pinned the fixed plan).
"""

from __future__ import annotations

import pytest

import rnncore as rc
from rnncore import _core


@pytest.fixture(autouse=True)
def thread_settings_from_environment():
    """The library reads its RNNCORE_* settings once; tests change them (monkeypatch, whose undo
    runs before this fixture's teardown): each test starts and ends with the environment's."""
    _core._reload_thread_settings()
    yield
    _core._reload_thread_settings()


@pytest.fixture
def fixed_thread_plan():
    """For tests written to run one particular split of the work across threads: every call
    takes the threads its size (or a forced RNNCORE_TIME_LOOP / RNNCORE_WAVEFRONT) gives it, where
    the default measured plan might move a repeated call to one thread. Results are the same bit
    for bit either way; tests/test_differential.py runs both plans."""
    before = rc.get_thread_plan()
    rc.set_thread_plan("fixed")
    yield
    rc.set_thread_plan(before)
