#!/usr/bin/env bash
# The real vLLM, end to end, on a GPU: wire format, templates, parity with LocalReranker, speed.
#
#   bash benchmarks/gpu/vllm_end_to_end.sh          # from the repository root; about 6 minutes
#
# 1. installs vLLM 0.33 and this project into .venv-gpu;
# 2. builds a random-weight checkpoint with Qwen3-Reranker-0.6B's exact architecture and the real
#    tokenizer (qwen_rerank.testing.make_tiny_reranker at full size: nothing is downloaded);
# 3. serves it both ways, with the README's commands: A without a score template, B with
#    --chat-template set to qwen-rerank's template (qwen_rerank.prompt.server_template_path());
# 4. runs `qwen-rerank check` against each (template=client against A, server against B);
# 5. compares VLLMReranker with LocalReranker on the same checkpoint in bf16: within 2e-3 and the
#    same ranking on 50 mixed-length documents, CJK included;
# 6. measures requests/s and pairs/s for 100 documents of 300 tokens at concurrency 1, 8 and 32.
#
# The output is also written to benchmarks/results/vllm_end_to_end-YYYY-MM-DD.txt.
# Without a GPU it says so and exits 0. QWEN3_RERANKER_JINJA=path serves B with another template
# (vLLM's own examples/pooling/score/template/qwen3_reranker.jinja shows what check finds wrong).
set -euo pipefail

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "vllm_end_to_end: no NVIDIA GPU here (nvidia-smi finds none); nothing to run. Exiting 0."
    exit 0
fi

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
VLLM_VERSION="${VLLM_VERSION:-0.33.0}"
WORK="${WORK:-$(mktemp -d /tmp/qwen-rerank-e2e.XXXXXX)}"
OUT="benchmarks/results/vllm_end_to_end-$(date -u +%Y-%m-%d).txt"
PORT_A="${PORT_A:-8801}"
PORT_B="${PORT_B:-8802}"
NAME="Qwen/Qwen3-Reranker-0.6B"
HF_OVERRIDES='{"architectures":["Qwen3ForSequenceClassification"],"classifier_from_token":["no","yes"],"is_original_qwen3_reranker":true}'
mkdir -p benchmarks/results
exec > >(tee "$OUT") 2>&1
echo "# vllm_end_to_end $(date -u +%FT%TZ) on $(nvidia-smi -L | head -1)"

echo "## 1. install vLLM $VLLM_VERSION and qwen-rerank"
python3 -m venv .venv-gpu
PY="$ROOT/.venv-gpu/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q "vllm==$VLLM_VERSION" ".[local,dev]"

echo "## 2. build the checkpoint (Qwen3-Reranker-0.6B architecture, random weights, real tokenizer)"
"$PY" - "$WORK/model" <<'PYEOF'
import sys
from qwen_rerank.testing import make_tiny_reranker

make_tiny_reranker(
    sys.argv[1], hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
    num_key_value_heads=8, head_dim=128, intermediate_size=3072, initializer_range=0.02,
)
print("built", sys.argv[1])
PYEOF

# qwen-rerank's score template: vLLM's own qwen3_reranker.jinja loses the prompt's final newline
# (docs/remote-servers.md), so B would score other text. QWEN3_RERANKER_JINJA=path serves another.
TEMPLATE="${QWEN3_RERANKER_JINJA:-$("$PY" -c 'from qwen_rerank.prompt import server_template_path; print(server_template_path())')}"

echo "## 3. serve it both ways"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
# A: no score template (the README's first command, on the local folder).
"$ROOT/.venv-gpu/bin/vllm" serve "$WORK/model" --served-model-name "$NAME" --runner pooling \
    --hf_overrides "$HF_OVERRIDES" --port "$PORT_A" --gpu-memory-utilization 0.4 >"$WORK/server-a.log" 2>&1 &
PIDS+=($!)
# B: with the score template (the README's second command).
"$ROOT/.venv-gpu/bin/vllm" serve "$WORK/model" --served-model-name "$NAME" --runner pooling \
    --hf_overrides "$HF_OVERRIDES" --chat-template "$TEMPLATE" --port "$PORT_B" \
    --gpu-memory-utilization 0.4 >"$WORK/server-b.log" 2>&1 &
PIDS+=($!)
for port in "$PORT_A" "$PORT_B"; do
    for _ in $(seq 1 180); do
        curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        sleep 1
    done
    curl -fs "http://127.0.0.1:$port/health" >/dev/null || { tail -50 "$WORK"/server-*.log; exit 1; }
done

echo "## 4. qwen-rerank check"
"$PY" -m qwen_rerank.cli check --base-url "http://127.0.0.1:$PORT_A" --template client || true
"$PY" -m qwen_rerank.cli check --base-url "http://127.0.0.1:$PORT_B" --template server || true
"$PY" -m qwen_rerank.cli check --base-url "http://127.0.0.1:$PORT_B" --template client || true

echo "## 5 and 6. parity with LocalReranker (bf16) and throughput"
"$PY" benchmarks/gpu/compare_and_bench.py --model "$WORK/model" \
    --server-a "http://127.0.0.1:$PORT_A" --server-b "http://127.0.0.1:$PORT_B"
echo "# written to $OUT"
