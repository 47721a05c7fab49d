#!/usr/bin/env bash
# `small` Defusion on a 2-core CPU (no device): fresh U-Net/bridge/adapter, the preview's small tokenizer (frozen).
# Data: BSD400 (last 8 held out for validation) + Train400_gray, 64 px crops, every registry kind at severity
# 0.1-1, weighted towards the evaluated tasks (noise 5, jpeg 3, rain/haze/low_light 2, others 1), single (75 %)
# or ordered pairs. 10 % of samples show a non-matching instruction with the input itself as target, so a wrong
# instruction leaves the image alone. Instructions come from a bank of 1,536 pre-tokenized specs (tokenizing
# per sample costs more than the training step on a CPU). Never a test set.
# Resumable: rerun the same command with --resume_from_checkpoint latest (checkpoints every 500 steps).
# Usage: bash train/configs/defusion_small_cpu.sh OUTPUT_DIR [DATA_ROOT] [extra flags]
# The run of 2026-11-22 (2 cores; not shipped, it does not beat the preview overall): steps 1-2000 with these flags and
# --max_train_minutes 100 (stopped by hand at step 2090), then resumed from checkpoint-2000 with
# --resume_from_checkpoint latest --p_first_step 0.5 --max_train_minutes 57: the first (pure-noise) DDIM step
# carries the whole LQ-to-degradation mapping, and at a uniform 1/4 share noise was not learned by step 2000.
set -euo pipefail
OUT=$1; DATA=${2:-../shared/data}; shift $(( $# > 1 ? 2 : 1 ))
python train/train_defusion.py --preset small --tokenizer defusion/weights/defusion-small-preview/tokenizer \
  --output_dir "$OUT" --clean_dirs "$DATA/BSD400/gt" "$DATA/Train400_gray/gt" --val_holdout 8 \
  --kinds blur,defocus,haze,jpeg,low_light,motion_blur,noise,poisson,rain,raindrop,resize,snow,underwater \
  --kind_weights noise=5,jpeg=3,rain=2,haze=2,low_light=2 --max_mix 2 --p_single 0.75 \
  --instruction_bank 1536 --ground_cache 256 --p_mismatch 0.1 --resolution 64 \
  --prediction_type sample --timestep_sampling inference --train_batch_size 16 \
  --learning_rate 1e-3 --lr_warmup_steps 200 --min_learning_rate 2e-5 --max_train_steps 7000 \
  --dataloader_num_workers 1 --checkpointing_steps 500 --checkpoints_total_limit 2 --validation_steps 1000 \
  --report_to none --cpu "$@"
