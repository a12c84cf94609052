#!/usr/bin/env bash
# Microsoft.ML.LabelTuning build entry point. Every set-up step a fresh machine needs is here.
#   ./build.sh            build and run the main job (samples/Sentiment)
#   ./build.sh test       build and run the tests; ends with "N passed, N failed"
#   ./build.sh test --all also run the opt-in [TestCategory("Slow")] tests
#   ./build.sh bench      run the benchmarks (JSON lines)
#   ./build.sh bench peer side by side with Hugging Face + PEFT in PyTorch (installs Debian's python3-torch if missing)
#   Extra arguments after the command go to the sample/benchmark. Set CONFIGURATION=Debug for a debug build.
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
CONFIGURATION="${CONFIGURATION:-Release}"
command="${1:-run}"
[ $# -gt 0 ] && shift

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_prerequisites() {
  if ! command -v dotnet >/dev/null 2>&1; then
    echo "error: the .NET 10 SDK is required (https://dot.net); 'dotnet' was not found on PATH." >&2
    exit 1
  fi
  # TorchSharp 0.107.0's native library wants GLIBCXX_3.4.32; older distros (Debian 12, Ubuntu 22.04) get a
  # shim built at build time (build/BuildTools/NativeFix.cs), which needs a C compiler and patchelf.
  [ "$(uname -s)" = Linux ] || return 0
  local libstdcxx
  libstdcxx=$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64|libstdc\+\+\.so\.6 .*AArch64/ {print $NF; exit}')
  [ -n "$libstdcxx" ] || libstdcxx=/usr/lib/x86_64-linux-gnu/libstdc++.so.6
  if [ -f "$libstdcxx" ] && grep -qa "GLIBCXX_3.4.32" "$libstdcxx"; then
    return 0
  fi
  local missing=()
  command -v patchelf >/dev/null 2>&1 || missing+=(patchelf)
  { command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; } || missing+=(gcc)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing ${missing[*]} (needed to adapt TorchSharp's native library to this distro's libstdc++)..."
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

run_tests() {
  local filter=(--filter "TestCategory!=Slow")
  if [ "${1:-}" = "--all" ]; then filter=(); shift; fi
  dotnet build test/Microsoft.ML.LabelTuning.Tests -c "$CONFIGURATION" -nologo -clp:ErrorsOnly
  local log rc=0
  log=$(mktemp)
  dotnet test --project test/Microsoft.ML.LabelTuning.Tests -c "$CONFIGURATION" --no-build "${filter[@]}" "$@" 2>&1 | tee "$log" || rc=$?
  local passed failed skipped
  passed=$(awk '/^ *succeeded:/ {s += $2} END {print s + 0}' "$log")
  failed=$(awk '/^ *failed:/ {s += $2} END {print s + 0}' "$log")
  skipped=$(awk '/^ *skipped:/ {s += $2} END {print s + 0}' "$log")
  rm -f "$log"
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  echo "${passed} passed, ${failed} failed, ${skipped} skipped"
  return "$rc"
}

# ./build.sh bench peer: a Python with torch for the peer side (benchmarks/peer/peer_bench.py).
peer_python() {
  local candidate
  for candidate in "${LABELTUNING_PEER_PYTHON:-}" python3 /usr/bin/python3; do
    if [ -n "$candidate" ] && "$candidate" -c "import torch" >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

prepare_peer() {
  if ! peer_python >/dev/null && command -v apt-get >/dev/null 2>&1 \
    && { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; }; then
    # Debian's torch multiplies through libblas.so.3; OpenBLAS instead of the reference BLAS it would pull in.
    echo "Installing Debian's python3-torch and OpenBLAS for the peer benchmark..."
    as_root apt-get update -qq || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-openmp >/dev/null || true
  fi
  if ! LABELTUNING_PEER_PYTHON=$(peer_python); then
    echo "bench peer: skipped - no Python with torch was found and python3-torch could not be installed with apt" \
      "(set LABELTUNING_PEER_PYTHON to a python that imports torch)." >&2
    exit 0
  fi
  export LABELTUNING_PEER_PYTHON
}

ensure_prerequisites
case "$command" in
  run)
    dotnet build samples/Sentiment -c "$CONFIGURATION" -nologo -clp:ErrorsOnly
    dotnet run --project samples/Sentiment -c "$CONFIGURATION" --no-build -- "$@"
    ;;
  test)
    run_tests "$@"
    ;;
  bench)
    if [ "${1:-}" = peer ]; then prepare_peer; fi
    dotnet build benchmarks/Microsoft.ML.LabelTuning.Benchmarks -c Release -nologo -clp:ErrorsOnly
    dotnet run --project benchmarks/Microsoft.ML.LabelTuning.Benchmarks -c Release --no-build -- "$@"
    ;;
  build)
    dotnet build Microsoft.ML.LabelTuning.sln -c "$CONFIGURATION" -nologo -clp:ErrorsOnly
    ;;
  *)
    echo "usage: ./build.sh [run|test [--all]|bench|build] [args...]" >&2
    exit 2
    ;;
esac
