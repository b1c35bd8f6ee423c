"""The PyTorch reference every backend is checked against (ONNX in .verify, MLX in
models.tooling.mlx.verify).

`torch_reference` runs the real transformers model: `generate` (greedy) for the tokens,
then one teacher-forced forward over the greedy prefix for the logits, so a backend can be
compared both on logits (same inputs) and on free-running decisions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.tooling.parity import trim
from models.tooling.trocr.hf import load_pretrained


def torch_reference(
    source_dir: Path | str,
    pixel_values: np.ndarray,
    max_new_tokens: int,
    model: Any = None,
) -> dict[str, Any]:
    """PyTorch outputs for `pixel_values` [B, 3, H, W] float32.

    Returns:
      "decoder_input_ids": int64 [B, T]: the decoder start token followed by the greedy
          tokens except the last (rows that stopped early are padded with pad_token_id);
      "logits": float32 [B, T, V]: teacher-forced on decoder_input_ids, so
          logits[b, t].argmax() is greedy token t of row b (up to its EOS);
      "greedy_tokens": list of lists: per row, the generated ids (start token excluded) up
          to and including EOS, no padding;
      "max_new_tokens": int.
    `source_dir` is a hub id or a directory `from_pretrained` reads; pass `model` (a loaded
    VisionEncoderDecoderModel) to skip loading.
    """
    # The `export` extra, seconds to import: only where a reference is computed.
    import torch
    from transformers import GenerationConfig

    if model is None:
        model, _ = load_pretrained(source_dir)

    pv = torch.from_numpy(np.ascontiguousarray(pixel_values, dtype=np.float32))
    gen = model.generation_config
    dec = model.config.decoder
    eos = gen.eos_token_id if gen.eos_token_id is not None else dec.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    pad = gen.pad_token_id if gen.pad_token_id is not None else eos
    start = gen.decoder_start_token_id
    if start is None:
        start = model.config.decoder_start_token_id or dec.decoder_start_token_id
    # Plain greedy, whatever the checkpoint's generation config asks for (beams,
    # no_repeat_ngram_size, length penalties): that is the decision rule every backend
    # implements and is compared on.
    plain = GenerationConfig(
        decoder_start_token_id=start,
        bos_token_id=gen.bos_token_id,
        eos_token_id=eos,
        pad_token_id=pad,
        max_new_tokens=max_new_tokens,
        num_beams=1,
        do_sample=False,
    )
    # Swapped in rather than passed: transformers 5 fills fields left at their defaults in
    # a passed config from the model's own generation config.
    saved, model.generation_config = model.generation_config, plain
    try:
        with torch.no_grad():
            seqs = model.generate(pixel_values=pv)
            ids = seqs[:, :-1]
            logits = model(pixel_values=pv, decoder_input_ids=ids).logits
    finally:
        model.generation_config = saved
    return {
        "decoder_input_ids": ids.numpy().astype(np.int64),
        "logits": logits.float().numpy(),
        "greedy_tokens": [trim(row[1:].tolist(), eos, pad) for row in seqs],
        "max_new_tokens": int(max_new_tokens),
    }
