#!/usr/bin/env bash
# Stages 8 and 9 of the `small` Defusion (tried, not shipped; record in defusion/weights/defusion-small/logs/
# history.md): two 2-core CPU fine-tunes of the shipped stage 7 for very dark photos.
# Stage 8 (85 min cap, 4,000 planned steps, lr 5e-5): stage 7's recipe with low light weighted 8 and drawn only from
#   severity 0.4-1 (exposure down to 0.12, gamma up to 2.2, LOL-like darkness).
# Stage 9 (52 min cap, 2,200 planned steps, lr 3e-5): from stage 8, low light back on its whole range 0.1-1 (stage 8
#   over-brightened slightly dark photos) at weight 6, and underwater at weight 4 (stage 8 lost underwater colour).
# Both keep stage 7's other weights (noise 30, jpeg 12 at quality 46-10, rain/haze 2, others 1), 25 % non-matching
# instructions, EMA, 96 px, batch 12, BSD400 minus its last 8 + Train400_gray. No test set.
# Resumable: rerun the same command (each stage resumes from its latest checkpoint, every 250 steps).
# Usage: bash train/configs/defusion_small_stage8_9_cpu.sh STAGE7_PIPELINE OUTPUT_DIR [DATA_ROOT] [extra flags]
set -euo pipefail
START=$1; OUT=$2; DATA=${3:-../shared/data}; shift $(( $# > 2 ? 3 : 2 ))
HERE=$(dirname "$0")
if [ ! -f "$OUT/stage8/pipeline/model_index.json" ]; then
  STAGE7_MINUTES=${STAGE8_MINUTES:-85} bash "$HERE/defusion_small_stage7_cpu.sh" "$START" "$OUT/stage8" "$DATA" \
    --kind_weights noise=30,jpeg=12,rain=2,haze=2,low_light=8 --severity jpeg=0.6:1,low_light=0.4:1 \
    --learning_rate 5e-5 --max_train_steps 4000 "$@"
fi
STAGE7_MINUTES=${STAGE9_MINUTES:-52} bash "$HERE/defusion_small_stage7_cpu.sh" "$OUT/stage8/pipeline" "$OUT/stage9" "$DATA" \
  --kind_weights noise=30,jpeg=12,rain=2,haze=2,low_light=6,underwater=4 --severity jpeg=0.6:1 \
  --learning_rate 3e-5 --min_learning_rate 3e-6 --max_train_steps 2200 "$@"
