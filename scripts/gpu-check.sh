#!/usr/bin/env bash
# GPU verification of Hansa's CUDA kernels on a machine with CUDA and a CUDA build of PyTorch
# but no package registry and no gRPC/protobuf/toml++/CLI11/spdlog development files.
#
#   scripts/gpu-check.sh --prepare   HERE (Debian 12, registry reachable): download the Debian
#                                    .deb files the build needs into .gpu-prefix/debs and a small
#                                    Fashion-MNIST sample into .gpu-prefix/data (both ignored
#                                    through .git/info/exclude), unpack them into
#                                    .gpu-prefix/root to check, and print what will travel.
#   scripts/gpu-check.sh [--out DIR] [--skip-federation]
#                                    ON THE GPU MACHINE (carry .gpu-prefix/debs and
#                                    .gpu-prefix/data): unpack the .debs into a local prefix,
#                                    configure with it and torch's CMake dir, build the CUDA
#                                    tests and kernel benchmark (falling back to a build of the
#                                    CUDA module alone when the whole project does not
#                                    configure), run the tests and the benchmark (JSON), build
#                                    the binaries and run a 3-site federation on the GPU with
#                                    secure aggregation (each site masks its update on the
#                                    device), time a whole round secure against plaintext on the
#                                    machine's cores (BM_Round), and print a table. Results go
#                                    to DIR (default $OUT or
#                                    .gpu-prefix/out).
# Device tool call:  run(command="scripts/gpu-check.sh", carry=[".gpu-prefix/debs",
#                        ".gpu-prefix/data"], timeout_s=540)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
gp=$root/.gpu-prefix
mode=run
out=${OUT:-$gp/out}
federation=1
while [ $# -gt 0 ]; do
  case $1 in
    --prepare) mode=prepare ;;
    --out) out=$2; shift ;;
    --skip-federation) federation=0 ;;
    -h|--help) sed -n 2,24p "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# What the build needs that a CUDA+PyTorch image lacks, and the runtime libraries they need
# (libc, libstdc++ and Kerberos/tirpc, which the image has, are left out).
packages=(libgrpc++-dev libgrpc-dev libgrpc++1.51 libgrpc29 protobuf-compiler protobuf-compiler-grpc
  libprotobuf-dev libprotobuf32 libprotobuf-lite32 libprotoc32 libabsl-dev libabsl20220623
  libre2-dev libre2-9 libc-ares-dev libc-ares2 libssl-dev libssl3 zlib1g-dev
  libtomlplusplus-dev libtomlplusplus3 libcli11-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
  nlohmann-json3-dev libgtest-dev libgmock-dev googletest libbenchmark-dev libbenchmark1debian
  libsqlite3-dev libsqlite3-0 libgloo-dev)

unpack() {  # unpack every .deb of $1 into $2
  mkdir -p "$2"
  for deb in "$1"/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$deb" "$2" || return 1
    else  # ar + tar where dpkg is missing
      local tmp; tmp=$(mktemp -d)
      (cd "$tmp" && ar x "$deb" && tar -xf data.tar.* -C "$2") || return 1
      rm -rf "$tmp"
    fi
  done
}

