#!/usr/bin/env bash
# Stage 7 of the shipped `small` Defusion: a 2-core CPU fine-tune of stage 6 (the previously shipped folder), weighted
# more heavily towards noise (sigma 5-50, the full range) than stage 6, because sigma 25 was still 0.5-0.8 dB short of
# the +8 dB target. JPEG keeps a large weight so that its small gain over the input is not lost.
# Stage 5's recipe with these changes (later flags win): noise 30, jpeg 12, rain/haze/low light 2, others 1;
# lr 8e-5 cosine to 5e-6; 4,200 steps or STAGE7_MINUTES. Everything else as stage 5 (all 13 kinds, 25 % non-matching
# instructions, EMA, 96 px, batch 12, BSD400 minus 8 + Train400_gray; no test set).
# Resumable: rerun the same command (it resumes from the latest checkpoint, every 250 steps) until STAGE7_MINUTES.
# Usage: bash train/configs/defusion_small_stage7_cpu.sh STAGE6_PIPELINE OUTPUT_DIR [DATA_ROOT] [extra flags]
set -euo pipefail
START=$1; OUT=$2; DATA=${3:-../shared/data}; shift $(( $# > 2 ? 3 : 2 ))
bash "$(dirname "$0")/defusion_small_stage5_cpu.sh" "$START" "$OUT" "$DATA" \
  --kind_weights noise=30,jpeg=12,rain=2,haze=2,low_light=2 --learning_rate 8e-5 --min_learning_rate 5e-6 \
  --max_train_steps 4200 --max_train_minutes "${STAGE7_MINUTES:-100}" "$@"
