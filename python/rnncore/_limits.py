"""The limits on sizes, in one place: what the compiled core can represent and what this machine
can hold.

A size beyond MAX_SIZE cannot cross into C++ (sizes are int64 there): ValueError naming it. A
model or stream whose arrays need more bytes than this machine's memory is refused with
MemoryError before anything is allocated, instead of after minutes of allocating (an
RNN(1, 1, num_layers=10**8) spent 30 s and 6 GB before failing).
"""

from __future__ import annotations

import os

from . import _checks, _core

# rnncore/checked.h: the largest size the C++ core takes, and the most bytes one array may hold.
MAX_SIZE: int = _core.MAX_SIZE
MAX_ARRAY_BYTES: int = _core.MAX_ARRAY_BYTES
# The C++ Stream's threads are an int.
MAX_THREADS = 2**31 - 1

# What Python holds per parameter array beyond its data (the ndarray, its dict entry and name):
# measured 396 bytes at the peak of building RNN(1, 1, num_layers=10**5) (Python 3.11, NumPy 2).
ARRAY_OVERHEAD_BYTES = 400


def size(name: str, value: object, limit: int = MAX_SIZE) -> int:
    """A positive integer no larger than `limit` (TypeError / ValueError naming `name`)."""
    result = _checks.positive_int(name, value)
    if result > limit:
        raise ValueError(f"{name}: expected at most {limit} (the compiled core's limit), got {result}")
    return result


def physical_memory_bytes() -> int | None:
    """This machine's memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def check_memory(what: str, nbytes: int) -> None:
    """MemoryError when `what` needs more than this machine's memory (or than any array holds)."""
    memory = physical_memory_bytes()
    limit = MAX_ARRAY_BYTES if memory is None else min(memory, MAX_ARRAY_BYTES)
    if nbytes > limit:
        where = "any array can hold" if memory is None or memory > MAX_ARRAY_BYTES else "this machine's memory"
        raise MemoryError(f"{what} needs {nbytes} bytes ({_gib(nbytes)}), more than {where} ({_gib(limit)})")
