"""The `rnncore` command: every subcommand on tiny settings, bad arguments, unreadable files."""

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

import rnncore as rc
from rnncore._progress import SimpleBar

from _apps_testing import assert_one_line_error, keep_threads, run  # noqa: F401 - keep_threads: autouse

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAS_BENCHMARK = importlib.util.find_spec("rnncore.benchmark") is not None

TINY_DEMO = ["demo", "--T", "8", "--steps", "20", "--eval-every", "10", "--test-size", "50",
             "--hidden", "4", "--no-progress"]
TINY_CHARLM = ["charlm", "--steps", "4", "--batch", "4", "--bptt", "8", "--hidden", "8",
               "--embedding", "4", "--eval-every", "2", "--sample-chars", "30", "--no-progress"]


def text_file(tmp_path, name="corpus.txt", repeat=80):
    path = tmp_path / name
    path.write_text("the quick brown fox jumps over the lazy dog.\n" * repeat, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------- help and info
@pytest.mark.parametrize("command", ["demo", "gradflow", "charlm", "check", "info"])
def test_every_command_has_help(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: rnncore {command}")


def test_no_command_prints_the_command_list_and_fails(capsys):
    code, out, _ = run(capsys)
    assert code == 2
    for command in ("demo", "gradflow", "charlm", "bench", "check", "info"):
        assert command in out


def test_info_prints_version_and_build(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0
    assert "version" in out and rc.__version__ in out and "openmp" in out
    assert f"thread_plan: {rc.get_thread_plan()}" in out
    assert f"l2_per_core: {rc._core.l2_cache_bytes() / 1024:.0f} KiB" in out
    info = rc.build_info()
    assert f"  kernel_isa: {info['isa']}, fixed when built" in out
    assert f"weight panels {info['panel_floats']} floats wide" in out
    assert "     cpu_isa: " in out and "cpu_isa: unknown" not in out  # this build can ask the CPU
    assert "simd: AVX SSE" not in out  # Eigen's string, which hid AVX2 and FMA


def test_info_says_whether_cuda_was_built_and_which_device():
    info = rc.build_info()
    assert isinstance(info["cuda"], bool)
    if info["cuda"]:
        assert info["cuda_version"].count(".") == 1
    else:
        assert info["cuda_version"] == ""
        assert info["cuda_device"] == "none (rnncore was built without CUDA)"
    assert isinstance(info["cuda_device"], str) and info["cuda_device"]


def test_info_prints_the_cuda_line(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0
    info = rc.build_info()
    line = next(line for line in out.splitlines() if line.strip().startswith("cuda:"))
    if info["cuda"]:
        assert f"CUDA {info['cuda_version']}; device: {info['cuda_device']}" in line
    else:
        assert line.strip() == "cuda: False (built without RNNCORE_CUDA)"


# The names /proc/cpuinfo gives the extensions that rnncore names.
PROC_CPUINFO_FLAGS = {"SSE2": "sse2", "SSE3": "pni", "SSSE3": "ssse3", "SSE4.1": "sse4_1",
                      "SSE4.2": "sse4_2", "POPCNT": "popcnt", "AVX": "avx", "AVX2": "avx2", "FMA": "fma",
                      "F16C": "f16c", "BMI2": "bmi2", "AVX512F": "avx512f", "AVX512BW": "avx512bw",
                      "AVX512VL": "avx512vl", "AVX512DQ": "avx512dq", "AVX512CD": "avx512cd"}


def test_kernel_isa_matches_the_vector_width_and_the_panels():
    info = rc.build_info()
    if info["arch"] == "x86-64":
        assert "SSE2" in info["isa_features"]
        features = info["isa_features"]
        expected = 64 if "AVX512F" in features else 32 if "AVX" in features else 16
        assert info["vector_bytes"] == expected
        if "AVX2" in features and "FMA" in features:
            assert info["isa"].startswith(("x86-64-v3 (AVX2, FMA", "x86-64-v4 ("))
    assert info["panel_floats"] == 2 * info["vector_bytes"] // 4  # two registers of floats


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo") or rc.build_info()["arch"] != "x86-64",
                    reason="x86 Linux: /proc/cpuinfo's flags")
def test_cpu_features_agree_with_proc_cpuinfo_and_cover_the_build():
    with open("/proc/cpuinfo") as handle:
        flags = set(next(line for line in handle if line.startswith("flags")).split(":", 1)[1].split())
    cpu = rc._core.cpu_isa_features()
    assert cpu == [name for name, flag in PROC_CPUINFO_FLAGS.items() if flag in flags]
    assert set(rc.build_info()["isa_features"]) <= set(cpu)  # these kernels run here, so they must


@pytest.mark.parametrize("features, text", [
    (["SSE2"], "x86-64 (SSE2)"),
    (["SSE2", "SSE3", "SSSE3", "SSE4.1", "SSE4.2", "POPCNT"], "x86-64-v2 (SSE4.2, POPCNT)"),
    (["SSE2", "SSE3", "SSSE3", "SSE4.1", "SSE4.2", "POPCNT", "AVX", "AVX2", "FMA", "F16C", "BMI2"],
     "x86-64-v3 (AVX2, FMA, F16C, BMI2)"),
    (["SSE2", "SSE3", "SSSE3", "SSE4.1", "SSE4.2", "POPCNT", "AVX", "AVX2", "FMA", "AVX512F"],
     "x86-64-v3 (AVX2, FMA, AVX512F)"),  # AVX512F alone is not the v4 level
    (["SSE2", "SSE3", "SSSE3", "SSE4.1", "SSE4.2", "POPCNT", "AVX", "AVX2", "FMA", "AVX512F", "AVX512BW",
      "AVX512VL", "AVX512DQ", "AVX512CD"], "x86-64-v4 (AVX2, FMA, AVX512F, AVX512BW, AVX512VL, AVX512DQ, AVX512CD)"),
    (["SSE2", "AVX", "AVX2", "FMA"], "x86-64 (AVX2, FMA)"),  # v3's vectors without v2's SSE4
])
def test_isa_levels_in_words(features, text):
    from rnncore import _isa

    assert _isa.describe("x86-64", features) == text
    assert _isa.describe("aarch64", ["NEON"]) == "aarch64 (NEON)"


def test_info_warns_and_fails_when_the_cpu_lacks_what_the_kernels_need(capsys, monkeypatch):
    monkeypatch.setattr(rc._core, "cpu_isa_features", lambda: [])
    code, out, err = run(capsys, "info")
    built_for = rc.build_info()["isa_features"]
    assert code == 1
    assert f": LACKS {', '.join(built_for)}" in next(line for line in out.splitlines() if "cpu_isa:" in line)
    assert err.startswith("rnncore info: warning: this CPU lacks ") and len(err.splitlines()) == 1
    assert all(name in err for name in built_for)


def test_info_says_when_it_cannot_ask_the_cpu(capsys, monkeypatch):
    monkeypatch.setattr(rc._core, "cpu_isa_features", lambda: None)
    code, out, err = run(capsys, "info")
    assert code == 0 and err == ""
    assert "cpu_isa: unknown" in out


def test_cpu_model_name_from_cpuinfo_with_family_and_model(tmp_path):
    from rnncore import _isa

    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
                    "model name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert _isa.cpu_model_name(str(path)) == "AMD EPYC (family 25, model 1)"
    assert _isa.cpu_model_name(str(tmp_path / "missing"))  # falls back to the platform module


def test_check_passes(capsys):
    code, out, _ = run(capsys, "check", "--seed", "1")
    assert code == 0
    assert "all kernels agree with the reference" in out


# ---------------------------------------------------------------- demo
def test_demo_tiny_prints_the_table_and_writes_the_curves(capsys, tmp_path):
    out_dir = tmp_path / "out"
    code, out, _ = run(capsys, *TINY_DEMO, "--out", str(out_dir))
    assert code == 0
    header = next(line for line in out.splitlines() if line.startswith("cell "))
    assert "test MSE" in header and "baseline" in header and "steps/s" in header and "params" in header
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["RNN"], ["LSTM"], ["GRU"])]
    assert [r[0] for r in rows] == ["RNN", "LSTM", "GRU"]
    for row in rows:
        assert row[3] == "20" and row[5] == "0.167"  # steps done, the baseline
        float(row[4]), float(row[6])  # test MSE and steps per second are numbers
    assert (out_dir / "adding_curves.csv").read_text().startswith("cell,hidden,step,test_mse")
    if HAS_MATPLOTLIB:
        assert (out_dir / "adding_curves.png").stat().st_size > 1000
    else:
        assert "install matplotlib" in out and not (out_dir / "adding_curves.png").exists()


def test_demo_runs_only_the_cells_asked_for_with_the_same_seed_twice(capsys, tmp_path):
    argv = [*TINY_DEMO, "--cells", "gru,lstm", "--seed", "5", "--no-plot", "--out", str(tmp_path)]
    code, first, _ = run(capsys, *argv)
    assert code == 0
    rows = [line for line in first.splitlines() if line.startswith(("RNN ", "LSTM ", "GRU "))]
    assert [r.split()[0] for r in rows] == ["GRU", "LSTM"]
    _, second, _ = run(capsys, *argv)
    mse = lambda text: [line.split()[4] for line in text.splitlines() if line.startswith(("GRU ", "LSTM "))]
    assert mse(first) == mse(second)  # a fixed seed gives the same results


def test_demo_interrupted_prints_the_partial_table(capsys, tmp_path, monkeypatch):
    from rnncore import demo

    calls = {"n": 0}
    original = demo.LastStepRegressor.loss_and_grads

    def interrupt_on_the_30th_step(self, x, target):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return original(self, x, target)

    monkeypatch.setattr(demo.LastStepRegressor, "loss_and_grads", interrupt_on_the_30th_step)
    code, out, _ = run(capsys, *TINY_DEMO, "--out", str(tmp_path), "--no-plot")
    assert code == 130
    assert "interrupted" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("RNN ", "LSTM ", "GRU "))]
    assert [(r[0], r[3]) for r in rows] == [("RNN", "20"), ("LSTM", "9")]  # GRU never started


