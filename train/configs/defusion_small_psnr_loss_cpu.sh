#!/usr/bin/env bash
# A 2-core CPU fine-tune of the shipped `small` Defusion (stage 7) with the PSNR loss (mean per-sample log MSE)
# instead of the batch MSE: under MSE the heavy degradations (sigma 40-50 noise, dark images) set the gradient and
# sigma 25 or JPEG q10 get little of it. Stage 7's recipe otherwise (all 13 kinds, noise 30, jpeg 12, rain/haze/low
# light 2, others 1; 25 % non-matching instructions; EMA; 96 px; batch 12; BSD400 minus 8 + Train400_gray; no test
# set), lr 5e-5 cosine to 3e-6 over 3,000 steps or PSNR_LOSS_MINUTES.
# Resumable: rerun the same command (it resumes from the latest checkpoint, every 250 steps).
# Usage: bash train/configs/defusion_small_psnr_loss_cpu.sh START_PIPELINE OUTPUT_DIR [DATA_ROOT] [extra flags]
set -euo pipefail
START=$1; OUT=$2; DATA=${3:-../shared/data}; shift $(( $# > 2 ? 3 : 2 ))
STAGE7_MINUTES="${PSNR_LOSS_MINUTES:-75}" bash "$(dirname "$0")/defusion_small_stage7_cpu.sh" "$START" "$OUT" "$DATA" \
  --loss psnr --loss_eps 1e-3 --learning_rate 5e-5 --min_learning_rate 3e-6 --max_train_steps 3000 "$@"
