#!/usr/bin/env bash
# Perceive-IR stage 1 end to end on CPU (2 cores, about 45 min): quality triplets from the first 120 BSD400
# images (noise / rain / haze; 2-fold Restormer-small medium models, 150 steps each), then the quality prompts on
# the fallback CLIP for 8 minutes. Held-out: the last 20 triplets of each task. Training pools only.
# Usage: bash train/configs/quality_stage1_cpu.sh OUT_DIR [DATA_ROOT]
set -euo pipefail
OUT=$1; DATA=${2:-../shared/data}
python train/make_quality_triplets.py --clean_dirs "$DATA/BSD400/gt" --max_images 120 \
  --kinds noise,rain,haze --repeats 3,1,1 --out "$OUT/triplets" --model restormer --preset small \
  --steps 150 --resolution 96 --batch 4 --cpu
python train/train_quality_prompts.py --triplets "$OUT/triplets" --output_dir "$OUT/prompts" --train_batch_size 8 \
  --max_train_steps 400 --max_train_minutes 8 --val_holdout 20 --checkpointing_steps 100 --cpu \
  --resume_from_checkpoint latest
