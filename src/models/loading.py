"""`load_model(spec)`: one entry point for every kind of checkpoint.

A spec is one of:
- an alias (``smollm2-135m``, the embedded default);
- a local folder holding a HF model (``config.json``) or a PEFT adapter
  (``adapter_config.json``; its base comes from ``base=``, else the alias persona-diff
  recorded in ``trainer_state.json`` when it trained the adapter, else that file's
  ``base_model_name_or_path``);
- a ``.gguf`` file (dequantised to float32 by transformers + gguf);
- a Hugging Face hub id (needs network or a warm HF cache).

Placement: `device` ("auto" = a CUDA GPU when visible, else the CPU) puts the whole model on
one device; `device_map="auto"` instead lets accelerate spread it over every visible GPU (for
models that do not fit one), and `device` is then ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from persona_diff.errors import ModelLoadError
from persona_diff.log import get_logger
from persona_diff.models.device import resolve_device
from persona_diff.models.embedded import ALIASES, materialise_alias

if TYPE_CHECKING:  # transformers is imported where a model loads: checking specs and skipping a finished run need none
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = get_logger(__name__)

# the one name → dtype map (weights here, activation storage in `activations.capture`)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A model ready for generation / tracing, with where it came from."""

    model: PreTrainedModel | PeftModel  # PeftModel: an adapter not merged
    tokenizer: PreTrainedTokenizerBase
    spec: str
    kind: str  # "alias" | "hf" | "peft" | "gguf"
    base_path: str  # a folder or hub id holding the base weights (what vLLM would load)
    adapter_path: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec

    def describe(self) -> dict[str, Any]:
        cfg = self.model.config
        d: dict[str, Any] = {
            "spec": self.spec,
            "kind": self.kind,
            "architecture": (getattr(cfg, "architectures", None) or [type(self.model).__name__])[0],
            "model_type": getattr(cfg, "model_type", None),
            "n_layers": getattr(cfg, "num_hidden_layers", None),
            "d_model": getattr(cfg, "hidden_size", None),
            "vocab_size": getattr(cfg, "vocab_size", None),
            "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "chat_template": bool(getattr(self.tokenizer, "chat_template", None)),
            "base_path": self.base_path,
        }
        if self.adapter_path:
            d["adapter"] = {"path": self.adapter_path, **self.info.get("adapter", {})}
        return d


def _dtype(name: str) -> Any:
    if name == "auto":
        return "auto"
    if name not in DTYPES:
        raise ModelLoadError(f"unknown dtype {name!r}; use one of {', '.join([*DTYPES, 'auto'])}")
    return DTYPES[name]


def load_tokenizer(path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


@dataclass(frozen=True)
class Placement:
    device: str = "auto"
    device_map: str | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"device_map": self.device_map} if self.device_map else {}

    def place(self, model: PreTrainedModel) -> PreTrainedModel:
        # transformers wraps `to` with functools.wraps(nn.Module.to), which types it as unbound
        return (model if self.device_map else model.to(resolve_device(self.device))).eval()  # type: ignore[arg-type]


def _load_hf(path: str, dtype: str, where: Placement, trust_remote_code: bool) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=_dtype(dtype), trust_remote_code=trust_remote_code, **where.kwargs()
        )
    except OSError as e:
        raise ModelLoadError(
            f"cannot load model {path!r}: {str(e).splitlines()[0]}. "
            "Pass an existing local folder, a .gguf file, a PEFT adapter folder, "
            f"an alias ({', '.join(ALIASES)}), or a hub id reachable from this machine"
        ) from None
    return where.place(model)


