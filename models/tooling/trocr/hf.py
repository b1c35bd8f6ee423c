"""Loading a Hugging Face VisionEncoderDecoder (TrOCR) the real `from_pretrained` way.

SOURCE is a hub id or a local directory. Every failure to fetch becomes a one-line
`ModelError` (the hub is often unreachable: offline machines, `HF_HUB_OFFLINE=1`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrq.errors import ModelError


def _offline_hint(source: str, exc: Exception) -> ModelError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelError(
        f"cannot fetch model {source!r} from the Hugging Face hub (offline or unreachable: "
        f"{reason}). Download it on a connected machine (`huggingface-cli download {source} "
        f"--local-dir DIR`) and pass the directory instead."
    )


def load_pretrained(source: str | Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from a hub id or a local directory."""
    # torch and transformers are the `export` extra and take seconds to import: only the
    # commands that load a checkpoint import them. torch first, to fail clearly without it.
    import torch  # noqa: F401
    from transformers import AutoTokenizer, VisionEncoderDecoderModel
    from transformers.utils import logging as hf_logging

    # the per-tensor "Loading weights" bar is noise in a CLI that prints its own report
    hf_logging.disable_progress_bar()
    src = str(source)
    local = Path(src).is_dir()
    if not local and (src.startswith((".", "/", "~")) or Path(src).exists()):
        raise ModelError(f"model directory not found: {src}")
    try:
        model = VisionEncoderDecoderModel.from_pretrained(src)
        tokenizer = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError) as exc:
        # huggingface_hub raises OSError subclasses (LocalEntryNotFoundError, offline mode,
        # connection errors) and transformers wraps them in OSError with its own message.
        if local:
            raise ModelError(f"cannot load model from {src}: {exc}") from exc
        raise _offline_hint(src, exc) from exc
    fix_sinusoidal_positions(model)
    return model.eval(), tokenizer


def fix_sinusoidal_positions(model: Any) -> None:
    """Recompute TrOCR's sinusoidal position table if loading left it on the meta device.

    transformers 5.x builds modules on `meta` inside `from_pretrained`; the sinusoidal table
    is a plain attribute (neither parameter nor buffer), so it is never materialized and
    the first forward fails ("Cannot copy out of meta tensor"). The table is deterministic,
    so rebuilding it is exact.
    """
    # transformers: the `export` extra, imported where it is used (as in `load_pretrained`)
    from transformers.models.trocr.modeling_trocr import TrOCRSinusoidalPositionalEmbedding

    for module in model.modules():
        if isinstance(module, TrOCRSinusoidalPositionalEmbedding):
            w = module.weights
            if w is None or w.is_meta:
                n = w.shape[0] if w is not None else 1026
                module.weights = module.get_embedding(n, module.embedding_dim, module.padding_idx)
