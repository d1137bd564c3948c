#!/usr/bin/env bash
# Files for `bench/gpu_e2e.py` on the lent GPU machine (no internet, at most 64 MiB carried per
# call), made here into one tar split in 55 MB parts, .carry/b1 .. .carry/b4 (git-ignored):
# the MLX CUDA wheel (../shared/tools/pack-mlx-cuda.sh), base in float16 converted from the
# offline pack (weights xz-compressed), the 10-minute corpus input (corpus10.npz) and stubs
# for what the GPU machine lacks (an empty `av`, a word edit distance for `jiwer.wer`).
# Then, on the GPU machine, four consecutive calls (it stays warm 30 s between them):
#   carry [".carry/b1"]: mkdir -p /root/stage && cp .carry/b1/* /root/stage/   (b2, b3 the same)
#   carry [".carry/b4", ...]: cp .carry/b4/* /root/stage/ && sh bench/h100.sh unpack \
#       && sh bench/h100.sh setup && <the bench>, e.g. python3 bench/gpu_e2e.py --model /root/base
#       --input-file /root/stage/corpus10.npz --devices gpu ... (PYTHONPATH as bench/h100.sh sets
#       it, plus /root/stage/stubs)
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash ../shared/tools/pack-mlx-cuda.sh >/dev/null
stage="$work/stage" && mkdir -p "$stage/stubs/av" "$stage/stubs/jiwer"
cp .carry/mlx-cuda.part.* .carry/mlx-0.32.4-*.whl "$stage/"
python3 -c 'import sys; from pathlib import Path; from bench.bench_engine import ct2_base_dir
ct2_base_dir(Path(sys.argv[1]))' "$work/ct2"  # the offline pack's parts joined
python3 -m convert ct2 "$work/ct2" "$work/base16" --dtype float16 >/dev/null
cp "$work"/base16/{config.json,mlxwx.json,tokenizer.json} "$stage/"
xz -T0 -6 -c "$work/base16/weights.safetensors" | split -b 50m - "$stage/weights.xz.part"
python3 bench/gpu_e2e.py --input corpus --minutes 10 --save-input "$stage/corpus10.npz" >/dev/null
touch "$stage/stubs/av/__init__.py"
cat > "$stage/stubs/jiwer/__init__.py" <<'PY'
"""A word edit distance standing in for jiwer.wer (the same corpus-level formula)."""


def _distance(ref, hyp):
    prev = list(range(len(hyp) + 1))
    for i, a in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, b in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a != b))
        prev = cur
    return prev[-1]


def wer(reference, hypothesis):
    refs = [reference] if isinstance(reference, str) else list(reference)
    hyps = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    errors = sum(_distance(r.split(), h.split()) for r, h in zip(refs, hyps))
    return errors / max(1, sum(len(r.split()) for r in refs))
PY
tar -C "$stage" -cf "$work/stage.tar" .
rm -rf .carry/b1 .carry/b2 .carry/b3 .carry/b4
split -b 55m -d -a 1 "$work/stage.tar" "$work/stage.tar.p"
for i in 0 1 2 3; do
  mkdir -p ".carry/b$((i + 1))" && mv "$work/stage.tar.p$i" ".carry/b$((i + 1))/"
done
ls -la .carry/b1 .carry/b2 .carry/b3 .carry/b4
