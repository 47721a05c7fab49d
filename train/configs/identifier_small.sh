#!/usr/bin/env bash
# The shipped degradation identifier (blind mode): one H100, a 5-minute budget, BSD400 (last 20 held out)
# + Train400_gray, 128 px native-resolution crops, 0-3 kinds at severity 0.1-1.
# Usage: bash train/configs/identifier_small.sh OUTPUT_DIR DATA_ROOT
set -euo pipefail
OUT=$1; DATA=${2:-../shared/data}
python train/train_identifier.py --preset small --output_dir "$OUT" \
  --clean_dirs "$DATA/BSD400/gt" "$DATA/Train400_gray/gt" --val_holdout 20 \
  --train_batch_size 64 --learning_rate 1e-3 --max_train_steps 20000 --max_train_minutes 5 \
  --mixed_precision bf16 --dataloader_num_workers 3 --checkpointing_steps 5000
