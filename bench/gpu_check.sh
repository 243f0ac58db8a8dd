#!/usr/bin/env bash
# The one prepared GPU run for the CUDA kernels (issue 17): build with CUDA, run the CUDA tests
# against the CPU kernels, the NumPy reference and torch.nn on CUDA (cuDNN), then the comparison
# with cuDNN (bench/cuda_compare.py), within about 8 minutes, each step under its own timeout.
#
#   bash bench/gpu_check.sh --prepare   # here, on a machine without a GPU: fills .gpu-carry/
#   bash bench/gpu_check.sh             # there, on the GPU machine, with .gpu-carry/ carried
#                                       # (device run: carry [".gpu-carry"], timeout_s 600)
#
# --prepare copies into .gpu-carry/ (in .gitignore, so it travels only as a carried path) what the GPU image
# lacks: Eigen's headers and CMake package (from the cmeel-eigen wheel of the Python given as
# $PYTHON, default python3) and GoogleTest (Debian's libgtest-dev). The GPU image brings nvcc,
# CMake, ninja, python3 with numpy, torch (CUDA), pybind11 and the nvidia-cublas wheel.
#
# Three files go to $OUT (default ./gpu-check-out; the device tool brings back at most 8):
# summary.txt (one line per step: name, exit code, seconds), steps.log (every step's whole
# output) and the comparison's JSON, which also goes to bench/results/cuda_compare_<gpu>.json.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
carry=$root/.gpu-carry

if [ "${1:-}" = "--prepare" ]; then
  set -e
  py=${PYTHON:-python3}
  cmeel=$("$py" -c "import os, sys; print(next(os.path.join(p, 'cmeel.prefix') for p in sys.path if os.path.isdir(os.path.join(p, 'cmeel.prefix', 'include', 'eigen3'))))")
  rm -rf "$carry"
  mkdir -p "$carry/eigen/include" "$carry/eigen/share" "$carry/gtest/include" "$carry/gtest/lib/x86_64-linux-gnu/cmake"
  cp -r "$cmeel/include/eigen3" "$carry/eigen/include/"
  cp -r "$cmeel/share/eigen3" "$carry/eigen/share/"
  cp -r /usr/include/gtest "$carry/gtest/include/"
  cp /usr/lib/x86_64-linux-gnu/libgtest.a /usr/lib/x86_64-linux-gnu/libgtest_main.a "$carry/gtest/lib/x86_64-linux-gnu/"
  cp -r /usr/lib/x86_64-linux-gnu/cmake/GTest "$carry/gtest/lib/x86_64-linux-gnu/cmake/"
  du -sh "$carry"
  exit 0
fi

out=${OUT:-$root/gpu-check-out}
mkdir -p "$out"
summary=$out/summary.txt
: > "$summary"
: > "$out/steps.log"
logs=$(mktemp -d)
build=${BUILD_DIR:-$root/build-gpu}
py=python3
jobs=$(nproc)

# The whole run must end inside one device call (10 minutes): no step outlives this deadline.
deadline=${GPU_CHECK_SECONDS:-540}

# step NAME SECONDS COMMAND...: runs COMMAND (a program or an exported function) under a
# timeout, the smaller of SECONDS and what is left before the deadline; its output in
# steps.log. A step with under 20 s left is not started.
step() {
  local name=$1 limit=$2 start=$SECONDS rc left
  shift 2
  left=$((deadline - SECONDS))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 20 ]; then
    printf '%-22s not run: the %ds deadline is near\n' "$name" "$deadline" | tee -a "$summary"
    return 124
  fi
  echo "=== $name (timeout ${limit}s)"
  timeout "$limit" bash -c '"$@"' _ "$@" > "$logs/$name.log" 2>&1
  rc=$?
  tail -n 15 "$logs/$name.log"
  { echo "=== $name (rc=$rc)"; cat "$logs/$name.log"; } >> "$out/steps.log"
  printf '%-22s rc=%-4s %4ds\n' "$name" "$rc" $((SECONDS - start)) | tee -a "$summary"
  return $rc
}

device_info() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  nvcc --version | tail -n 2
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name(0))"
}

# cuBLAS: the toolkit's, else the nvidia-cublas wheel's (the loader's run-time search).
find_cublas() {
  local lib
  lib=$(ldconfig -p 2>/dev/null | awk '/libcublas\.so\.13 /{print $NF; exit}')
  [ -z "$lib" ] && lib=$("$py" - <<'EOF'
import glob, os, site
for base in site.getsitepackages():
    for hit in glob.glob(os.path.join(base, "nvidia", "**", "libcublas.so.13"), recursive=True):
        print(hit)
        raise SystemExit
EOF
)
  echo "$lib"
}

configure_and_build() {
  local lib abi=() pybind_dir targets=(rnncore_cuda_tests cuda_api_check rnncore_cuda_bench rnncore_cpp_tests _core)
  lib=$(find_cublas)
  # The cuBLAS header beside that library, to check the loader's declarations against.
  if [ -n "$lib" ] && [ -f "$(dirname "$lib")/../include/cublas_v2.h" ]; then
    abi=(-DRNNCORE_CUBLAS_INCLUDE_DIR="$(dirname "$lib")/../include")
    targets+=(rnncore_cublas_abi_check)
  fi
  pybind_dir=$("$py" -m pybind11 --cmakedir)
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRNNCORE_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90-real -DRNNCORE_BUILD_TESTS=ON -DRNNCORE_BUILD_PYTHON=ON \
    -DPython_EXECUTABLE="$(command -v "$py")" -Dpybind11_DIR="$pybind_dir" \
    -DEigen3_DIR="$carry/eigen/share/eigen3/cmake" -DGTest_DIR="$carry/gtest/lib/x86_64-linux-gnu/cmake/GTest" \
    "${abi[@]}" &&
  cmake --build "$build" -j "$jobs" --target "${targets[@]}" &&
  cp "$build"/_core*.so python/rnncore/
}

export -f device_info find_cublas configure_and_build
export root carry build py jobs
export PYTHONPATH=$root/python${PYTHONPATH:+:$PYTHONPATH}
RNNCORE_CUBLAS_LIBRARY=$(find_cublas)
export RNNCORE_CUBLAS_LIBRARY

step device_info 60 device_info
step build 300 configure_and_build || { echo "build failed: nothing else can run"; exit 1; }
step info 60 "$py" -m rnncore info
step gtest_cpu_side 60 "$build/tests/cpp/rnncore_cpp_tests" --gtest_filter='Cuda*:CellUnit*'
step gtest_cuda 150 "$build/tests/cpp/rnncore_cuda_tests"
step numpy_reference 150 "$py" tests/cpp/check_cpp_api.py --driver "$build/tests/cpp/cuda_api_check" \
  --workdir "$build/cuda_api_cases" --quick
step torch_cudnn 120 "$py" tests/cpp/check_cuda_torch.py --driver "$build/tests/cpp/cuda_api_check" \
  --workdir "$build/cuda_torch_cases" --quick
step compare 240 "$py" bench/cuda_compare.py --bench "$build/rnncore_cuda_bench" --budget 150
cp bench/results/cuda_compare_*.json "$out/" 2>/dev/null
echo
cat "$summary"
