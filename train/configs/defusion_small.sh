#!/usr/bin/env bash
# The shipped `small` Defusion: one H100, bf16, a 7.5-minute budget.
# Data: BSD400 (the last 8 images held out for validation) + Train400_gray, 176 px crops, every registry kind
# (noise sigma 5-50, poisson, blur, motion blur, defocus, resize, haze, rain, raindrop, snow, low light, JPEG,
# underwater) at severity 0.1-1, single (60 %) or ordered mixtures of up to 3 kinds. Never a test set.
# Usage: bash train/configs/defusion_small.sh TOKENIZER_DIR OUTPUT_DIR DATA_ROOT
set -euo pipefail
TOK=$1; OUT=$2; DATA=${3:-../shared/data}
python train/train_defusion.py --preset small --tokenizer "$TOK" --output_dir "$OUT" \
  --clean_dirs "$DATA/BSD400/gt" "$DATA/Train400_gray/gt" --val_holdout 8 \
  --kinds blur,defocus,haze,jpeg,low_light,motion_blur,noise,poisson,rain,raindrop,resize,snow,underwater \
  --max_mix 3 --p_single 0.6 --resolution 176 --ground_cache 2048 \
  --prediction_type sample --timestep_sampling inference --train_batch_size 32 \
  --learning_rate 2e-4 --min_learning_rate 1e-6 --max_train_steps 6000 --max_train_minutes 7.5 \
  --mixed_precision bf16 --allow_tf32 --dataloader_num_workers 8 \
  --checkpointing_steps 2000 --checkpoints_total_limit 1 --validation_steps 0 --report_to none