if [ "$mode" = prepare ]; then
  set -e
  grep -qx '/.gpu-prefix/' "$root/.git/info/exclude" 2>/dev/null ||
    echo '/.gpu-prefix/' >>"$root/.git/info/exclude"
  rm -rf "$gp/debs" "$gp/root"
  mkdir -p "$gp/debs" "$gp/data"
  (cd "$gp/debs" && apt-get download "${packages[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  # The 10k-example test split serves as both splits of the smoke federation (4.4 MB; the
  # 26 MB training split would crowd the 64 MiB the device tool carries).
  src=/usr/share/datasets/fashion-mnist
  if [ -f "$src/t10k-images-idx3-ubyte.gz" ]; then
    cp "$src"/t10k-*-ubyte.gz "$gp/data/"
  else
    echo "gpu-check: $src missing (apt-get install dataset-fashion-mnist); no federation data" >&2
  fi
  unpack "$gp/debs" "$gp/root"
  echo "gpu-check --prepare: $(ls "$gp/debs" | wc -l) packages"
  du -sh "$gp/debs" "$gp/data" "$gp/root"
  echo "carry: .gpu-prefix/debs .gpu-prefix/data ($(du -sch "$gp/debs" "$gp/data" | tail -1 | cut -f1) in all)"
  exit 0
fi

# ---------------------------------------------------------------- run mode (GPU machine)
mkdir -p "$out"
log=$out/gpu-check.log
exec > >(tee -a "$log") 2>&1
start=$(date +%s)
step() { echo; echo "=== [$(($(date +%s) - start))s] $*"; }
jobs=$(nproc)
prefix=${HANSA_GPU_PREFIX:-/tmp/hansa-gpu-prefix}
declare -A result

step "unpack $(ls "$gp/debs"/*.deb 2>/dev/null | wc -l) packages into $prefix"
if [ ! -d "$gp/debs" ]; then
  echo "gpu-check: $gp/debs is missing: run --prepare where a registry is reachable, and carry it" >&2
  exit 2
fi
unpack "$gp/debs" "$prefix" || { echo "gpu-check: unpacking failed" >&2; exit 2; }
lib=$prefix/usr/lib/x86_64-linux-gnu
export PATH=/usr/local/cuda/bin:$prefix/usr/bin:$PATH
export LD_LIBRARY_PATH=$lib:${LD_LIBRARY_PATH:-}
export CUDACXX=${CUDACXX:-$(command -v nvcc || true)}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$out/gpu.csv"
torch_cmake=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
echo "torch cmake dir: ${torch_cmake:-none}; nvcc: ${CUDACXX:-none}; cmake: $(cmake --version | head -1)"

common_flags=(-DCMAKE_BUILD_TYPE=Release -DHANSA_WITH_CUDA=ON -DHANSA_BUILD_TESTS=ON
  -DHANSA_BUILD_BENCH=ON "-DCMAKE_PREFIX_PATH=$prefix/usr;$torch_cmake"
  -DProtobuf_PROTOC_EXECUTABLE=$prefix/usr/bin/protoc "-DCMAKE_LIBRARY_PATH=$lib"
  "-DCMAKE_INCLUDE_PATH=$prefix/usr/include")
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)

build=$root/build-gpu
step "configure the whole project (build-gpu)"
full=1
# HANSA_GPU_CHECK_MIN=1 goes straight to the CUDA-module-only build.
if [ "${HANSA_GPU_CHECK_MIN:-0}" = 1 ] ||
   ! cmake -S "$root" -B "$build" "${gen[@]}" "${common_flags[@]}" >"$out/configure.log" 2>&1; then
  full=0
  [ -f "$out/configure.log" ] && tail -30 "$out/configure.log"
  step "whole project does not configure: building the CUDA module alone (build-gpu-min)"
  build=$root/build-gpu-min
  src=$build/src
  mkdir -p "$src"
  cat >"$src/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(hansa_cuda_check LANGUAGES C CXX)