def test_demo_out_that_is_a_file_is_a_one_line_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, *TINY_DEMO, "--cells", "gru", "--out", str(blocker))
    assert_one_line_error(code, err, "rnncore demo", 1)


# ---------------------------------------------------------------- gradflow
def test_gradflow_tiny_prints_norms_from_the_last_step_to_the_first(capsys, tmp_path):
    code, out, _ = run(capsys, "gradflow", "--T", "12", "--batch", "4", "--batches", "2",
                       "--every", "5", "--hidden", "4", "--out", str(tmp_path))
    assert code == 0
    steps = [line.split()[0] for line in out.splitlines()
             if line.split() and line.split()[0].isdigit()]
    assert steps == ["11", "6", "1", "0"]
    assert "x0/xT" in out and "RNN H=" in out and "LSTM H=" in out and "GRU H=" in out
    if HAS_MATPLOTLIB:
        assert (tmp_path / "gradflow.png").stat().st_size > 1000
    else:
        assert "install matplotlib" in out


def test_gradflow_after_training_steps(capsys, tmp_path):
    code, out, _ = run(capsys, "gradflow", "--T", "6", "--batch", "4", "--batches", "1", "--cells", "lstm",
                       "--train-steps", "3", "--hidden", "4", "--no-plot", "--no-progress")
    assert code == 0
    assert "after 3 training steps" in out


