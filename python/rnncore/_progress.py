"""Progress bars for the long-running commands: tqdm when installed, else a small built-in one.

Both offer the part of tqdm's API the commands use::

    with progress_bar(total=1000, desc="LSTM") as bar:
        bar.update(1)
        bar.set_postfix_str("loss 0.012")

The built-in bar redraws one line (at most ten times a second) on a terminal; when stderr is
not a terminal (a pipe, a log file, a test) it prints a plain line every ``log_every``
seconds and one at the end, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _tqdm_class():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes:02d}:{seconds:02d}"


class SimpleBar:
    """A dependency-free stand-in for tqdm (update, set_postfix_str, close, context manager)."""

    width = 24

    def __init__(
        self,
        total: int,
        desc: str = "",
        file: TextIO | None = None,
        disable: bool = False,
        log_every: float = 10.0,
    ) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.file = file if file is not None else sys.stderr
        self.disable = disable
        self.n = 0
        self.postfix = ""
        self.log_every = log_every
        self._start = time.perf_counter()
        self._last_draw = -1.0
        self._closed = False
        isatty = getattr(self.file, "isatty", None)
        self._terminal = bool(isatty and isatty())

    def __enter__(self) -> "SimpleBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _line(self) -> str:
        elapsed = time.perf_counter() - self._start
        fraction = self.n / self.total if self.total else 1.0
        filled = int(self.width * min(fraction, 1.0))
        bar = "#" * filled + "-" * (self.width - filled)
        rate = self.n / elapsed if elapsed > 0 else 0.0
        remaining = (self.total - self.n) / rate if rate > 0 else 0.0
        postfix = f", {self.postfix}" if self.postfix else ""
        return (f"{self.desc}: {100 * fraction:3.0f}%|{bar}| {self.n}/{self.total} "
                f"[{_format_seconds(elapsed)}<{_format_seconds(remaining)}, {rate:.1f}it/s{postfix}]")

    def _draw(self, final: bool = False) -> None:
        if self.disable:
            return
        now = time.perf_counter()
        interval = 0.1 if self._terminal else self.log_every
        if not final and now - self._last_draw < interval:
            return
        self._last_draw = now
        if self._terminal:
            self.file.write("\r" + self._line() + ("\n" if final else ""))
        else:
            self.file.write(self._line() + "\n")
        self.file.flush()

    def update(self, n: int = 1) -> None:
        self.n += n
        self._draw()

    def set_postfix_str(self, postfix: str, refresh: bool = True) -> None:
        self.postfix = postfix

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._draw(final=True)


def progress_bar(total: int, desc: str = "", disable: bool = False, file: TextIO | None = None):
    """A tqdm bar if tqdm is installed (the ``progress`` extra), else a ``SimpleBar``."""
    tqdm = _tqdm_class()
    if tqdm is not None:
        return tqdm(total=total, desc=desc, disable=disable, file=file, dynamic_ncols=True,
                    leave=True)
    return SimpleBar(total, desc=desc, disable=disable, file=file)
