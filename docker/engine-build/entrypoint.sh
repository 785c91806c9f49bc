#!/usr/bin/env bash
# engine-build service: fill /models/repository for `tritonserver --model-config-name=gpu`.
# Reuses the plan from an earlier run when it was built for this GPU, TensorRT, checkpoint, precision, max batch and
# top-K (python -m rtmo.build.reuse); otherwise exports and builds it (minutes). Settings come from the environment.
set -euo pipefail

checkpoint="${RTMO_CHECKPOINT:-rtmo-s_body7}"
precision="${RTMO_PRECISION:-fp16}"
max_batch="${RTMO_MAX_BATCH_SIZE:-8}"
top_k="${RTMO_TOP_K:-256}"
workspace_gib="${RTMO_WORKSPACE_GIB:-4}"
# CPU instances of the Python models: enough to keep the GPU engine busy (README, "Sizing a GPU host").
instances=(--preprocess-instances "${RTMO_PREPROCESS_INSTANCES:-2}" --postprocess-instances "${RTMO_POSTPROCESS_INSTANCES:-2}")
models="${RTMO_MODELS_DIR:-/models}"          # the compose volume
templates="${RTMO_TEMPLATES:-/opt/rtmo/model_repository}"
repository="$models/repository"
work="$models/work"

# The image's templates win over an older copy in the volume; built artifacts in the volume stay.
mkdir -p "$repository" "$work"
cp -r "$templates/." "$repository/"

if python3 -m rtmo.build.reuse --export-dir "$work/export" --checkpoint "$checkpoint" --precision "$precision" \
        --max-batch-size "$max_batch" --top-k "$top_k"; then
    python3 -m rtmo.build.assemble --export-dir "$work/export" --target gpu --repository "$repository" \
        --max-batch-size "$max_batch" "${instances[@]}"
else
    status=$?
    [ "$status" -eq 1 ] || exit "$status"
    python3 -m rtmo.build --checkpoint "$checkpoint" --target gpu --repository "$repository" --work-dir "$work" \
        --precision "$precision" --max-batch-size "$max_batch" --top-k "$top_k" --workspace-gib "$workspace_gib" \
        "${instances[@]}"
fi
echo "engine-build: $repository ready for tritonserver --model-config-name=gpu"