@pytest.mark.parametrize("norms, sentence", [
    ([4.0, 2.0, 1.0], "LSTM: the gradient at t=0 is 0.6 decades above the one at t=2"),
    ([1e-3, 0.1, 1.0], "LSTM: the gradient at t=0 is 3.0 decades below the one at t=2"),
    ([1.05, 1.0, 1.0], "LSTM: the gradient at t=0 is within 0.05 decades of the one at t=2"),
    ([0.0, 1.0, 1.0], "LSTM: the gradient at t=0 underflowed to 0 (the one at t=2 did not)"),
])
def test_gradflow_says_above_or_below_as_the_norms_are(capsys, monkeypatch, norms, sentence):
    import numpy as np

    from rnncore import gradflow

    monkeypatch.setattr(gradflow, "measure",
                        lambda cell, hidden, **_: gradflow.GradFlow("LSTM", hidden, np.array(norms)))
    code, out, _ = run(capsys, "gradflow", "--T", "3", "--cells", "lstm", "--no-plot", "--no-progress")
    assert code == 0
    assert f"  {sentence}" in out.splitlines(), out


# ---------------------------------------------------------------- charlm
def test_charlm_on_a_text_file_reports_bits_per_character_and_samples(capsys, tmp_path):
    code, out, _ = run(capsys, *TINY_CHARLM, "--text", text_file(tmp_path), "--prime", "the ")
    assert code == 0
    assert "held-out bits per character:" in out
    sample = out.split("--- sample")[1].split("\n", 1)[1].rsplit("\n---", 1)[0]
    assert sample.startswith("the ") and len(sample) == 4 + 30


def test_charlm_defaults_to_python_standard_library_sources(capsys):
    code, out, _ = run(capsys, *TINY_CHARLM, "--max-chars", "3000", "--temperature", "0")
    assert code == 0
    assert "stdlib modules" in out and "bits per character" in out


def test_charlm_missing_file_is_a_one_line_error(capsys, tmp_path):
    code, _, err = run(capsys, *TINY_CHARLM, "--text", str(tmp_path / "missing.txt"))
    assert_one_line_error(code, err, "rnncore charlm", 1)
    assert "cannot read" in err and "missing.txt" in err


