#!/bin/sh
# GPU runs for bench/RESULTS.md, on the lent H100 after the MLX CUDA wheel is unpacked into
# /root/mlxsite. Carried (git-ignored): .carry/mw (mlx_whisper package), .carry/base (base config
# and tokenizer, no weights), .carry/cache (converted Silero and pyannote folders).
export PYTHONPATH=/root/mlxsite:$PWD PYTHONUNBUFFERED=1 MLXWX_CACHE=$PWD/.carry/cache
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import mlx.core as mx; print("mlx", mx.__version__, mx.default_device())'
timeout 100 python3 bench/bench_lstm_kernel.py --repeats 10 --half 2>&1 | tee $OUT/lstm_kernel.txt
timeout 120 python3 bench/bench_vad.py --device gpu --minutes 60 \
  --methods "mlxwx energy,mlxwx silero,mlxwx pyannote" 2>&1 | tee $OUT/vad_gpu.txt
timeout 330 python3 bench/gpu.py --base .carry/base --mlx-whisper-path .carry/mw \
  --budget-s 300 --out $OUT/gpu.md 2>&1 | tee $OUT/gpu.log
