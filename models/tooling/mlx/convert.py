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

from models import cache
from models.mlx.files import KIND, MLX_SUFFIX, WEIGHTS_FILE
from models.tooling.mlx.verify import verify_mlx
from models.tooling.parity import CHECK_TOKENS, ParityError, summary
from models.tooling.trocr.export import copy_side_files
from models.tooling.trocr.hf import load_pretrained
from models.tooling.trocr.images import sample_lines
from models.tooling.trocr.reference import torch_reference
from models.trocr.preprocess import Preprocessor
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


def convert(
    source: str | Path,
    models_dir: Path,
    dtype: str = "float32",
    out_dir: Path | None = None,
    check: bool = True,
) -> Path:
    """Convert SOURCE (hub id or local dir) to MLX; returns the model directory.

    The default directory is `models_dir/<name>-mlx`, beside the ONNX export of the same
    source. It is written into a temporary sibling and renamed at the end, so a failed
    conversion never leaves a half model. The manifest records the source, files with
    sha256, versions and the dtype; with `check`, parity against PyTorch on rendered
    sample lines is measured, recorded (parity.mlx) and must pass.
    """
    # mlx is optional (the `mlx` extra; Apple Silicon): imported when a conversion runs,
    # so the rest of the tooling works without it. models.mlx.model imports mlx too.
    import mlx.core as mx

    from models.mlx.model import load_model

    if dtype not in DTYPES:
        raise ModelError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    model, tokenizer = load_pretrained(source)
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    weights = convert_state_dict(state)

    source_dir = Path(source) if Path(source).is_dir() else None
    name = cache.default_name(str(source)) + MLX_SUFFIX
    final = Path(out_dir) if out_dir else cache.model_path(name, models_dir)
    with cache.staged(final) as tmp:
        arrays = {k: mx.array(v).astype(getattr(mx, dtype)) for k, v in weights.items()}
        mx.save_safetensors(str(tmp / WEIGHTS_FILE), arrays, metadata={"format": "mlx"})
        side_files = copy_side_files(source_dir, tokenizer, model, tmp)
        load_model(tmp)  # names, shapes and config agree, or this raises
        recorded = str(source_dir.resolve()) if source_dir else str(source)
        mlx_info = {"dtype": dtype, "weights": WEIGHTS_FILE, "tensors": len(arrays)}
        cache.write_manifest(tmp, cache.new_manifest(final.name, recorded, KIND, mlx=mlx_info))
        cache.add_files(tmp, [WEIGHTS_FILE, *side_files])
        if check:
            _check_parity(tmp, source, model)
    return final


def _check_parity(model_dir: Path, source: str | Path, torch_model: Any) -> None:
    """MLX vs the PyTorch model just loaded, on rendered sample lines; recorded."""
    pixel_values = Preprocessor.from_file(model_dir / "preprocessor_config.json")(sample_lines(4))
    reference = torch_reference(source, pixel_values, CHECK_TOKENS, model=torch_model)
    report = verify_mlx(model_dir, pixel_values, reference)
    cache.update_manifest(model_dir, parity={"mlx": summary(report, "4 sample lines")})
    if not report["passed"]:
        raise ParityError(f"conversion of {source}: MLX parity failed: {report['failures']}")
