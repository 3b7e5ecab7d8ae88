#!/usr/bin/env bash
# Prepares what bench/gpu_check.sh needs on a bare GPU machine that cannot download anything, in .device/ (git-ignored,
# under the device tool's 64 MiB carry limit): the bundled MiniLM encoder with its weights stored in fp16 (the learner
# loads them as fp32), GoEmotions, and a seeded tibkat-gnd subsample. Run it here, once, from the repository root:
#
#     bash bench/gpu_prepare.sh            # then: run(command="bash bench/gpu_check.sh", carry=[".device"])
#
# Sizes: TIBKAT_TRAIN (default 10000) and TIBKAT_DEV (2000) documents.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=${ALABEL_SHARED_DATASETS:-../shared/datasets}
OUT=.device
rm -rf "$OUT" && mkdir -p "$OUT/data/goemotions" "$OUT/data/tibkat"
cp "$DATA"/goemotions/{train,dev,test}.jsonl.gz "$OUT/data/goemotions/"
"$PY" - "$DATA" "$OUT" "${TIBKAT_TRAIN:-10000}" "${TIBKAT_DEV:-2000}" <<'PYEOF'
import gzip, random, shutil, sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from learner.encoder import bundled_model_path

data, out, n_train, n_dev = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
source = Path(bundled_model_path())
target = out / "encoder"
shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors", "*.bin", "onnx", "openvino", "README.md"))
weights = load_file(str(source / "model.safetensors"))
save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, str(target / "model.safetensors"), metadata={"format": "pt"})
for split, n in (("train", n_train), ("dev", n_dev)):
    with gzip.open(data / "tibkat-gnd" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as handle:
        lines = handle.readlines()
    random.Random(0).shuffle(lines)
    with gzip.open(out / "data" / "tibkat" / f"{split}.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(lines[:n])
PYEOF
du -sh "$OUT"
