#!/usr/bin/env bash
# The GPU run of issue 20, one script, under 10 minutes on one H100 or H200 (the device tool's machine runs it in a copy
# of the repository with the image's python3, which holds torch and transformers):
#   1. the `gpu` test marker (tests/learner; the learner tests need no Django),
#   2. the full tier (fine-tuned MiniLM, bf16) on GoEmotions train/dev/test: target macro-F1 >= 0.52,
#   3. the full tier (tree head) on a seeded tibkat-gnd subsample (.device/data/tibkat: train / dev),
#   4. encoder fine-tuning throughput: tokens/s and MFU in bf16 (bench/bench_throughput.py).
# Results: JSON files in $OUT (the device tool brings them back; default ./gpu-out), summarised by bench/gpu_summary.py.
#
#     bash bench/gpu_prepare.sh                                   # here, once: fills .device/ (encoder, data)
#     run(command="bash bench/gpu_check.sh", carry=[".device"], timeout_s=600)
#     GPU_CHECK_DRY=1 PYTHON=.venv/bin/python bash bench/gpu_check.sh   # the dry run: CPU, tiny sizes, same steps
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ENCODER=.device/encoder
DATA=.device/data
status=0
step() {  # step NAME SECONDS COMMAND...: runs one step with a time limit, logs it, never stops the others
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s)"
  local started=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - started)) s"; tail -n 15 "$OUT/$name.log"
  [ $rc -eq 0 ] || status=1
}
if [ "${GPU_CHECK_DRY:-0}" = 1 ]; then
  echo "DRY RUN on the CPU with tiny sizes: checks the steps, measures nothing"
  DEVICE=cpu
  TMP=$(mktemp -d)
  for f in train dev test; do zcat "$DATA/goemotions/$f.jsonl.gz" | head -n 200 | gzip > "$TMP/ge-$f.jsonl.gz"; done
  for f in train dev; do zcat "$DATA/tibkat/$f.jsonl.gz" | head -n 200 | gzip > "$TMP/tk-$f.jsonl.gz"; done
  GE_TRAIN=$TMP/ge-train.jsonl.gz GE_DEV=$TMP/ge-dev.jsonl.gz GE_TEST=$TMP/ge-test.jsonl.gz
  TK_TRAIN=$TMP/tk-train.jsonl.gz TK_DEV=$TMP/tk-dev.jsonl.gz
  FULL='"epochs": 1, "max_length": 32, "batch_size": 16'
  THROUGHPUT=(--batch-size 4 --seq-len 32 --steps 2 --warmup 1)
else
  DEVICE=cuda
  GE_TRAIN=$DATA/goemotions/train.jsonl.gz GE_DEV=$DATA/goemotions/dev.jsonl.gz GE_TEST=$DATA/goemotions/test.jsonl.gz
  TK_TRAIN=$DATA/tibkat/train.jsonl.gz TK_DEV=$DATA/tibkat/dev.jsonl.gz
  FULL='"epochs": 3, "max_length": 128, "batch_size": 64'
  THROUGHPUT=(--batch-size 256 --seq-len 128 --steps 30 --warmup 5)
fi
[ -d "$ENCODER" ] || { echo "no $ENCODER: run bench/gpu_prepare.sh here first and carry .device"; exit 2; }
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi";
  "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")'; } | tee "$OUT/device.txt"
step gpu-tests 150 "$PY" -m pytest -q -p no:cacheprovider -p no:django -o addopts= -m gpu tests/learner/test_full.py tests/learner/test_adapt.py tests/learner/test_device.py
step full-goemotions 240 "$PY" -m learner.benchmark --tier full --train "$GE_TRAIN" --dev "$GE_DEV" --test "$GE_TEST" \
  --encoder "$ENCODER" --config "{\"device\": \"$DEVICE\", \"encoder\": \"$ENCODER\", $FULL}" --no-baseline --no-progress --out "$OUT/full-goemotions.json"
step full-tibkat 180 "$PY" -m learner.benchmark --tier full --train "$TK_TRAIN" --test "$TK_DEV" \
  --encoder "$ENCODER" --config "{\"device\": \"$DEVICE\", \"encoder\": \"$ENCODER\", \"head\": \"auto\", $FULL}" --no-baseline --no-progress --out "$OUT/full-tibkat.json"
step throughput 60 "$PY" bench/bench_throughput.py --device "$DEVICE" --encoder "$ENCODER" "${THROUGHPUT[@]}" --out "$OUT/throughput.json"
"$PY" bench/gpu_summary.py "$OUT" | tee "$OUT/summary.md"
exit $status
