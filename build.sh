#!/usr/bin/env bash
# Microsoft.ML.LabelTuning build entry point. Every set-up step a fresh machine needs is here.
#   ./build.sh            build and run the main job (samples/Sentiment)
#   ./build.sh test       build and run the tests; ends with "N passed, N failed"
#   ./build.sh test --all also run the opt-in [TestCategory("Slow")] tests
#   ./build.sh bench      run the benchmarks (JSON lines)
#   ./build.sh build      build the solution only
#   ./build.sh notebooks  run samples/notebooks in a .NET Interactive kernel (dotnet-repl) against the library packed from
#                         this checkout, and write their outputs (text, tables, charts) back into the committed notebooks
#   ./build.sh pretrain   continue pretraining the default model from the state committed in
#                         models/labeltuning-default/pretraining (hours; stop any time, run again to resume), then export it
#   ./build.sh prerequisites  only check (and where needed install) what the build needs, then say what was found
#   ./build.sh bench peer side by side with Hugging Face + PEFT in PyTorch (installs Debian's python3-torch if missing)
#   Extra arguments after the command go to the sample/benchmark. Set CONFIGURATION=Debug for a debug build.
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
CONFIGURATION="${CONFIGURATION:-Release}"
command="${1:-run}"
[ $# -gt 0 ] && shift

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Set-up failures name the command, the line and what to do, never a bare exit status. Armed around
# ensure_prerequisites only: the build and test steps print their own errors.
setup_failed() {
  local status=$1 line=$2 failed=$3
  trap - ERR
  # With errtrace the trap also runs inside $(...); let the enclosing command report, once.
  [ "${BASH_SUBSHELL:-0}" -eq 0 ] || exit "$status"
  echo "build.sh: set-up failed: '$failed' exited with status $status (build.sh line $line)." >&2
  if [ "$status" -gt 128 ]; then
    echo "build.sh: status $status means it was killed by signal $((status - 128)) ($(kill -l "$((status - 128))" 2>/dev/null || echo unknown))." >&2
  fi
  echo "build.sh: install what the build needs by hand (the .NET 10 SDK; on Linux with a libstdc++ older than GCC 13's," \
    "gcc and patchelf, e.g. 'sudo apt-get install gcc patchelf'), then run ./build.sh again." \
    "docs/troubleshooting.md explains the libstdc++ step; please report this failure." >&2
  exit "$status"
}

# install_packages <package>...: apt-get install, or say exactly what to install by hand. $install_reason says why.
install_reason="to adapt TorchSharp's native library to this distro's libstdc++"
install_packages() {
  local by_hand="install them by hand ('sudo apt-get install $*' on Debian or Ubuntu, your package manager elsewhere), then run ./build.sh again"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "build.sh: this machine needs $* ($install_reason), and apt-get is not available;" \
      "$by_hand." >&2
    exit 1
  fi
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "build.sh: installing $* needs root and sudo is not installed; $by_hand." >&2
    exit 1
  fi
  echo "Installing $* (needed $install_reason)..."
  if ! as_root apt-get update -qq; then
    echo "build.sh: warning: 'apt-get update' failed (see above); trying to install $* from the package lists already there." >&2
  fi
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; then
    echo "build.sh: 'apt-get install $*' failed (see above); $by_hand." >&2
    exit 1
  fi
}

# find_libstdcxx: the path of the libstdc++.so.6 the loader uses, or nothing.
# ldconfig's whole listing is read into a variable and searched by bash itself, with no pipe: a reader that stops at
# its first match (awk '... {print; exit}', grep -q, head) kills ldconfig with SIGPIPE once the listing passes a pipe
# buffer (64 KiB, a few hundred libraries), and pipefail turns that into build.sh's exit status (141, issue 17).
find_libstdcxx() {
  local ldconfig_bin listing="" found="" candidate
  local entry=$'libstdc\\+\\+\\.so\\.6 \\([^)\n]*(x86-64|AArch64)[^)\n]*\\) => ([^[:space:]]+)'
  ldconfig_bin=$(command -v ldconfig 2>/dev/null) || ldconfig_bin=""
  if [ -z "$ldconfig_bin" ]; then # /sbin is not on a non-root user's PATH on Debian
    for candidate in /sbin/ldconfig /usr/sbin/ldconfig; do
      if [ -x "$candidate" ]; then ldconfig_bin=$candidate; break; fi
    done
  fi
  if [ -n "$ldconfig_bin" ]; then
    listing=$("$ldconfig_bin" -p 2>/dev/null) || listing=""
    if [[ $listing =~ $entry ]]; then found=${BASH_REMATCH[2]}; fi # e.g. "libstdc++.so.6 (libc6,x86-64) => /lib/..."
  fi
  if [ -z "$found" ] && command -v gcc >/dev/null 2>&1; then
    candidate=$(gcc -print-file-name=libstdc++.so.6 2>/dev/null) || candidate=""
    case "$candidate" in /*) found=$candidate ;; esac # gcc echoes the bare name when it has none
  fi
  if [ -z "$found" ]; then # the same places build/BuildTools/NativeFix.cs looks
    for candidate in /usr/lib/x86_64-linux-gnu/libstdc++.so.6 /usr/lib/aarch64-linux-gnu/libstdc++.so.6 \
      /usr/lib64/libstdc++.so.6 /usr/lib/libstdc++.so.6 /lib/x86_64-linux-gnu/libstdc++.so.6; do
      if [ -f "$candidate" ]; then found=$candidate; break; fi
    done
  fi
  echo "$found"
}

prerequisites_found="" # what ensure_prerequisites found, for ./build.sh prerequisites

# The charts (src/Microsoft.ML.LabelTuning/Reporting, ScottPlot) draw text only with a font file they can find: a Latin
# one and, for labels in Chinese or Japanese, a CJK one (ChartFonts.cs lists the paths it searches). On Linux without
# them, install DejaVu Sans and WenQuanYi Micro Hei (5 MB); elsewhere, or without apt-get, say what is missing.
ensure_fonts() {
  [ "$(uname -s)" = Linux ] || return 0
  local latin="" cjk="" candidate
  for candidate in /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf /usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf \
    /usr/share/fonts/dejavu/DejaVuSans.ttf /usr/share/fonts/TTF/DejaVuSans.ttf /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf; do
    if [ -f "$candidate" ]; then latin=$candidate; break; fi
  done
  for candidate in /usr/share/fonts/truetype/wqy/wqy-microhei.ttc /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc \
    /usr/share/fonts/wqy-microhei/wqy-microhei.ttc /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc \
    /usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc /usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc \
    /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf; do
    if [ -f "$candidate" ]; then cjk=$candidate; break; fi
  done
  local missing=()
  [ -n "$latin" ] || missing+=(fonts-dejavu-core)
  [ -n "$cjk" ] || missing+=(fonts-wqy-microhei)
  if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; }; then
      install_reason="for the text of the charts" install_packages "${missing[@]}"
      ensure_fonts
      return 0
    fi
    echo "build.sh: warning: no font for chart text (missing: ${missing[*]}); charts will have blank labels and the chart tests fail." \
      "Install DejaVu Sans and a CJK font (e.g. WenQuanYi Micro Hei), or set LABELTUNING_CHART_FONT to a .ttf file." >&2
  fi
  prerequisites_found+="; fonts: ${latin:-none}, ${cjk:-none}"
}

ensure_prerequisites() {
  if ! command -v dotnet >/dev/null 2>&1; then
    echo "error: the .NET 10 SDK is required (https://dot.net); 'dotnet' was not found on PATH." >&2
    exit 1
  fi
  prerequisites_found="dotnet: $(command -v dotnet)"
  ensure_fonts
  # TorchSharp 0.107.0's native library wants GLIBCXX_3.4.32; older distros (Debian 12, Ubuntu 22.04) get a
  # shim built at build time (build/BuildTools/NativeFix.cs), which needs a C compiler and patchelf.
  [ "$(uname -s)" = Linux ] || return 0
  local libstdcxx
  libstdcxx=$(find_libstdcxx)
  if [ -n "$libstdcxx" ] && [ -f "$libstdcxx" ] && grep -qa "GLIBCXX_3.4.32" "$libstdcxx"; then
    prerequisites_found+="; libstdc++: $libstdcxx (has GLIBCXX_3.4.32, no shim needed)"
    return 0
  fi
  prerequisites_found+="; libstdc++: ${libstdcxx:-not found} (no GLIBCXX_3.4.32: the build adds a shim, with gcc and patchelf)"
  local missing=()
  command -v patchelf >/dev/null 2>&1 || missing+=(patchelf)
  { command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; } || missing+=(gcc)
  if [ ${#missing[@]} -gt 0 ]; then
    install_packages "${missing[@]}"
  fi
}

# pack_library: the library as a NuGet package in artifacts/feed, the folder the notebooks restore it from; the NuGet
# cache's copy of this version is removed (the cache keeps the first package of a version it saw), and on distros with
# an older libstdc++ the cache's copy of TorchSharp's native library gets the same shim as the build outputs, because a
# notebook kernel loads TorchSharp from the NuGet cache.
pack_library() {
  local version torchsharp packages
  version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' src/Microsoft.ML.LabelTuning/Microsoft.ML.LabelTuning.csproj | head -n 1)
  torchsharp=$(sed -n 's:.*<PackageVersion Include="TorchSharp" Version="\([^"]*\)".*:\1:p' Directory.Packages.props | head -n 1)
  dotnet pack src/Microsoft.ML.LabelTuning -c "$CONFIGURATION" --no-build -o artifacts/feed -nologo -clp:ErrorsOnly >/dev/null
  packages=$(dotnet nuget locals global-packages --list)
  packages=${packages#global-packages: }
  packages=${packages%/}
  rm -rf "${packages:?}/microsoft.ml.labeltuning/$version"
  if [ "$(uname -s)" = Linux ] && [ -d "$packages/torchsharp/$torchsharp" ]; then
    dotnet exec artifacts/tools/BuildTools/BuildTools.dll fix-native "$packages/torchsharp/$torchsharp" build/native/glibcxx_shim.c
  fi
}

# run_notebooks <output folder> <log>: runs every samples/notebooks/*.ipynb with dotnet-repl (a local tool pinned in
# .config/dotnet-tools.json), one kernel each, as a user would: its first cell restores Microsoft.ML.LabelTuning from
# artifacts/feed. A cell that throws or does not compile fails the notebook (dotnet-repl exits with 2). Each notebook
# counts as one test in the closing line: "succeeded:"/"failed:" lines are appended to <log>.
run_notebooks() {
  local out=$1 log=$2 feed notebook name start seconds passed=0 failed=0
  feed="$(pwd)/artifacts/feed"
  dotnet tool restore >/dev/null
  pack_library
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  rm -rf artifacts/notebooks/sweep # the sweep resumes from its checkpoint folder; start afresh
  for notebook in samples/notebooks/*.ipynb; do
    name=$(basename "$notebook")
    start=$SECONDS
    if (cd samples/notebooks && RestoreAdditionalProjectSources="$feed" dotnet tool run dotnet-repl -- --run "$name" \
      --exit-after-run --output-format ipynb --output-path "$out/$name.raw") >"$out/${name%.ipynb}.log" 2>&1 \
      && dotnet exec artifacts/tools/BuildTools/BuildTools.dll notebook-clean "$out/$name.raw" "$out/$name" "$(pwd)" >/dev/null; then
      seconds=$((SECONDS - start))
      echo "notebook $name: passed in ${seconds} s"
      passed=$((passed + 1))
    else
      seconds=$((SECONDS - start))
      echo "notebook $name: FAILED after ${seconds} s (outputs: $out/$name.raw, kernel log: $out/${name%.ipynb}.log)"
      if [ -f "$out/$name.raw" ]; then
        grep -o '"evalue": "[^"]*' "$out/$name.raw" | head -n 5 | sed 's/^"evalue": "/  /' || true
      else
        tail -n 20 "$out/${name%.ipynb}.log" || true
      fi
      failed=$((failed + 1))
    fi
  done
  printf 'notebooks (samples/notebooks, dotnet-repl):\n  succeeded: %d\n  failed: %d\n' "$passed" "$failed" | tee -a "$log"
  [ "$failed" -eq 0 ]
}

run_tests() {
  local filter=(--filter "TestCategory!=Slow")
  if [ "${1:-}" = "--all" ]; then filter=(); shift; fi
  # The core tests, then the distributed sweep's (Orleans); the closing line counts both.
  local projects=(test/Microsoft.ML.LabelTuning.Tests test/Microsoft.ML.LabelTuning.Orleans.Tests) project
  # A filter given by hand may match nothing in one of the projects; that is not a failure (exit code 8: zero tests ran).
  local extra=()
  if [ $# -gt 0 ]; then extra=(--ignore-exit-code 8); fi
  for project in "${projects[@]}"; do
    dotnet build "$project" -c "$CONFIGURATION" -nologo -clp:ErrorsOnly
  done
  local log rc=0
  log=$(mktemp)
  for project in "${projects[@]}"; do
    dotnet test --project "$project" -c "$CONFIGURATION" --no-build "${filter[@]}" "${extra[@]}" "$@" 2>&1 | tee -a "$log" || rc=$?
  done
  # The notebooks run in a real kernel too, unless a filter was given by hand.
  if [ $# -eq 0 ]; then
    run_notebooks artifacts/notebooks/run "$log" || rc=1
  fi
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

case "$command" in
  run|test|bench|build|notebooks|pretrain|prerequisites) ;;
  *)
    echo "usage: ./build.sh [run|test [--all]|bench|build|notebooks|pretrain|prerequisites] [args...]" >&2
    exit 2
    ;;
esac

set -o errtrace
trap 'setup_failed $? $LINENO "$BASH_COMMAND"' ERR
ensure_prerequisites
trap - ERR
set +o errtrace

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
  notebooks)
    dotnet build src/Microsoft.ML.LabelTuning -c "$CONFIGURATION" -nologo -clp:ErrorsOnly
    dotnet build build/BuildTools -c Release -nologo -clp:ErrorsOnly
    notebook_log=$(mktemp)
    if run_notebooks artifacts/notebooks/run "$notebook_log"; then
      for notebook in samples/notebooks/*.ipynb; do
        cp "artifacts/notebooks/run/$(basename "$notebook")" "$notebook"
      done
      echo "wrote the outputs into samples/notebooks/*.ipynb"
    else
      rm -f "$notebook_log"
      exit 1
    fi
    rm -f "$notebook_log"
    ;;
  pretrain)
    bash tools/LabelTuning.Pretrain/reproduce.sh "$@"
    ;;
  prerequisites)
    echo "prerequisites: ok ($prerequisites_found)"
    ;;
esac
