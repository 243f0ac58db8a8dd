"""What every `rnncore` command shares: its parser class, argument types, the common options
(--seed, --threads, --no-progress) and the thread limits a training command runs under."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage block) and status 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class CommandError(Exception):
    """A failure a command reports as one line on stderr with status 1 (e.g. an unusable text)."""


DEFAULT_OUT = "rnncore-out"
INTERRUPTED = 130


# ---------------------------------------------------------------- benchmarks
PIN_HELP = ("keep the process on this CPU (os.sched_setaffinity) while it measures; one-thread runs "
            "only (bench/README.md, 'Measuring on a shared VM')")


def pin_to_cpu(cpu: int, threads) -> None:
    """Keeps this process (the calling thread and every thread it starts from now on) on `cpu`,
    for a benchmark whose runs all use one thread. Raises ValueError naming the option otherwise."""
    if any(t != 1 for t in threads):
        raise ValueError(f"--pin-cpu: pinning is for one-thread runs, got threads {list(threads)}")
    allowed = sorted(os.sched_getaffinity(0))
    if cpu not in allowed:
        raise ValueError(f"--pin-cpu: expected one of the CPUs this process may use {allowed}, got {cpu}")
    os.sched_setaffinity(0, {cpu})


def add_pin_option(parser: argparse.ArgumentParser) -> None:
    """--pin-cpu CPU, for a benchmark's parser (apply it with pin_if_asked)."""
    parser.add_argument("--pin-cpu", type=int, metavar="CPU", help=PIN_HELP)


def pin_if_asked(parser: argparse.ArgumentParser, cpu, threads) -> bool:
    """Pins to `cpu` (pin_to_cpu) unless it is None; an unusable value is the parser's usage
    error. Returns whether the process was pinned."""
    if cpu is None:
        return False
    try:
        pin_to_cpu(cpu, threads)
    except ValueError as exc:
        parser.error(str(exc))
    return True


# ---------------------------------------------------------------- argument types
def int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def float_range(low: float, high: float = math.inf, low_inclusive: bool = False):
    bound = f"{'>=' if low_inclusive else '>'} {low:g}" + ("" if high == math.inf else f" and <= {high:g}")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}") from None
        ok = (value >= low if low_inclusive else value > low) and value <= high
        if not ok or math.isnan(value):
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text}")
        return value

    return parse


def int_list(low: int):
    """A comma-separated list of integers >= low, e.g. "16,32,64" (duplicates dropped)."""
    def parse(text: str) -> tuple[int, ...]:
        values = []
        for part in (p.strip() for p in text.split(",")):
            try:
                values.append(int(part))
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected comma-separated integers >= {low}, got {text!r}") from None
        if any(v < low for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated integers >= {low}, got {text!r}")
        return tuple(dict.fromkeys(values))

    return parse


def cell_list(text: str) -> tuple[str, ...]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in ("rnn", "lstm", "gru")]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of rnn, lstm, gru, got {text!r}")
    return tuple(dict.fromkeys(names))  # unique, in the given order


def add_common(parser: argparse.ArgumentParser, seed: int = 0, threads: bool = True) -> None:
    parser.add_argument("--seed", type=int_at_least(0), default=seed,
                        help=f"random seed for data and initialisation (default {seed})")
    if threads:
        parser.add_argument("--threads", type=int_at_least(1), default=1,
                            help="cores to use: the kernels' OpenMP threads; NumPy's BLAS gets one "
                                 "(default 1: these models are small, and one thread per process "
                                 "is fastest and robust on a busy machine)")
        parser.add_argument("--no-progress", dest="progress", action="store_false",
                            help="no progress bars")


# NumPy's BLAS (OpenBLAS, MKL, BLIS, Accelerate) reads these once, when NumPy loads.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                         "VECLIB_MAXIMUM_THREADS")


def _threadpool_limits():
    """threadpoolctl's threadpool_limits (it sets a BLAS's threads in the running process), or
    None: threadpoolctl is optional."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits


@contextlib.contextmanager
def threads(count: int, blas: int = 1):
    """Run with ``count`` kernel threads and ``blas`` BLAS threads (see restart_with_one_blas_thread).

    The Linear heads and the embedding call NumPy's BLAS between the kernels; its own threads
    would run beside the kernels' (a "1 thread" charlm used two cores) and two thread pools
    spinning on two cores slow each other down, so BLAS gets one thread. (`rnncore cost`, which
    times a Linear against an LSTM on the same cores, gives it ``count``.) Without threadpoolctl
    the BLAS keeps the threads it started with.
    """
    from . import get_num_threads, set_num_threads

    previous = get_num_threads()
    set_num_threads(count)
    try:
        limits = _threadpool_limits()
        with limits(blas, user_api="blas") if limits else contextlib.nullcontext():
            yield
    finally:
        set_num_threads(previous)


def restart_with_one_blas_thread() -> None:
    """Without threadpoolctl, the BLAS can be held to one thread only through its environment
    variables, which it read when `import rnncore` loaded NumPy, before any argument was seen.
    So a training command run as a program sets them and runs itself again in this process
    (exec: the same pid, so Ctrl-C and the caller's wait still reach it), once. POSIX only.
    """
    if _threadpool_limits() is not None or os.name != "posix" or not sys.executable:
        return
    if all(os.environ.get(name) == "1" for name in BLAS_THREAD_VARIABLES):
        return  # already restarted, or the caller set them
    command = list(getattr(sys, "orig_argv", [])) or [sys.executable, "-m", "rnncore", *sys.argv[1:]]
    env = {**os.environ, **{name: "1" for name in BLAS_THREAD_VARIABLES}}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *command[1:]], env)
    except OSError:
        pass  # run on with the BLAS's own threads rather than not at all


def usage_error(prog: str, message: str) -> int:
    """A usage error found after parsing (two arguments that contradict each other): one line on
    stderr, as OneLineParser.error writes it, and the status 2 for the command to return."""
    print(f"{prog}: error: {message} (see {prog} --help)", file=sys.stderr)
    return 2
