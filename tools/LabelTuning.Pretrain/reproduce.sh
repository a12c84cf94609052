#!/usr/bin/env bash
# Continues the default model's pretraining and exports it (models/labeltuning-default, docs/models/labeltuning-default.md):
#   1. the pretraining corpus, rebuilt byte for byte from the registries (npm and apt downloads, ~1 minute),
#   2. pretraining (hours on a CPU). The run continues from the state committed in models/labeltuning-default/pretraining
#      (weights, position, corpus/tokenizer hashes; a start from it resets the AdamW moments and re-warms the rate),
#      and refuses, with what differs, when the rebuilt corpus or the tokenizer is not the run's. Stop it at any time;
#      running this script again resumes exactly from artifacts/pretrain-run on the same machine, and from the
#      committed state on another (commit models/labeltuning-default/pretraining to keep the progress),
#   3. export of the best checkpoint (float16) and the model card with its loss curve.
# Also: ./build.sh pretrain [train options].
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
