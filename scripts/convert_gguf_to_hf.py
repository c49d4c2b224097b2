"""Convert a chat GGUF into a float32 Hugging Face folder that vLLM loads on a CPU.

    python scripts/convert_gguf_to_hf.py MODEL.gguf OUT_DIR

Run with the vLLM venv's python (scripts/vllm-cpu.sh does): it needs transformers with `gguf`
and `accelerate`, none of which the service's venv must carry. vLLM's CPU build loads no GGUF,
so the quantized weights are dequantized once; the folder gets the weights (safetensors), the
config, the tokenizer and the GGUF's chat template. It is derived data: scripts/vllm-cpu.sh
caches it by the GGUF's sha256, and nothing here is committed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def convert(gguf: Path, out: Path) -> None:
    # Imported here: only the vLLM venv has them.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # The weights are plain float32 now; a leftover GGUF quantization section would make vLLM
    # look for a GGUF loader.
    config_file = out / "config.json"
    config = json.loads(config_file.read_text())
    config.pop("quantization_config", None)
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    if not getattr(tokenizer, "chat_template", None):
        raise SystemExit(f"{gguf} has no chat template: vLLM could not serve it for chat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf", type=Path, help="the GGUF file")
    parser.add_argument("out", type=Path, help="the folder to write (created)")
    args = parser.parse_args()
    started = time.perf_counter()
    convert(args.gguf, args.out)
    print(f"converted {args.gguf} -> {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
