#!/usr/bin/env bash
# engine-build service (compose) and init container (Helm chart): fill /models/repository for
# `tritonserver --model-config-name=$RTMO_TARGET`. For gpu, reuses the plan from an earlier run when it was built for
# this GPU, TensorRT, checkpoint, precision, max batch and top-K (python -m rtmo.build.reuse); otherwise exports and
# builds it (minutes). cpu exports the ONNX models for ONNX Runtime. Settings come from the environment.
set -euo pipefail

target="${RTMO_TARGET:-gpu}"
case "$target" in
    cpu | gpu) ;;
    *) echo "engine-build: RTMO_TARGET=$target; accepted: cpu, gpu" >&2; exit 2 ;;
esac

checkpoint="${RTMO_CHECKPOINT:-rtmo-s_body7}"
# A training run's checkpoint holds EMA and source weights; MMPose's EMA hook saved the EMA ones as state_dict.
weights="${RTMO_CHECKPOINT_WEIGHTS:-ema}"
case "$weights" in
    ema | source) ;;
    *) echo "engine-build: RTMO_CHECKPOINT_WEIGHTS=$weights; accepted: ema, source" >&2; exit 2 ;;
esac
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
if [ -n "${RTMO_PLAN_CACHE:-}" ]; then
    # A volume shared by pods, maybe on several GPU models: one folder per GPU model, TensorRT and checkpoint.
    key=$(python3 -c 'import sys; from rtmo.build.reuse import plan_cache_key; print(plan_cache_key(sys.argv[1]))' \
        "$target:$checkpoint:$weights")
    work="$RTMO_PLAN_CACHE/$key"
fi

# The image's templates win over an older copy in the volume; built artifacts in the volume stay.
mkdir -p "$repository" "$work"
cp -r "$templates/." "$repository/"
# Pods starting together on one GPU model build once: the others wait here, then reuse that plan.
exec 9>"$work/.lock"
flock 9

if [ "$target" = cpu ]; then
    python3 -m rtmo.build --checkpoint "$checkpoint" --checkpoint-weights "$weights" --target cpu \
        --repository "$repository" --work-dir "$work" --max-batch-size "$max_batch" --top-k "$top_k" "${instances[@]}"
elif python3 -m rtmo.build.reuse --export-dir "$work/export" --checkpoint "$checkpoint" --checkpoint-weights "$weights" \
        --precision "$precision" --max-batch-size "$max_batch" --top-k "$top_k"; then
    python3 -m rtmo.build.assemble --export-dir "$work/export" --target gpu --repository "$repository" \
        --max-batch-size "$max_batch" "${instances[@]}"
else
    status=$?
    [ "$status" -eq 1 ] || exit "$status"
    python3 -m rtmo.build --checkpoint "$checkpoint" --checkpoint-weights "$weights" --target gpu \
        --repository "$repository" --work-dir "$work" --precision "$precision" --max-batch-size "$max_batch" \
        --top-k "$top_k" --workspace-gib "$workspace_gib" "${instances[@]}"
fi
echo "engine-build: $repository ready for tritonserver --model-config-name=$target"
