"""Hugging Face TrOCR weights -> MLX: `model.safetensors` + `config.json` + tokenizer files.

The weights come from the real `from_pretrained` (hub id or local directory), so tied
heads and the transformers 5.x key renames are already resolved; KEY_TABLE also accepts
the 4.x names. Every key must match a row: an unknown key fails the conversion instead of
silently dropping a weight.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ocrq.errors import ModelError

DTYPES = ("float32", "float16", "bfloat16")

# Hugging Face key (regex, first match wins) -> MLX key in models/mlx/model.py; None drops it.
# The encoder rows come in two spellings: transformers >= 5 ("layers.N.attention.q_proj")
# and 4.x / the hub checkpoints ("encoder.layer.N.attention.attention.query").
KEY_TABLE: list[tuple[str, str | None]] = [
    # encoder embeddings
    (r"encoder\.embeddings\.patch_embeddings\.projection\.", "encoder.patch_embed."),
    (r"encoder\.embeddings\.cls_token", "encoder.cls_token"),
    (r"encoder\.embeddings\.distillation_token", "encoder.dist_token"),
    (r"encoder\.embeddings\.position_embeddings", "encoder.pos_embed"),
    (r"encoder\.embeddings\.mask_token", None),  # masked-image pretraining only
    # encoder blocks, transformers >= 5
    (r"encoder\.layers\.(\d+)\.attention\.([qkv])_proj\.", r"encoder.layers.\1.attn.\2_proj."),
    (r"encoder\.layers\.(\d+)\.attention\.o_proj\.", r"encoder.layers.\1.attn.out_proj."),
    (r"encoder\.layers\.(\d+)\.mlp\.(fc[12])\.", r"encoder.layers.\1.\2."),
    (r"encoder\.layers\.(\d+)\.layernorm_before\.", r"encoder.layers.\1.norm1."),
    (r"encoder\.layers\.(\d+)\.layernorm_after\.", r"encoder.layers.\1.norm2."),
    # encoder blocks, transformers 4.x
    (r"encoder\.encoder\.layer\.(\d+)\.attention\.attention\.query\.", r"encoder.layers.\1.attn.q_proj."),
    (r"encoder\.encoder\.layer\.(\d+)\.attention\.attention\.key\.", r"encoder.layers.\1.attn.k_proj."),
    (r"encoder\.encoder\.layer\.(\d+)\.attention\.attention\.value\.", r"encoder.layers.\1.attn.v_proj."),
    (r"encoder\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"encoder.layers.\1.attn.out_proj."),
    (r"encoder\.encoder\.layer\.(\d+)\.intermediate\.dense\.", r"encoder.layers.\1.fc1."),
    (r"encoder\.encoder\.layer\.(\d+)\.output\.dense\.", r"encoder.layers.\1.fc2."),
    (r"encoder\.encoder\.layer\.(\d+)\.layernorm_before\.", r"encoder.layers.\1.norm1."),
    (r"encoder\.encoder\.layer\.(\d+)\.layernorm_after\.", r"encoder.layers.\1.norm2."),
    # encoder tail; the pooler feeds classification heads, never the decoder
    (r"encoder\.layernorm\.", "encoder.norm."),
    (r"encoder\.pooler\.", None),
    (r"enc_to_dec_proj\.", "enc_to_dec_proj."),
    # decoder: same names, one wrapper level less
    (r"decoder\.model\.decoder\.", "decoder."),
    (r"decoder\.output_projection\.", "decoder.output_projection."),
]  # fmt: skip


def rename(hf_key: str) -> str | None:
    """The MLX name of a Hugging Face weight (None: not used by the MLX model)."""
    for pattern, target in KEY_TABLE:
        match = re.match(pattern, hf_key)
        if match:
            return None if target is None else match.expand(target) + hf_key[match.end() :]
    raise ModelError(f"no MLX name for weight {hf_key!r}: unsupported architecture")


def convert_state_dict(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename Hugging Face weights to MLX names and reshape the patch convolution."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = rename(key)
        if name is None:
            continue
        if name == "encoder.patch_embed.weight":
            # conv [D, C, p, p] with stride p == linear over flattened (C, p, p) patches
            value = value.reshape(value.shape[0], -1)
        out[name] = value
    return out


def default_name(source: str) -> str:
    """Cache entry name for SOURCE: the last path/hub-id component plus "-mlx"."""
    return Path(str(source).rstrip("/")).name + "-mlx"


def convert(source: str | Path, out_dir: Path, dtype: str = "float32") -> dict[str, Any]:
    """Convert SOURCE (hub id or local dir) into `out_dir`; returns the manifest written."""
    import mlx.core as mx

    from models.mlx.model import WEIGHTS_FILE, load_model
    from models.trocr.hf import load_pretrained

    if dtype not in DTYPES:
        raise ModelError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    model, tokenizer = load_pretrained(source)
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    weights = convert_state_dict(state)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {k: mx.array(v).astype(getattr(mx, dtype)) for k, v in weights.items()}
    mx.save_safetensors(str(out_dir / WEIGHTS_FILE), arrays, metadata={"format": "mlx"})
    model.config.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _save_image_processor(source, out_dir)
    # Loading what we wrote is the cheapest proof that names, shapes and config agree.
    load_model(out_dir)
    return _write_manifest(source, out_dir, dtype)


def _save_image_processor(source: str | Path, out_dir: Path) -> None:
    from transformers import AutoImageProcessor

    try:
        AutoImageProcessor.from_pretrained(str(source)).save_pretrained(out_dir)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the image processor config of {source}: {exc}") from exc


def _write_manifest(source: str | Path, out_dir: Path, dtype: str) -> dict[str, Any]:
    import hashlib
    import json

    import mlx.core as mx
    import transformers

    files = {}
    for path in sorted(p for p in out_dir.iterdir() if p.is_file() and p.name != "manifest.json"):
        files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {
        "backend": "mlx",
        "source": str(source),
        "dtype": dtype,
        "files": files,
        "versions": {"mlx": mx.__version__, "transformers": transformers.__version__},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
