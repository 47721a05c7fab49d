#!/usr/bin/env bash
# What ran on the lent H100 (one call): the shipped Defusion, the space ablation and the identifier,
# concurrently (the GPU is far from full; the CPU data workers are split 8 / 4 / 3).
# Usage: bash train/configs/device_run.sh TOKENIZER_DIR DATA_ROOT RESULTS_DIR
set -uo pipefail
TOK=$1; DATA=$2; RES=$3
mkdir -p "$RES"
bash train/configs/defusion_small.sh "$TOK" "$RES/defusion-small" "$DATA" > "$RES/defusion.log" 2>&1 &
python benchmarks/defusion_ablation.py --tokenizer "$TOK" --clean_dir "$DATA/BSD400/gt" --minutes 3.2 \
  --out "$RES/ablation" -- --resolution 176 --train_batch_size 32 --learning_rate 2e-4 --prediction_type sample \
  --timestep_sampling inference --mixed_precision bf16 --allow_tf32 --dataloader_num_workers 4 --ground_cache 2048 \
  --val_holdout 8 > "$RES/ablation.log" 2>&1 &
bash train/configs/identifier_small.sh "$RES/identifier" "$DATA" > "$RES/identifier.log" 2>&1 &
wait
