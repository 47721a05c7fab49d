#!/usr/bin/env bash
# `small` Defusion on a 2-core CPU (no device), in three stages, with the small tokenizer (trained on an H100 for the
# 2026-11-22 preview; the same weights ship in defusion/weights/defusion-small/tokenizer) frozen.
# Data: BSD400 (last 8 held out for validation) + Train400_gray, 64 px crops, degraded on the fly. Never a test set.
#
# Stage 1 (noise only, first DDIM step only): the pure-noise first step carries the whole LQ -> degradation
#   mapping through the bridge, and in mixed training the large photometric residuals (haze, low light) swamp the
#   small noise residual in the MSE: the single-stage run of 2026-11-22 (6,562 mixed steps) gained 0.0 dB on
#   sigma 25. Trained alone, the same model learns it (benchmarks/noise_probe.py: +5.3 dB held out in 300 steps;
#   a bridge with 3 residual blocks per level and 64 channels at level 0 learns faster: +5.9 dB at 250 steps vs +4.3).
# Stage 2 (all 13 kinds, from stage 1): weighted towards the evaluated tasks (noise 5, jpeg 3, rain/haze/low_light
#   2, others 1), single (75 %) or ordered pairs; 15 % of samples show a non-matching instruction with the input
#   itself as target, so a wrong instruction leaves the image alone; half the samples at the first DDIM step.
#   Instructions come from a bank of pre-tokenized specs (tokenizing per sample costs more than a step on a CPU).
# Stage 3 (all 13 kinds, from stage 2, EMA): noise 8, jpeg 4; JPEG at severity 0.6-1 (quality 46-10: the default
#   0.1-1 draws quality 10-91, mostly mild, and stage 2 gained nothing at q10); 25 % non-matching instructions
#   (stage 2's 15 % still let a haze instruction dehaze rainy and JPEG images); lr 3e-4 cosine to 1e-5.
#
# Resumable: rerun the same command; stages 1 and 2 are skipped once their pipeline exists, and a rerun of stage 3
# resumes from its latest checkpoint towards its 6,500 steps. Stages 2 and 3 stop at a wall-time budget
# (STAGE2_MINUTES, STAGE3_MINUTES) with a checkpoint and their pipeline; extra flags go to stage 3.
# Usage: bash train/configs/defusion_small_cpu.sh OUTPUT_DIR [DATA_ROOT] [extra stage-3 flags]
# What ships as defusion/weights/defusion-small (2 cores): stage 1 1,500 steps (20 min) and stage 2 4,447 of 4,800
# steps (70 min, ~7 min of it slowed by an evaluation beside it) on 2026-11-23; stage 3 on 2026-11-23 (a later
# session, whose machine no longer had the stage-2 run folder) started from the stage-2 weights as shipped in fp16
# (--pretrained_pipeline <that folder> instead of OUT/stage2/pipeline: the same weights to fp16 rounding), with a
# fresh bank of 1,024 specs. Export:
#   python train/export_pipeline.py --pipeline OUT/stage3/pipeline --identifier <identifier folder> --out DIR
set -euo pipefail
OUT=$1; DATA=${2:-../shared/data}; shift $(( $# > 1 ? 2 : 1 ))
COMMON=(--clean_dirs "$DATA/BSD400/gt" "$DATA/Train400_gray/gt" --val_holdout 8 --resolution 64
        --prediction_type sample --timestep_sampling inference --train_batch_size 16
        --dataloader_num_workers 1 --checkpointing_steps 500 --checkpoints_total_limit 2 --report_to none --cpu)
KINDS=blur,defocus,haze,jpeg,low_light,motion_blur,noise,poisson,rain,raindrop,resize,snow,underwater

if [ ! -f "$OUT/stage1/pipeline/model_index.json" ]; then
  python train/train_defusion.py --preset small --tokenizer defusion/weights/defusion-small/tokenizer \
    --output_dir "$OUT/stage1" "${COMMON[@]}" --kinds noise --bridge_blocks 3 --bridge_width0 64 \
    --instruction_bank 256 --ground_cache 64 --p_first_step 1.0 \
    --learning_rate 1e-3 --lr_warmup_steps 100 --min_learning_rate 1e-4 --max_train_steps 1500 \
    --validation_steps 500 --resume_from_checkpoint latest
fi

if [ ! -f "$OUT/stage2/pipeline/model_index.json" ]; then
  python train/train_defusion.py --pretrained_pipeline "$OUT/stage1/pipeline" --output_dir "$OUT/stage2" "${COMMON[@]}" \
    --kinds "$KINDS" --kind_weights noise=5,jpeg=3,rain=2,haze=2,low_light=2 --max_mix 2 --p_single 0.75 \
    --instruction_bank 1536 --ground_cache 256 --p_mismatch 0.15 --p_first_step 0.5 \
    --learning_rate 5e-4 --lr_warmup_steps 100 --min_learning_rate 2e-5 --max_train_steps 4800 \
    --max_train_minutes "${STAGE2_MINUTES:-70}" --validation_steps 1000 --resume_from_checkpoint latest
fi

python train/train_defusion.py --pretrained_pipeline "$OUT/stage2/pipeline" --output_dir "$OUT/stage3" "${COMMON[@]}" \
  --kinds "$KINDS" --kind_weights noise=8,jpeg=4,rain=2,haze=2,low_light=2 --severity jpeg=0.6:1 \
  --max_mix 2 --p_single 0.75 --instruction_bank 1024 --ground_cache 256 --p_mismatch 0.25 --p_first_step 0.5 \
  --use_ema --learning_rate 3e-4 --lr_warmup_steps 50 --min_learning_rate 1e-5 --max_train_steps 6500 \
  --max_train_minutes "${STAGE3_MINUTES:-100}" --validation_steps 1000 --resume_from_checkpoint latest "$@"
