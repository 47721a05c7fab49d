#!/usr/bin/env bash
# Stage 15 of the `small` Defusion: stage 7's recipe continued from the shipped stage 7 in bfloat16 autocast (float32
# weights; 1.4x faster per step on a CPU with AMX): the same mixture (noise 30, jpeg 12, rain/haze/low light 2, others
# 1; 25 % two-kind mixtures; 25 % non-matching instructions), the same MSE loss, EMA, 96 px crops, batch 12, BSD400
# minus its last 8 + Train400_gray (no test set); a lower lr, 3e-5 cosine to 3e-6 over 7,000 steps or
# STAGE15_MINUTES (95).
# Resumable: rerun the same command (it resumes from the latest checkpoint, every 250 steps).
# Usage: bash train/configs/defusion_small_stage15_cpu.sh STAGE7_PIPELINE OUTPUT_DIR [DATA_ROOT] [extra flags]
set -euo pipefail
START=$1; OUT=$2; DATA=${3:-../shared/data}; shift $(( $# > 2 ? 3 : 2 ))
STAGE7_MINUTES="${STAGE15_MINUTES:-95}" bash "$(dirname "$0")/defusion_small_stage7_cpu.sh" "$START" "$OUT" "$DATA" \
  --learning_rate 3e-5 --min_learning_rate 3e-6 --max_train_steps 7000 --mixed_precision bf16 "$@"