def _load_gguf(path: Path, dtype: str, where: Placement) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=_dtype(dtype), **where.kwargs()
        )
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as e:  # gguf raises ValueError/KeyError/struct errors on junk
        raise ModelLoadError(
            f"{path} is not a loadable GGUF model ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "check that the file is a complete GGUF checkpoint of a supported architecture"
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return where.place(model), tok


def _project_base(adapter_dir: Path) -> str | None:
    """The base alias persona-diff recorded when it trained this adapter (trainer_state.json),
    if it is one: adapter_config.json names the folder the alias was materialised into, which
    does not exist on another machine, while the alias resolves everywhere."""
    try:
        name = json.loads((adapter_dir / "trainer_state.json").read_text()).get("base")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return name if isinstance(name, str) and name in ALIASES else None


def _adapter_base(adapter_dir: Path, base: str | None) -> str:
    if base:
        return base
    alias = _project_base(adapter_dir)
    if alias:
        return alias
    cfg_file = adapter_dir / "adapter_config.json"
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{cfg_file} is not valid JSON ({e}); re-save the adapter") from None
    name = cfg.get("base_model_name_or_path")
    if not name:
        raise ModelLoadError(
            f"adapter {adapter_dir} does not name its base model (base_model_name_or_path is empty); "
            "pass the base explicitly, e.g. `--base smollm2-135m` or load_model(spec, base=...)"
        )
    return name


def _resolve_base_path(base: str, adapter_dir: Path) -> str:
    if base in ALIASES:
        return str(materialise_alias(base))
    p = Path(base)
    if p.exists():
        return str(p)
    rel = adapter_dir / base
    if rel.exists():
        return str(rel)
    if base.count("/") == 1 and not base.startswith((".", "/")):
        return base  # a hub id: try it, with a clear error if unreachable
    raise ModelLoadError(
        f"the base model {base!r} of adapter {adapter_dir} cannot be found; "
        "pass it explicitly (`--base PATH_OR_ALIAS`) or fix base_model_name_or_path in adapter_config.json"
    )


@dataclass(frozen=True)
class ModelSource:
    """Where a spec's weights are, found without reading them (`resolve_model`)."""

    spec: str
    kind: str  # "alias" | "hf" | "peft" | "gguf"
    base_path: str  # a folder, file or hub id holding the base weights
    adapter_path: str | None = None
    base_name: str | None = None  # a PEFT adapter's base, as named (alias, path or hub id)

    @property
    def weights(self) -> str:
        """What identifies this model's own weights: the adapter when there is one."""
        return self.adapter_path or self.base_path


def resolve_model(spec: str | Path, base: str | None = None) -> ModelSource:
    """Check a model spec and find its files without loading any weights, so a bad spec
    fails before anything is written or loaded. Hub ids cannot be checked offline; they
    pass as they are and fail at load time if unreachable."""
    spec = str(spec)
    if spec in ALIASES:
        return ModelSource(spec, "alias", str(materialise_alias(spec)))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {path} does not exist; check the path")
        return ModelSource(spec, "gguf", str(path))
    if path.is_dir() and (path / "adapter_config.json").is_file():
        name, base_path = adapter_base_path(path, base)
        return ModelSource(spec, "peft", base_path, adapter_path=str(path), base_name=name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is neither a HF model folder (no config.json) nor a PEFT adapter "
                "(no adapter_config.json); point to the folder that holds one of them"
            )
        return ModelSource(spec, "hf", str(path))
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") != 1 or path.suffix
    if looks_like_path:
        raise ModelLoadError(
            f"model {spec!r} does not exist: no such file or folder, and it is not an alias "
            f"({', '.join(ALIASES)}); check the path"
        )
    return ModelSource(spec, "hf", spec)


def load_model(
    spec: str | Path,
    *,
    base: str | None = None,
    dtype: str = "float32",
    device: str = "auto",
    device_map: str | None = None,
    merge: bool = False,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a model from any supported spec (see module docstring for `device`/`device_map`).

    `base` overrides the base named in a PEFT adapter's config. `merge=True` merges the
    adapter into the weights (plain module paths, ~1e-2 float differences at SmolLM2 norms);
    otherwise the PeftModel wrapper is kept and the layer helper handles its paths.
    """
    spec = str(spec)
    where = Placement(device, device_map)
    resolve_device(device)  # a bad or unavailable device fails before any weights are read
    src = resolve_model(spec, base)
    if src.kind == "alias":
        model = _load_hf(src.base_path, dtype, where, trust_remote_code=False)
        return LoadedModel(model, load_tokenizer(src.base_path), spec, "alias", src.base_path)
    if src.kind == "gguf":
        model, tok = _load_gguf(Path(src.base_path), dtype, where)
        return LoadedModel(model, tok, spec, "gguf", src.base_path)
    if src.kind == "peft":
        return _load_adapter(src, dtype, where, merge, trust_remote_code)
    model = _load_hf(src.base_path, dtype, where, trust_remote_code)
    return LoadedModel(model, load_tokenizer(src.base_path, trust_remote_code), spec, "hf", src.base_path)


def adapter_base_path(adapter_dir: Path, base: str | None = None) -> tuple[str, str]:
    """(name, loadable path) of a PEFT adapter's base: `base`, else its adapter_config.json."""
    name = _adapter_base(adapter_dir, base)
    return name, _resolve_base_path(name, adapter_dir)


def _load_adapter(src: ModelSource, dtype: str, where: Placement, merge: bool, trust_remote_code: bool) -> LoadedModel:
    from peft import PeftModel

    assert src.adapter_path is not None and src.base_name is not None
    path, base_name, base_path = Path(src.adapter_path), src.base_name, src.base_path
    base_model = _load_hf(base_path, dtype, where, trust_remote_code)
    tok_src = path if (path / "tokenizer_config.json").is_file() else Path(base_path)
    tok = load_tokenizer(str(tok_src), trust_remote_code)
    try:
        model = PeftModel.from_pretrained(base_model, str(path))
    except (RuntimeError, ValueError, KeyError) as e:
        raise ModelLoadError(
            f"adapter {path} does not fit base {base_name!r}: {str(e).splitlines()[0]}; "
            "pass the base it was trained on with --base"
        ) from None
    model.eval()
    adapter_cfg = json.loads((path / "adapter_config.json").read_text())
    info = {
        "adapter": {
            "base": base_name,
            "r": adapter_cfg.get("r"),
            "lora_alpha": adapter_cfg.get("lora_alpha"),
            "target_modules": adapter_cfg.get("target_modules"),
            "use_rslora": adapter_cfg.get("use_rslora"),
            "merged": False,
        }
    }
    lm = LoadedModel(model, tok, str(path), "peft", base_path, adapter_path=str(path), info=info)
    return merged(lm) if merge else lm


def merged(lm: LoadedModel) -> LoadedModel:
    """`lm` with its LoRA adapter merged into the weights, in place (the unmerged wrapper is
    gone afterwards); `lm` itself when it holds no adapter."""
    from peft import PeftModel

    if not isinstance(lm.model, PeftModel):
        return lm
    info = {**lm.info, "adapter": {**lm.info.get("adapter", {}), "merged": True}}
    return replace(lm, model=lm.model.merge_and_unload().eval(), info=info)
