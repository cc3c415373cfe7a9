"""An Ollama Modelfile beside an exported model.gguf: the file, the run's decoding defaults (task.generation), its
context length and stop tokens, and — for a ChatML chat template (SmolLM2, Qwen) — the prompt template in Ollama's Go
syntax. `ollama create <name> -f Modelfile` in the export folder, then `ollama run <name>`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from llmft.config import GenerationConfig

MODELFILE = "Modelfile"
CHATML = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


def modelfile_text(gguf_name: str, tokenizer: Any, generation: GenerationConfig, context: int, chat: bool) -> str:
    """The Modelfile for `gguf_name`: decoding as `llmft generate` decodes the run (greedy unless it samples)."""
    lines = ["# Ollama: ollama create <name> -f Modelfile (in this folder), then: ollama run <name>", f"FROM ./{gguf_name}"]
    template = (tokenizer.chat_template or "") if chat else ""
    stops = list(generation.stop)
    if "<|im_start|>" in template:
        lines.append(f'TEMPLATE """{CHATML}"""')
        stops.append("<|im_end|>")
    elif not template:
        lines.append('TEMPLATE """{{ .Prompt }}"""')  # prompts continue as written (the run's prompt template aside)
    # another chat template: Ollama reads it from the GGUF's tokenizer.chat_template
    if tokenizer.eos_token:
        stops.append(tokenizer.eos_token)
    lines.append(f"PARAMETER temperature {generation.temperature if generation.do_sample else 0}")
    if generation.do_sample:
        lines += [f"PARAMETER top_p {generation.top_p}", f"PARAMETER top_k {generation.top_k}"]
    lines += [
        f"PARAMETER repeat_penalty {generation.repetition_penalty}",
        f"PARAMETER num_ctx {context}",
        f"PARAMETER num_predict {generation.max_new_tokens}",
    ]
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in dict.fromkeys(stops)]
    return "\n".join(lines) + "\n"


def write_modelfile(
    out: Path, gguf_name: str, tokenizer: Any, generation: Optional[GenerationConfig], context: int, chat: bool
) -> Path:
    path = out / MODELFILE
    path.write_text(modelfile_text(gguf_name, tokenizer, generation or GenerationConfig(), context, chat))
    return path