# hansa_library/hansa_test root include paths at PROJECT_SOURCE_DIR: the repository.
set(PROJECT_SOURCE_DIR $root)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(HANSA_WITH_CUDA ON)
find_package(Threads REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(GTest REQUIRED)
find_package(benchmark REQUIRED)
include($root/cmake/hansa_helpers.cmake)
enable_testing()
add_compile_options(-Wall -Wextra -Wno-unused-parameter)
add_subdirectory($root/common/status status)
add_subdirectory($root/common/crypto crypto)
add_subdirectory($root/common/secagg secagg)
add_subdirectory($root/cuda cuda)
add_subdirectory($root/tests/unit/cuda tests)
CMAKE
  cmake -S "$src" -B "$build/b" "${gen[@]}" "${common_flags[@]}" >"$out/configure-min.log" 2>&1 ||
    { tail -40 "$out/configure-min.log"; echo "gpu-check: the CUDA module does not configure" >&2; exit 1; }
  build=$build/b
fi
result[configure]=$([ $full = 1 ] && echo "whole project" || echo "CUDA module only")

step "build cuda_test, cuda_bench and upload_bench"
if cmake --build "$build" -j "$jobs" --target cuda_test cuda_bench upload_bench \
    >"$out/build-cuda.log" 2>&1; then
  result[build_cuda]=ok
else
  result[build_cuda]=FAILED; grep -E "error|Error" "$out/build-cuda.log" | head -30
fi
test_bin=$(find "$build" -name cuda_test -type f -perm -u+x | head -1)
bench_bin=$(find "$build" -name cuda_bench -type f -perm -u+x | head -1)
upload_bin=$(find "$build" -name upload_bench -type f -perm -u+x | head -1)

step "CUDA unit tests (GPU against the CPU path, bit for bit)"
if [ -n "$test_bin" ]; then
  "$test_bin" --gtest_output=json:"$out/cuda_test.json" 2>&1 | tail -25
  result[tests]=$([ "${PIPESTATUS[0]}" = 0 ] && echo passed || echo FAILED)
  grep -q SKIPPED <(tail -30 "$log") && result[tests]="${result[tests]} (some skipped: see log)"
else
  result[tests]="not built"
fi

step "kernel benchmark"
if [ -n "$bench_bin" ]; then
  "$bench_bin" --benchmark_format=console --benchmark_out="$out/cuda_bench.json" \
    --benchmark_out_format=json --benchmark_min_time=0.3 2>&1 | tail -20
  result[bench]=$([ "${PIPESTATUS[0]}" = 0 ] && echo ran || echo FAILED)
else
  result[bench]="not built"
fi
result[upload]="not built"
if [ -n "$upload_bin" ]; then
  step "masked upload: end of training to wire chunks, GPU path against CPU path"
  "$upload_bin" --benchmark_format=console --benchmark_out="$out/upload_bench.json" \
    --benchmark_out_format=json 2>&1 | tail -10
  result[upload]=$([ "${PIPESTATUS[0]}" = 0 ] && echo ran || echo FAILED)
fi

result[federation]=skipped
if [ $full = 1 ] && [ $federation = 1 ]; then
  step "build hansa, hansa-coordinator, hansa-client"
  if timeout 300 cmake --build "$build" -j "$jobs" --target hansa hansa-coordinator hansa-client \
      >"$out/build-bin.log" 2>&1; then
    step "3-site federation on the GPU, secure aggregation"
    fed=/tmp/hansa-gpu-federation
    rm -rf "$fed"; mkdir -p "$fed/logs"
    port=50071
    sites=(berlin paris wien)
    "$build/tools/hansa" provision --out "$fed/kit" --federation gpu-check \
      --coordinator coordinator:DE:GPU-Check-Coordinator --site berlin:DE:Berlin-GPU \
      --site paris:FR:Paris-GPU --site wien:AT:Wien-GPU --listen "127.0.0.1:$port" \
      --shard-shared-data >"$fed/provision.txt"
    cat >>"$fed/kit/coordinator/coordinator.toml" <<TOML

[model]
name = "simple_cnn"
seed = 1

[rounds]
total = 3
min_sites = 3
wait_for_sites_seconds = 60

[training]
epochs = 1
batch_size = 64
learning_rate = 0.02
momentum = 0.9
TOML
    for site in "${sites[@]}"; do
      f=$fed/kit/sites/$site/site.toml
      sed -i "s|/usr/share/datasets/fashion-mnist/train-|$gp/data/t10k-|; s|/usr/share/datasets/fashion-mnist/t10k-|$gp/data/t10k-|" "$f"
      sed -i "s|^\[policy\]|[policy]\nmin_cohort = 2|" "$f"
      printf '\n[compute]\ndevice = "cuda"\n' >>"$f"
    done
    t0=$(date +%s)
    "$build/coordinator/hansa-coordinator" --config "$fed/kit/coordinator/coordinator.toml" \
      >"$fed/logs/coordinator.log" 2>&1 &
    coord=$!
    pids=()
    for site in "${sites[@]}"; do
      "$build/client/hansa-client" --once --config "$fed/kit/sites/$site/site.toml" \
        >"$fed/logs/$site.log" 2>&1 &
      pids+=($!)
    done
    if timeout 240 tail --pid=$coord -f /dev/null; then
      wait $coord && result[federation]="3 rounds in $(($(date +%s) - t0))s" ||
        result[federation]=FAILED
    else
      result[federation]="timed out"; kill $coord 2>/dev/null
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    "$build/tools/hansa" metrics "$fed/kit/coordinator/state" 2>&1 | tee "$out/federation.txt"
    grep -il "cuda" "$fed"/logs/*.log >/dev/null && echo "(site logs mention CUDA)"
    masked=$(grep -h "masked on cuda" "$fed"/logs/*.log | wc -l)
    result[gpu_masking]="$masked of 9 site rounds masked on the GPU"
    grep -h "masked on cuda\|masked update accepted" "$fed"/logs/*.log | tail -6
    tail -5 "$fed"/logs/*.log
    tar -czf "$out/federation-logs.tgz" -C "$fed" logs kit/coordinator/state/metrics.jsonl 2>/dev/null
  else
    result[federation]="binaries did not build"
    grep -E "error" "$out/build-bin.log" | head -20
  fi
fi

# The whole-round ratio of secure to plaintext aggregation (10 sites, 10 million parameters,
# loopback mTLS) where the sites do not all share two cores: a CPU benchmark, run here for this
# machine's cores, and only while the device time allows (about a minute on 16 cores).
result[round_ratio]="not run"
if [ $full = 1 ] && [ $(($(date +%s) - start)) -lt 420 ]; then
  step "whole round, secure against plaintext ($jobs cores)"
  if timeout 120 cmake --build "$build" -j "$jobs" --target transfer_bench >"$out/build-bench.log" 2>&1; then
    tb=$(find "$build" -name transfer_bench -type f -perm -u+x | head -1)
    timeout 150 "$tb" --benchmark_filter=BM_Round --benchmark_out="$out/round_bench.json" \
      --benchmark_out_format=json 2>&1 | grep BM_Round
    result[round_ratio]=$(python3 - "$out/round_bench.json" 2>/dev/null <<'PY'
import json, sys
b = {int(x["secure"]): x["round_s"] for x in json.load(open(sys.argv[1]))["benchmarks"]}
print(f"plaintext {b[0]:.3f} s, secure {b[1]:.3f} s, ratio {b[1] / b[0]:.2f}")
PY
    )
  else
    result[round_ratio]="transfer_bench did not build"
  fi
fi

step "summary"
printf '%-12s %s\n' configure "${result[configure]}" "build" "${result[build_cuda]}" \
  tests "${result[tests]}" bench "${result[bench]}" upload "${result[upload]}" \
  federation "${result[federation]}" gpu-masking "${result[gpu_masking]:-not run}" \
  round-ratio "${result[round_ratio]}"
if [ -f "$out/cuda_bench.json" ] && command -v python3 >/dev/null; then
  python3 - "$out/cuda_bench.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ctx = d.get("context", {})
print(f"\ndevice {ctx.get('device')}  SMs {ctx.get('multiprocessors')}  SM clock {ctx.get('sm_clock_mhz')} MHz"
      f"  ChaCha20 bound {float(ctx.get('chacha_bound_GBps', 0)):.0f} GB/s keystream")
copy = max((b.get("memory_GBps", 0) for b in d["benchmarks"] if b["name"].startswith("BM_DeviceCopy")), default=0)
print(f"{'benchmark':44} {'ms':>8} {'data GB/s':>10} {'mem GB/s':>9} {'% copy':>7} {'ks GB/s':>8} {'% bound':>8}")
for b in d["benchmarks"]:
    if b.get("error_occurred"):
        print(f"{b['name']:44} error: {b.get('error_message')}"); continue
    ms = b["real_time"] / 1e6 if b["time_unit"] == "ns" else b["real_time"]
    mem = b.get("memory_GBps", 0); ks = b.get("keystream_GBps", 0); bound = b.get("chacha_bound_GBps", 0)
    print(f"{b['name'].replace('/manual_time',''):44} {ms:8.3f} {b.get('data_GBps',0):10.1f} {mem:9.1f}"
          f" {100*mem/copy if copy else 0:6.1f}% {ks:8.1f} {(f'{100*ks/bound:7.1f}%' if bound else '      -')}")
PY
fi
echo "results in $out (log, cuda_test.json, cuda_bench.json, federation.txt)"
