#!/bin/sh
# GPU runs for bench/RESULTS.md on the lent H100 (no internet; at most 64 MiB carried per call,
# so files travel in git-ignored .carry/upN folders over consecutive calls, the machine staying
# warm between them):
#   sh bench/h100.sh unpack    join and unpack bench/pack_gpu.sh's parts (copied to /root/stage
#                              by the calls before): the files `setup` reads
#   sh bench/h100.sh stage N   copy .carry/upN (this call's carry; a name: .carry/NAME) into
#                              /root/stage
#   sh bench/h100.sh setup     unpack the MLX CUDA wheel (mlx-cuda.part.*), join the real base
#                              weights (weights.safetensors.part*), install carried wheels
#   sh bench/h100.sh a1        CPU/GPU parity (bench/gpu_parity.py), beam 5 and greedy
#   sh bench/h100.sh a2        `mlxwx run` on GPU and CPU, the library end to end (bench/gpu_e2e.py),
#                              compiled vs eager decoder step (bench/bench_steps.py), VAD
#                              throughput on an hour
#   sh bench/h100.sh pyannote  pyannote.audio's torch model on an hour, CUDA and the host CPU
#   sh bench/h100.sh b         bench/gpu.py: mlxwx vs mlx-whisper vs transformers
#   sh bench/h100.sh timing    issue 14: the kernel tests on the GPU, then bench/gpu_e2e.py on the
#                              10-minute corpus input (/root/stage/corpus10.npz, made by
#                              --save-input here) with and without token timing, for this
#                              checkout and for .carry/old (an older mlxwx, `git archive`d);
#                              word times against the CPU's (.carry/cpu_words.json, made here by
#                              bench/gpu_align_check.py --write)
#   sh bench/h100.sh e2e2h     issue 18: bench/gpu_e2e.py on 2 hours in 40 files (from corpus10.npz)
#   sh bench/h100.sh kv8       issue 18: bench/gpu.py, mlxwx against mlxwx-unfused and mlxwx-kv8
#                              on random weights (carried: .carry/up1, then .carry/up2 with this)
#   sh bench/h100.sh quant [SHAPES [BUDGET_S]]  issue 18: bench/gpu.py, mlxwx against its weights
#                              quantized to 8 and 4 bits as mlx-community's folders are (random
#                              weights; carried as for kv8)
#   sh bench/h100.sh w2v       issue 14: the batched feature encoder's frames against each input
#                              alone on cuda, then bench/gpu_e2e.py on the 10-minute corpus
#                              input with the wav2vec2 aligner (random base-sized weights) at
#                              its default batch size and at 8 and 16, against no alignment (after
#                              `stage w1` .. `stage w4` and `setup`: the MLX CUDA wheel, base's
#                              weights as weights.xz.part*, corpus10.npz, stubs/ with an empty av
#                              and a jiwer.wer)
#   sh bench/h100.sh ray       issue 17: bench/bench_ray.py, one GPU actor and CPU tasks against
#                              `mlxwx run` (Ray, pyarrow, pandas, av and their needs carried as
#                              rw.part.* in .carry/up5..up8: a tar of wheels)
#   sh bench/h100.sh ctc       issue 14: the CTC path kernel on the GPU against numpy (its test,
#                              then bench/gpu_ctc.py), after `stage 1` (.carry/up1:
#                              mlx-cuda.part.aa); this call carries .carry/up2 (mlx-cuda.part.ab,
#                              the mlx wheel) and .carry/wheels (pytest's wheels)
#   sh bench/h100.sh ctce2e    issue 14: bench/gpu_ctc.py --profile, then bench/gpu_e2e.py on the
#                              10-minute corpus input with the wav2vec2 aligner, its CTC paths
#                              by numpy and by the GPU kernel (-kp), in batches of up to 256
#                              segments / 600 s (-ab256-as600), against no alignment (after
#                              `stage b1` .. `stage b3`, bench/pack_gpu.sh's parts; carries b4)
#   sh bench/h100.sh hard      issue 19: the hard input (/root/stage/hard10.npz, made here by
#                              `python bench/gpu_e2e.py --input hard --minutes 10 --save-input`),
#                              greedy and beam 5 with and without the fallback ladder
# Also carried: .carry/mw (mlx_whisper package), .carry/cache (converted Silero and pyannote
# folders), .carry/librivox (Debian's LibriVox clips).
set -u
export PYTHONPATH=/root/mlxsite:/tmp/site:/tmp/stubs:$PWD PYTHONUNBUFFERED=1
export MLXWX_CACHE=$PWD/.carry/cache HF_HUB_OFFLINE=1
BASE=/root/base
random_weights_setup() {  # mlx-cuda (stage 1's part and this call's), the base config, no av
  mkdir -p /root/mlxsite $BASE && cp .carry/up2/mlx-cuda.part.* /root/stage/
  cat /root/stage/mlx-cuda.part.* | xz -d | tar -x -C /root/mlxsite
  python3 -m zipfile -e /root/stage/mlx-0.32.4-*.whl /root/mlxsite
  cp .carry/up2/config.json .carry/up2/mlxwx.json .carry/up2/tokenizer.json $BASE/
  export PYTHONPATH=$PYTHONPATH:$PWD/.carry/up2/stubs  # an empty av
}
mlx_whisper_stub() {  # bench_engine imports bench_steps, which imports mlx_whisper (not used
  python3 -c 'import mlx_whisper' 2>/dev/null || { mkdir -p /tmp/stubs/mlx_whisper &&  # here)
    touch /tmp/stubs/mlx_whisper/__init__.py /tmp/stubs/mlx_whisper/decoding.py \
      /tmp/stubs/mlx_whisper/whisper.py &&
    echo 'load_model = None' > /tmp/stubs/mlx_whisper/load_models.py; }
}
case "$1" in
unpack)  # the tar that bench/pack_gpu.sh split into .carry/b1..b4, its parts in /root/stage
  cat /root/stage/stage.tar.p* | tar -x -C /root/stage && rm /root/stage/stage.tar.p* &&
    ls /root/stage | wc -l ;;
