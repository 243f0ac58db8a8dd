"""ctest: runs the example app (examples/stream_app.cpp, built against the installed package)
on models saved from Python and checks its per-frame outputs against the Python model.

    python check_example_app.py --app PATH/rnncore_stream --workdir DIR

Exit 77 (ctest: skipped) when the rnncore Python package is not importable.
"""

import argparse
import os
import subprocess
import sys

try:
    import numpy as np
    import rnncore as rc
except ImportError as exc:  # pragma: no cover
    print(f"skipped: {exc}")
    sys.exit(77)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--app", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    rng = np.random.default_rng(0)
    models = [rc.LSTM(3, 32, num_layers=2, seed=1), rc.GRU(1, 16, seed=2), rc.RNN(4, 8, nonlinearity="relu", seed=3),
              rc.LSTM(2, 8, bias=False, dtype=np.float64, seed=4)]
    failures = 0
    for i, model in enumerate(models):
        path = os.path.join(args.workdir, f"model{i}.safetensors")
        model.save(path)
        x = rng.standard_normal((200, model.input_size)).astype(np.float32)
        expected, _ = model(x.astype(model.dtype))
        # Frames through stdin, outputs to a file.
        out_path = os.path.join(args.workdir, f"out{i}.f32")
        run = subprocess.run([args.app, path, "--output", out_path], input=x.tobytes(), capture_output=True,
                             timeout=120)
        if run.returncode != 0:
            print(f"{model!r}: the app failed ({run.returncode}): {run.stderr.decode()}")
            failures += 1
            continue
        got = np.fromfile(out_path, dtype="<f4").reshape(expected.shape)
        error = float(np.abs(got - expected).max())
        print(f"{model!r}: {run.stderr.decode().strip().splitlines()[-1]}; max |app - python| = {error:.2e}")
        if error > 2e-6:
            failures += 1
    # A broken model file gets a clear error and exit status 1, not a crash.
    bad = os.path.join(args.workdir, "bad.safetensors")
    with open(bad, "wb") as f:
        f.write(b"\x10" + b"\0" * 7 + b"{not json")
    run = subprocess.run([args.app, bad], input=b"", capture_output=True, timeout=60)
    if run.returncode != 1 or b"bad model file" not in run.stderr:
        print(f"broken file: expected exit 1 with a message, got {run.returncode}: {run.stderr.decode()}")
        failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
