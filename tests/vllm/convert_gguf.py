"""Convert a GGUF chat model to a Hugging Face folder that vLLM can serve, offline.

Run with the .venv-vllm python (it has transformers, torch, gguf and accelerate):

    .venv-vllm/bin/python tests/vllm/convert_gguf.py MODEL.gguf OUT_DIR

The weights are dequantized to bfloat16. transformers marks a model loaded from a
GGUF as quantized, which ``save_pretrained`` refuses (or writes a config vLLM
rejects), so the quantizer and its config are dropped before saving. The tokenizer
(chat template included) comes from the GGUF too. Idempotent: a folder already
converted from the same file (same name and size) is left as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

MARKER = ".converted-from.json"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {Path(sys.argv[0]).name} MODEL.gguf OUT_DIR", file=sys.stderr)
        return 2
    gguf, out = Path(argv[0]).resolve(), Path(argv[1])
    source = {"gguf": gguf.name, "size": gguf.stat().st_size}
    marker = out / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == source:
        print(f"{out}: already converted from {gguf.name}")
        return 0

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in CI logs
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
    )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise SystemExit(f"{gguf.name} has no chat template: vLLM's chat endpoint needs one")
    tokenizer.save_pretrained(tmp)
    (tmp / MARKER).write_text(json.dumps(source))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"{out}: converted from {gguf.name} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
