#!/usr/bin/env bash
# One GPU, one go: extraction throughput of both MLCD shapes against the forward-only ceiling
# (random weights, no download; goal: ratio 0.9), of the token cache (L/14 tokens, full and
# pooled), the ImageNet search plus refit at the paper's rule (goal: under 5 minutes) with
# cuML's search on the same features beside it, k-NN, and the attentive probe. Installs
# nothing: a peer that is not installed prints n/a. Prints each number, keeps JSON under $OUT.
#   bash probe/bench/gpu_check.sh                    # on a GPU node, from the repo root
#   OUT=/tmp/bench N_IMAGES=8192 bash probe/bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench-out}
N_IMAGES=${N_IMAGES:-4096}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
echo "cpus: ${SLURM_CPUS_PER_TASK:-$(nproc)}" | tee -a "$OUT/gpu.txt"
status=0
# The JPEGs are generated once into $OUT/jpegs and shared by both runs.
python -m probe.bench extract encoder=mlcd_l14 --random-weights --batch-size 256 \
    --n-images "$N_IMAGES" --images "$OUT/jpegs" --json "$OUT/extract_mlcd_l14.json" || status=1
python -m probe.bench extract encoder=mlcd_bigg14_336 --shape mlcd_bigg14_336 --batch-size 128 \
    --n-images "$N_IMAGES" --images "$OUT/jpegs" --json "$OUT/extract_mlcd_bigg14_336.json" \
    || status=1
# the token cache's path: every token of ViT-L/14 at 336 px (577 x 1,024 float16, 1.2 MB an
# image: the float16 cast, hash and write of 4.7 GB for 4,096 images), then pooled to 8 x 8
python -m probe.bench extract encoder=mlcd_l14 encoder.feature=tokens --random-weights \
    --batch-size 128 --n-images "$N_IMAGES" --images "$OUT/jpegs" \
    --json "$OUT/extract_mlcd_l14_tokens.json" || status=1
python -m probe.bench extract encoder=mlcd_l14 encoder.feature=tokens encoder.token_pool=8 \
    --random-weights --batch-size 256 --n-images "$N_IMAGES" --images "$OUT/jpegs" \
    --json "$OUT/extract_mlcd_l14_tokens_pool8.json" || status=1
# the full 1,281,167 x 1,024 x 1,000 problem on the GPU: torch and cuML side by side (cuML
# prints n/a with its install command where it is missing); then the CIFAR-100 shape
python -m probe.bench solvers --problems imagenet --backends torch,cuml \
    --out "$OUT/solvers_imagenet.json" 2>&1 | tee "$OUT/solvers_imagenet.txt" || status=1
python -m probe.bench solvers --problems cifar100,fine --backends torch,cuml \
    --out "$OUT/solvers_small.json" 2>&1 | tee "$OUT/solvers_small.txt" || status=1
# k-NN of the ImageNet shape (the GPU defaults of `probe.bench evals`)
python -m probe.bench evals --skip fewshot --skip attentive --json "$OUT/knn.json" 2>&1 \
    | tee "$OUT/knn.txt" || status=1
# eval=attentive: 20 heads together against one alone, on an ImageNet-shaped token subsample
# (ViT-L/14 at 224 px: 257 tokens x 1,024, 1,000 classes; 16,384 rows, 8.6 GB of float16)
python -m probe.bench evals --skip knn --skip fewshot --rows 16384 --tokens 257 \
    --token-dim 1024 --token-classes 1000 --batch 1024 --epochs 1 \
    --json "$OUT/attentive.json" 2>&1 | tee "$OUT/attentive.txt" || status=1
python - "$OUT" <<'PY'
import json, pathlib, sys
rows = [json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("extract_*.json"))]
print("| shape | feature | GPU | dtype | batch | workers | ceiling img/s | pipeline img/s | ratio |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    kind = r.get("feature") or "pooler_output"
    kind += f" pool {r['token_pool']}" if r.get("token_pool") else ""
    print(f"| {r['shape']} | {kind} | {r['gpu']} | {r['dtype']} | {r['batch_size']} | {r['num_workers']} "
          f"| {r['ceiling_images_per_s']} | {r['pipeline_images_per_s']} | {r['ratio']} |")
PY
exit $status