stage)
  case "$2" in [0-9]*) from=".carry/up$2" ;; *) from=".carry/$2" ;; esac
  mkdir -p /root/stage && cp -r "$from/." /root/stage/ && ls /root/stage | wc -l ;;
setup)
  mkdir -p /root/mlxsite $BASE /tmp/site /tmp/stubs
  cat /root/stage/mlx-cuda.part.* | xz -d | tar -x -C /root/mlxsite
  python3 -m zipfile -e /root/stage/mlx-0.32.4-*.whl /root/mlxsite
  if ls /root/stage/weights.xz.part* >/dev/null 2>&1; then  # xz: fp16 base fits four calls
    cat /root/stage/weights.xz.part* | xz -d > $BASE/weights.safetensors
  else
    cat /root/stage/weights.safetensors.part* > $BASE/weights.safetensors
  fi
  [ -d /root/stage/cache ] && mkdir -p .carry/cache && cp -r /root/stage/cache/. .carry/cache/
  cp /root/stage/config.json /root/stage/mlxwx.json /root/stage/tokenizer.json $BASE/
  for w in /root/stage/*.whl; do
    case "$w" in *mlx-0.32*) ;; *) pip install -q --no-deps --target /tmp/site "$w" ;; esac
  done
  # mlx_whisper's package imports numba and scipy for word timings, which no bench here uses.
  python3 -c 'import numba' 2>/dev/null || { mkdir -p /tmp/stubs/numba &&
    echo 'jit = lambda *a, **k: (lambda f: f)' > /tmp/stubs/numba/__init__.py; }
  python3 -c 'import scipy.signal' 2>/dev/null || { mkdir -p /tmp/stubs/scipy &&
    touch /tmp/stubs/scipy/__init__.py /tmp/stubs/scipy/signal.py; }
  mkdir -p /usr/share/pocketsphinx/test/data/librivox
  cp .carry/librivox/* /usr/share/pocketsphinx/test/data/librivox/
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import mlx.core as mx; print("mlx", mx.__version__, mx.default_device())' ;;
a1)
  timeout 300 python3 bench/gpu_parity.py $BASE --beam-size 5 2>&1 | tee $OUT/parity-beam5.txt
  timeout 250 python3 bench/gpu_parity.py $BASE --beam-size 1 2>&1 | tee $OUT/parity-greedy.txt ;;
a2)
  clips="tests/data/jfk.flac tests/data/synthconv.wav tests/data/sample.wav"
  for d in gpu cpu; do
    /usr/bin/time -f "mlxwx run --device $d: %e s wall, %M KB max RSS" python3 -m mlxwx run \
      $clips --model $BASE --device $d -o /tmp/run-$d -f txt -q 2>&1 | tee $OUT/run-$d.txt
    cat /tmp/run-$d/*.txt | tee -a $OUT/run-$d.txt
  done
  timeout 200 python3 bench/gpu_e2e.py --model $BASE --minutes 10 --cpu-minutes 2 \
    2>&1 | tee $OUT/e2e.txt
  timeout 120 python3 bench/bench_steps.py --device gpu --model $BASE --only-compiled \
    --repeats 5 2>&1 | tee $OUT/steps.txt
  timeout 150 python3 bench/bench_vad.py --device gpu --minutes 60 \
    --methods "mlxwx energy,mlxwx silero,mlxwx pyannote,silero onnx" 2>&1 | tee $OUT/vad_gpu.txt ;;
pyannote)
  # pyannote.audio's torch model (the reference) with its import-time dependencies, carried as
  # .carry/up6p (wheels + WhisperX's checkpoint), installed apart so that mlx runs never see them.
  rm -rf /tmp/pysite && mkdir -p /tmp/pysite  # wheels unzipped: pip --target skips the
  for w in .carry/up6p/*.whl; do python3 -m zipfile -e "$w" /tmp/pysite; done  # 2nd pyannote/
  # CPU: the host's 16 cores. GPU: torch loads its cuDNN (9.19) before MLX loads the older one
  # its CUDA wheel bundles (9.14); the other order fails torch's cuDNN version check.
  PYTHONPATH=$PYTHONPATH:/tmp/pysite timeout 250 python3 bench/bench_vad.py --device cpu \
    --minutes 60 --methods "pyannote torch" --pyannote-checkpoint .carry/up6p/pytorch_model.bin \
    2>&1 | grep -v Warning | tee $OUT/vad_pyannote_torch_cpu.txt
  PYTHONPATH=$PYTHONPATH:/tmp/pysite timeout 150 python3 -c "
import runpy, sys, torch
torch.backends.cudnn.version()
sys.argv = ['bench/bench_vad.py', '--device', 'gpu', '--minutes', '60', '--methods',
            'pyannote torch', '--pyannote-checkpoint', '.carry/up6p/pytorch_model.bin']
runpy.run_path('bench/bench_vad.py', run_name='__main__')" 2>&1 | grep -v Warning \
    | tee $OUT/vad_pyannote_torch_gpu.txt ;;
ctc)
  mkdir -p /root/mlxsite /tmp/site /tmp/stubs && cp .carry/up2/* /root/stage/
  cat /root/stage/mlx-cuda.part.* | xz -d | tar -x -C /root/mlxsite
  python3 -m zipfile -e /root/stage/mlx-0.32.4-*.whl /root/mlxsite
  python3 -c 'import pytest' 2>/dev/null ||
    pip install -q --no-deps --target /tmp/site .carry/wheels/*.whl
  python3 -c 'import av' 2>/dev/null || { mkdir -p /tmp/stubs/av && touch /tmp/stubs/av/__init__.py; }
  timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py -k ctc_kernel 2>&1 \
    | tail -4 | tee $OUT/ctc-kernel.txt
  timeout 200 python3 bench/gpu_ctc.py --rounds 8 --profile 2>&1 | grep -v -e 'Writing model shards' -e 'Loading weights' \
    | tee $OUT/ctc.txt ;;
ctce2e)  # after `stage b1` .. `stage b3` (bench/pack_gpu.sh's parts), this call carrying .carry/b4
  cp .carry/b4/* /root/stage/ && sh bench/h100.sh unpack && sh bench/h100.sh setup
  export PYTHONPATH=$PYTHONPATH:/root/stage/stubs
  mlx_whisper_stub
  timeout 120 python3 bench/gpu_ctc.py --rounds 8 --profile 2>&1 \
    | grep -v -e 'Writing model shards' -e 'Loading weights' | tee $OUT/ctc.txt
  timeout 420 python3 bench/gpu_e2e.py --model $BASE --input-file /root/stage/corpus10.npz \
    --devices gpu --batches 16,64 --repeat 3 \
    --configs beam5-noalign,beam5-w2v,beam5-w2v-kp,beam5-w2v-ab256-as600,greedy-nofb-noalign,greedy-nofb-w2v,greedy-nofb-w2v-kp,greedy-nofb-w2v-ab256-as600 \
    2>&1 | grep -v -e 'Writing model shards' -e 'Loading weights' | tee $OUT/e2e-kp.txt ;;
hard)
  timeout 500 python3 bench/gpu_e2e.py --model $BASE --input-file /root/stage/hard10.npz \
    --devices gpu --batches 16,64 --configs greedy-nofb,greedy,beam5-nofb,beam5 --repeat 3 \
    2>&1 | tee $OUT/hard.txt ;;
quant)
  random_weights_setup
  timeout 540 python3 bench/gpu.py --base $BASE --systems mlxwx,mlxwx-q8,mlxwx-q4 \
    --shapes "${2:-large-v3,large-v3-turbo,base}" --batches 1,256 --repeats 2 \
    --budget-s "${3:-450}" \
    --out $OUT/gpu-quant.md 2>&1 | grep -vE '^(TMA Desc|format |dim |gmem_address|global|boxDim|elementStrides|interleave|swizzle|l2Promotion|oobFill)' \
    | tee $OUT/gpu-quant.log ;;
ray)
  mkdir -p /root/rw /tmp/raysite && cat /root/stage/rw.part.* | tar -x -C /root/rw
  # only the wheels whose module this machine lacks (its own torch stack keeps its versions)
  for w in $(python3 -c "
import glob, importlib.util, os
names = {'python_dateutil': 'dateutil', 'pyyaml': 'yaml', 'protobuf': 'google.protobuf',
         'attrs': 'attr', 'rpds_py': 'rpds'}
for w in sorted(glob.glob('/root/rw/*.whl')):
    dist = os.path.basename(w).split('-')[0].lower()
    try:
        found = importlib.util.find_spec(names.get(dist, dist)) is not None
    except ImportError:
        found = False
    if not found:
        print(w)"); do pip install -q --no-deps --target /tmp/raysite "$w"; done
  export PYTHONPATH=$PYTHONPATH:/tmp/raysite PATH=/tmp/raysite/bin:$PATH
  timeout 560 python3 bench/bench_ray.py --model $BASE --passes 40 --actors 1 --gpus 1 \
    --cpus 16 2>&1 | tee $OUT/ray.txt ;;
timing)
  export PYTHONPATH=$PYTHONPATH:$PWD/.carry/stubs  # empty av, a plain jiwer.wer
  python3 -c 'import pytest' 2>/dev/null ||
    pip install -q --no-deps --target /tmp/site .carry/wheels/*.whl
  timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py 2>&1 | tail -4 \
    | tee $OUT/kernels.txt
  timeout 200 python3 bench/gpu_align_check.py --model $BASE --clips synthconv.wav,sample.wav \
    --against .carry/cpu_words.json 2>&1 | tee $OUT/align-check.txt
  cp -r bench .carry/old/  # run from there, the old package comes first on sys.path
  for code in . .carry/old; do
    (cd $code && timeout 280 python3 bench/gpu_e2e.py --model $BASE \
      --input-file /root/stage/corpus10.npz --devices gpu --batches 16,64 --repeat 3 \
      --configs greedy-nofb,greedy-nofb-noalign,beam5,beam5-noalign 2>&1) \
      | tee $OUT/timing-$(basename $code).txt
  done ;;
w2v)
  export PYTHONPATH=$PYTHONPATH:/root/stage/stubs
  mlx_whisper_stub
  # the GPU's batched feature encoder against each segment alone (float32, cuda)
  timeout 120 python3 -c "
import tempfile; from pathlib import Path; import numpy as np
from tests.speech import save_random_wav2vec2
from mlxwx.align import wav2vec2 as w
al = w.load_aligner('en', str(save_random_wav2vec2(Path(tempfile.mkdtemp()))), 'cuda', precision='float32')
rng = np.random.default_rng(0)
audios = [(0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in (1.0, 2.5, 7.3, 0.6, 12.0)]
batched = w.emissions(al, audios)
print('batched vs alone, max |diff| of log-probs:', max(float(np.abs(b - w.emissions(al, [a])[0]).max()) for a, b in zip(audios, batched)))
" 2>&1 | grep -v -e 'Writing model shards' -e 'Loading weights' | tee $OUT/w2v-check.txt
  timeout 480 python3 bench/gpu_e2e.py --model $BASE --input-file /root/stage/corpus10.npz \
    --devices gpu --batches 16,64 --repeat 3 \
    --configs beam5-noalign,beam5-w2v-ab8,beam5-w2v,greedy-nofb-noalign,greedy-nofb-w2v-ab8,greedy-nofb-w2v,greedy-nofb-w2v-ab16 \
    2>&1 | grep -v -e 'Writing model shards' -e 'Loading weights' | tee $OUT/w2v.txt ;;
e2e2h)
  # issue 18: the whole pipeline (Silero, transcription, Whisper word timing) on 2 hours in 40
  # files, built from the carried 10-minute corpus input (its clips in new seeded orders)
  export PYTHONPATH=$PYTHONPATH:$PWD/.carry/stubs
  timeout 500 python3 bench/gpu_e2e.py --model $BASE --input-file /root/stage/corpus10.npz \
    --minutes 120 --files 40 --devices gpu --batches 64,128,256 --repeat 2 \
    --configs beam5,greedy 2>&1 | tee $OUT/e2e2h.txt ;;
kv8)
  # issue 18: bench/gpu.py with 8-bit cross-attention keys and the fused query/key/value
  # projections against mlxwx before them, on random weights (only mlx-cuda and the base
  # config carried: two calls, `stage 1` then this)
  random_weights_setup
  tma='Failed to initialize the TMA'
  for n in 1500 1504; do  # which shapes MLX's CUDA quantized matmul cannot load by TMA
    timeout 60 python3 -c "
import mlx.core as mx
from mlxwx.ops import PACK_GROUP as G
p = mx.random.uniform(shape=(64, 20, 5, $n)).astype(mx.float16)
v = mx.random.normal((64, 20, $n, 64)).astype(mx.float16)
q = mx.random.normal((64, 20, 5, 64)).astype(mx.float16)
w = mx.quantize(v, group_size=G, bits=8)
mx.eval(mx.quantized_matmul(p, *w, transpose=False, group_size=G, bits=8))
print('scores', flush=True)
mx.eval(mx.quantized_matmul(q, *w, transpose=True, group_size=G, bits=8))
" > /tmp/tma-$n.raw 2>&1
    a=$(sed '/^scores/,$d' /tmp/tma-$n.raw | grep -c "$tma")
    b=$(sed -n '/^scores/,$p' /tmp/tma-$n.raw | grep -c "$tma")
    echo "$n frames: probabilities @ 8-bit values $a TMA failures; queries @ 8-bit keys $b"
  done | tee $OUT/tma.txt
  timeout 400 python3 bench/gpu.py --base $BASE --systems mlxwx,mlxwx-kv8 \
    --shapes large-v3,large-v3-turbo,base --batches 1,256 --repeats 2 --budget-s 330 \
    --out $OUT/gpu-kv8.md > /tmp/gpu-kv8.raw 2>&1
  # MLX's CUDA quantized matmul prints a block for each TMA descriptor it fails to set up
  echo "TMA descriptor failures: $(grep -c "$tma" /tmp/gpu-kv8.raw)"
  grep -vE '^(TMA Desc|Error: Failed to initialize the TMA|format |dim |gmem_address|global|boxDim|elementStrides|interleave|swizzle|l2Promotion|oobFill)' \
    /tmp/gpu-kv8.raw | tee $OUT/gpu-kv8.log ;;
b)
  timeout 560 python3 bench/gpu.py --base $BASE --mlx-whisper-path .carry/mw \
    --budget-s 500 --out $OUT/gpu.md 2>&1 | tee $OUT/gpu.log ;;
esac
