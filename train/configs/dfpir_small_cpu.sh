#!/usr/bin/env bash
# `small` DFPIR (6.0 M parameters) on a 2-core CPU (no device), the comparison model shipped as
# defusion/weights/dfpir-small. Data: BSD400 (last 8 held out for validation) + Train400_gray, 64 px crops,
# degraded on the fly with the five evaluated tasks (noise sigma 5-50 x3, as in the all-in-one papers' balancing;
# rain, haze, low light, JPEG x1). Never a test set. Prompt codes: the offline fallback encoder (no CLIP here).
# Optimiser: Adam with cosine decay (DFPIR's), but lr 3e-4 instead of 1e-4 because the budget is ~3,000 steps,
# not DFPIR's 120 epochs. A step (batch 8) takes ~1.7 s on 2 cores.
# Resumable: rerun the same command; it resumes from the latest checkpoint (every 250 steps) and stops at
# DFPIR_MINUTES of wall time or 3,000 steps with its pipeline in OUT/pipeline.
# Usage: bash train/configs/dfpir_small_cpu.sh OUTPUT_DIR [DATA_ROOT]
# Export (fp16, with the degradation identifier of defusion-small for degradation="auto"):
#   python train/export_pipeline.py --pipeline OUT/pipeline --identifier defusion/weights/defusion-small/identifier \
#     --out defusion/weights/dfpir-small --check_images ../shared/data/CBSD68/gt
set -euo pipefail
OUT=$1; DATA=${2:-../shared/data}
python train/train_restorer.py --model dfpir --preset small --output_dir "$OUT" \
  --clean_dirs "$DATA/BSD400/gt" "$DATA/Train400_gray/gt" --val_holdout 8 \
  --kinds noise,rain,haze,low_light,jpeg --kind_repeats 3,1,1,1,1 --resolution 64 --train_batch_size 8 \
  --learning_rate 3e-4 --max_train_steps 3000 --max_train_minutes "${DFPIR_MINUTES:-90}" \
  --checkpointing_steps 250 --checkpoints_total_limit 2 --dataloader_num_workers 1 --cpu \
  --resume_from_checkpoint latest
