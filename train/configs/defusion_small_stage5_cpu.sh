#!/usr/bin/env bash
# Stage 5 of the shipped `small` Defusion: a 2-core CPU fine-tune of stage 4 (defusion_small_gpu.sh, which the device
# cut off at step 3,267 of 4,749, lr still 8e-5), weighted towards JPEG: stage 4 still did nothing at quality 10-30,
# even on training images. All 13 kinds, jpeg 10 (quality 46-10), noise 8, rain/haze/low light 2, others 1; 25 %
# non-matching instructions; EMA; lr 1e-4 cosine to 1e-5; 96 px crops, batch 12.
# Data: BSD400 (last 8 held out for validation) + Train400_gray. Never a test set.
# Resumable: rerun the same command (it resumes from the latest checkpoint, every 250 steps) until STAGE5_MINUTES.
# Usage: bash train/configs/defusion_small_stage5_cpu.sh STAGE4_PIPELINE OUTPUT_DIR [DATA_ROOT] [extra flags]
set -euo pipefail
START=$1; OUT=$2; DATA=${3:-../shared/data}; shift $(( $# > 2 ? 3 : 2 ))
python train/train_defusion.py --pretrained_pipeline "$START" --output_dir "$OUT" \
  --clean_dirs "$DATA/BSD400/gt" "$DATA/Train400_gray/gt" --val_holdout 8 --resolution 96 --train_batch_size 12 \
  --prediction_type sample --timestep_sampling inference \
  --kinds blur,defocus,haze,jpeg,low_light,motion_blur,noise,poisson,rain,raindrop,resize,snow,underwater \
  --kind_weights jpeg=10,noise=8,rain=2,haze=2,low_light=2 --severity jpeg=0.6:1 --max_mix 2 --p_single 0.75 \
  --instruction_bank 1024 --ground_cache 256 --p_mismatch 0.25 --p_first_step 0.5 \
  --use_ema --learning_rate 1e-4 --lr_warmup_steps 50 --min_learning_rate 1e-5 --max_train_steps 3000 \
  --max_train_minutes "${STAGE5_MINUTES:-65}" --dataloader_num_workers 1 --checkpointing_steps 250 \
  --checkpoints_total_limit 2 --validation_steps 1000 --report_to none --cpu --resume_from_checkpoint latest "$@"
