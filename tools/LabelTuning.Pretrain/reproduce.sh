#!/usr/bin/env bash
# Reproduces models/labeltuning-default and docs/models/labeltuning-default.md from nothing:
#   1. the pretraining corpus (npm and apt downloads, ~1 minute),
#   2. pretraining (hours on a CPU; stop it at any time, run this script again and it resumes exactly),
#   3. export of the best checkpoint (float16) and the model card with its loss curve.
# Environment: LABELTUNING_THREADS (CPU threads, default all cores), RUN_DIR (default artifacts/pretrain-run).
# Extra arguments go to the train command, e.g. --max-minutes 60 to stop after an hour (then export what is there).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN_DIR="${RUN_DIR:-artifacts/pretrain-run}"
if [ ! -f data/.cache/pretrain/corpus.txt ] || [ ! -f data/.cache/pretrain/valid.txt ]; then
  bash data/fetch.sh
  dotnet run --project tools/LabelTuning.DataPrep -c Release -- build-all
fi
dotnet build tools/LabelTuning.Pretrain -c Release -nologo -clp:ErrorsOnly
dotnet run --project tools/LabelTuning.Pretrain -c Release --no-build -- train --run-dir "$RUN_DIR" "$@"
dotnet run --project tools/LabelTuning.Pretrain -c Release --no-build -- export --run-dir "$RUN_DIR"
