#!/usr/bin/env bash
# perf service: real-photo input data, then one perf_analyzer concurrency sweep over gRPC with server metrics.
# Settings (environment): PERF_MODEL (rtmo | engine), PERF_CONCURRENCY (start:end:step), PERF_MEASUREMENT_MS,
# TRITON_GRPC_URL, TRITON_METRICS_URL. Results: /results/perf_<model>.csv (perf_analyzer --verbose-csv).
set -euo pipefail

model="${PERF_MODEL:-rtmo}"
concurrency="${PERF_CONCURRENCY:-1:16:1}"
interval_ms="${PERF_MEASUREMENT_MS:-5000}"
url="${TRITON_GRPC_URL:-triton:8001}"
metrics_url="${TRITON_METRICS_URL:-http://triton:8002/metrics}"
mkdir -p /results

python3 loadtest/perf_input_data.py --model "$model" --out "/results/input_$model.json" \
    --photos data/photos --url "$url"
exec perf_analyzer -m "$model" -u "$url" -i grpc --async \
    --input-data "/results/input_$model.json" \
    --concurrency-range "$concurrency" \
    --measurement-interval "$interval_ms" --percentile 99 \
    --collect-metrics --metrics-url "$metrics_url" --verbose-csv -f "/results/perf_$model.csv" \
    "$@"