def test_charlm_directory_binary_and_short_files_are_one_line_errors(capsys, tmp_path):
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 20)
    short = tmp_path / "short.txt"
    short.write_text("abc", encoding="utf-8")
    for path in (tmp_path, binary, short):
        code, _, err = run(capsys, *TINY_CHARLM, "--text", str(path))
        assert_one_line_error(code, err, "rnncore charlm", 1)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_charlm_unreadable_file_is_a_one_line_error(capsys, tmp_path):
    path = text_file(tmp_path)
    os.chmod(path, 0)
    code, _, err = run(capsys, *TINY_CHARLM, "--text", path)
    assert_one_line_error(code, err, "rnncore charlm", 1)


# ---------------------------------------------------------------- bench
def test_bench_runs_the_harness_or_says_it_is_missing(capsys):
    if HAS_BENCHMARK:
        code, out, _ = run(capsys, "bench", "--help")
        assert code == 0 and "usage" in out.lower()
    else:
        code, _, err = run(capsys, "bench")
        assert_one_line_error(code, err, "rnncore bench", 1)


@pytest.mark.skipif(not HAS_BENCHMARK, reason="rnncore.benchmark is not installed")
@pytest.mark.parametrize("argv", [["--bogus"], ["--shapes", "20x3"], ["--cells", "lstm,rnm"],
                                  ["--bidirectional", "maybe"], ["--pin-cpu", "4096"],
                                  ["--threads", "2", "--pin-cpu", "0"]])
def test_bench_usage_errors_are_one_line_with_status_2(capsys, argv):
    code, _, err = run(capsys, "bench", *argv)
    assert_one_line_error(code, err, "rnncore bench", 2)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_pin_to_cpu_keeps_the_process_on_that_cpu():
    """Benchmarks' --pin-cpu (run in a child: pinning pytest itself would slow every later test)."""
    code = ("import os; from rnncore._cli import pin_to_cpu; cpu = max(os.sched_getaffinity(0)); "
            "pin_to_cpu(cpu, [1]); print(sorted(os.sched_getaffinity(0)) == [cpu])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


@pytest.mark.skipif(not HAS_BENCHMARK, reason="rnncore.benchmark is not installed")
def test_bench_help_names_no_internal_issue(capsys):
    code, out, _ = run(capsys, "bench", "--help")
    assert code == 0
    assert "issue" not in out.lower()


@pytest.mark.skipif(not HAS_BENCHMARK, reason="rnncore.benchmark is not installed")
def test_bench_shapes_take_an_input_size():
    from rnncore import benchmark

    args = benchmark.build_parser().parse_args(
        ["--shapes", "20x3x7x5,16x2x4", "--cells", "lstm", "--modes", "inference"])
    with_input, square = benchmark.build_cases(args)
    assert (with_input.hidden, with_input.batch, with_input.steps, with_input.inputs) == (20, 3, 7, 5)
    assert square.inputs == 16 and "x5 " not in square.name
    assert "20x3x7x5" in with_input.name
    assert with_input.forward_flops() == 2.0 * 7 * 3 * 4 * 20 * (5 + 20)
    results, _ = benchmark.run_cases([with_input], repeats=1, min_seconds=0.0, with_torch=False,
                                     log=lambda *a: None)
    assert results[0].ms["rnncore"] > 0


@pytest.mark.skipif(not HAS_BENCHMARK, reason="rnncore.benchmark is not installed")
def test_bench_times_onnx_runtimes_own_matmul():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from rnncore import benchmark

    rate = benchmark.ort_matmul_gflops(ort, 1, shape=(64, 48, 32), repeats=1)
    assert rate is not None and 0 < rate < 1e5


@pytest.mark.skipif(not HAS_BENCHMARK, reason="rnncore.benchmark is not installed")
def test_bench_leaves_out_the_ort_matmul_without_onnx(monkeypatch):
    from rnncore import benchmark

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    assert benchmark.ort_matmul_gflops(object(), 1, shape=(8, 8, 8), repeats=1) is None


@pytest.mark.skipif(not HAS_BENCHMARK, reason="rnncore.benchmark is not installed")
@pytest.mark.parametrize("text", ["20x3", "20x3x7x5x1", "20x0x7", "20xax7"])
def test_bench_rejects_malformed_shapes(capsys, text):
    from rnncore import benchmark

    with pytest.raises(SystemExit):
        benchmark.build_parser().parse_args(["--shapes", text])
    assert "HxNxT" in capsys.readouterr().err


# ---------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("argv", [
    ["demo", "--T", "1"],
    ["demo", "--T", "ten"],
    ["demo", "--steps", "0"],
    ["demo", "--cells", "lstm,transformer"],
    ["demo", "--cells", ","],
    ["demo", "--lr", "-0.1"],
    ["demo", "--lr", "nan"],
    ["demo", "--seed", "-1"],
    ["demo", "--threads", "0"],
    ["demo", "--bogus"],
    ["gradflow", "--every", "0"],
    ["gradflow", "--batches", "x"],
    ["charlm", "--temperature", "-1"],
    ["charlm", "--bptt", "0"],
    ["charlm", "--max-chars", "5"],
    ["frobnicate"],
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv):
    code, _, err = run(capsys, *argv)
    prog = "rnncore" if argv[0] == "frobnicate" else f"rnncore {argv[0]}"
    assert_one_line_error(code, err, prog, 2)


