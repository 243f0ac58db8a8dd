"""Shared test settings."""

from __future__ import annotations

import pytest

import rnncore as rc


@pytest.fixture(autouse=True, scope="session")
def fixed_thread_plan():
    """Every call takes the threads its size gives it, so that a test written to run a split of
    the work across threads runs it: under the default measured plan (rnncore.threads) a call
    repeated often enough may move to one thread where that was timed faster. Results are the
    same bit for bit either way; tests/test_threads.py turns measuring on where it tests it."""
    before = rc.get_thread_plan()
    rc.set_thread_plan("fixed")
    yield
    rc.set_thread_plan(before)
