#!/usr/bin/env bash
# Stage 4 of the shipped `small` Defusion: one H100, bf16, from the stage-3 pipeline (defusion_small_cpu.sh; as
# shipped in fp16 at commit 35142f9: `git worktree add /tmp/s3 35142f9`, then /tmp/s3/defusion/weights/defusion-small),
# the tokenizer frozen.
# Stage 3's mixture (all 13 kinds; noise 8, jpeg 4 at quality 46-10, rain/haze/low light 2, others 1; single 75 %
# or ordered pairs; 25 % non-matching instructions with the input as target; half the samples at the first DDIM step;
# EMA) on 128 px crops (4x stage 3's pixels) at batch 32, for as many steps as the budget allows.
# Data: the BSD400 images in CLEAN_DIR (the last 8 held out for validation), 150 draws of each per epoch (few
# epochs: DataLoader workers restart every epoch). Never a test set.
# Resumable: rerun the same command; it resumes from the latest checkpoint and stops at STAGE4_MINUTES (default 20)
# with a checkpoint and its pipeline (EMA weights) in OUT/pipeline. Extra flags are passed on.
# Usage: bash train/configs/defusion_small_gpu.sh STAGE3_PIPELINE OUTPUT_DIR [CLEAN_DIR] [extra flags]
# What ran (2026-11-23, one H100 lease of 30 device-minutes): 212 BSD400 images (the first 212 + the last 8, the
# working tree that travels to the device is capped at 64 MiB and the shipped weights take 45), STAGE4_STEPS=4749
# (a 48 s probe's rate x 20 min). Throughput was only 4.2-4.8 it/s: the GPU was ~15 % busy, the training process at
# 100 % of one CPU core and the data workers mostly idle, so the step is bound by its host side (kernel launches of a
# small model at batch 32); next time profile a few steps first and try a larger batch or torch.compile. A re-sync of
# the working tree during a later device call removed the data folder under the running job at step 2,235; it was
# resumed from checkpoint-2000 for 4.8 minutes and stopped at step 3,267 (lr still 8e-5), EMA weights exported.
set -euo pipefail
START=$1; OUT=$2; CLEAN=${3:-../shared/data/BSD400/gt}; shift $(( $# > 2 ? 3 : 2 ))
python train/train_defusion.py --pretrained_pipeline "$START" --output_dir "$OUT" \
  --clean_dirs "$CLEAN" --repeats 150 --val_holdout 8 --resolution 128 --train_batch_size 32 \
  --prediction_type sample --timestep_sampling inference \
  --kinds blur,defocus,haze,jpeg,low_light,motion_blur,noise,poisson,rain,raindrop,resize,snow,underwater \
  --kind_weights noise=8,jpeg=4,rain=2,haze=2,low_light=2 --severity jpeg=0.6:1 --max_mix 2 --p_single 0.75 \
  --instruction_bank 1024 --ground_cache 256 --p_mismatch 0.25 --p_first_step 0.5 \
  --use_ema --learning_rate 3e-4 --lr_warmup_steps 200 --min_learning_rate 1e-5 --max_train_steps "${STAGE4_STEPS:-20000}" \
  --max_train_minutes "${STAGE4_MINUTES:-20}" --mixed_precision bf16 --allow_tf32 \
  --dataloader_num_workers "${WORKERS:-14}" --checkpointing_steps 2000 --checkpoints_total_limit 1 \
  --validation_steps 4000 --report_to none --resume_from_checkpoint latest "$@"