# ---------------------------------------------------------------- progress
def test_simple_progress_bar_logs_plain_lines_when_not_a_terminal(tmp_path):
    with open(tmp_path / "log", "w") as handle:
        with SimpleBar(5, desc="job", file=handle) as bar:
            for _ in range(5):
                bar.update(1)
                bar.set_postfix_str("loss 1.0")
    text = (tmp_path / "log").read_text()
    assert "\r" not in text
    assert text.splitlines()[-1].startswith("job: 100%|") and "5/5" in text and "loss 1.0" in text


# ---------------------------------------------------------------- as a process
def test_python_m_rnncore_demo_in_a_subprocess(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rnncore", *TINY_DEMO, "--cells", "lstm", "--out", str(tmp_path), "--no-plot"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LSTM" in result.stdout and "0.167" in result.stdout


def test_python_m_rnncore_bad_argument_in_a_subprocess():
    result = subprocess.run([sys.executable, "-m", "rnncore", "demo", "--steps", "-3"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "rnncore demo: error: argument --steps: expected an integer >= 1, got -3 (see rnncore demo --help)"]


# Runs the rnncore program with or without threadpoolctl and reports, at exit, the CPU time of
# the whole process and of its main thread: any other thread's work shows as the difference,
# however busy the machine is (a wall-clock ratio would not: on a loaded machine the extra
# threads' time hides in the wall time).
CPU_REPORTING_PROGRAM = """
import atexit, sys, time
if sys.argv[1] == "without-threadpoolctl":
    sys.modules["threadpoolctl"] = None  # as on a machine without it
del sys.argv[1]
atexit.register(lambda: print(f"cpu seconds: process {time.process_time()} main thread {time.thread_time()}",
                              file=sys.stderr))
from rnncore.__main__ import main
sys.exit(main())
"""


@pytest.mark.skipif(sys.platform == "win32" or sys.version_info < (3, 10),
                    reason="the restart that limits the BLAS is POSIX-only; sys.orig_argv is 3.10+")
@pytest.mark.parametrize("threadpoolctl", [
    "without-threadpoolctl",
    pytest.param("with-threadpoolctl", marks=pytest.mark.skipif(
        importlib.util.find_spec("threadpoolctl") is None, reason="threadpoolctl is not installed")),
])
def test_charlm_on_one_thread_uses_one_core(threadpoolctl):
    import resource

    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                        "VECLIB_MAXIMUM_THREADS", "OMP_NUM_THREADS")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", CPU_REPORTING_PROGRAM, threadpoolctl, "charlm", "--threads", "1",
         "--steps", "30", "--max-chars", "20000", "--sample-chars", "20", "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode == 0, result.stderr
    report = result.stderr.strip().splitlines()[-1].split()
    process, main_thread = float(report[3]), float(report[6])
    assert process <= 1.2 * main_thread + 0.2, result.stderr  # the other threads did next to nothing
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu <= 1.3 * wall, (cpu, wall)


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default. A shell starts a background job with
    SIGINT ignored, and an ignored signal stays ignored across exec, so without this the child of
    a pytest run started with `&` would never see the Ctrl-C the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_stops_the_demo_cleanly_with_a_partial_table(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "rnncore", "demo", "--T", "20", "--steps", "100000", "--test-size", "50",
         "--hidden", "8", "--no-progress", "--no-plot", "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        lines = []
        for line in process.stdout:  # the header ends with the test-set line; training follows
            lines.append(line)
            if line.lstrip().startswith("test set:"):
                break
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:  # a failed or timed-out test must not leave a 100000-step demo running
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    out = "".join(lines) + out
    assert "interrupted" in out
    assert any(line.startswith("RNN ") and "(interrupted)" in line for line in out.splitlines())
