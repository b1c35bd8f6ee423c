"""HF VisionEncoderDecoder (TrOCR) -> two ONNX graphs with a KV cache.

- `encoder.onnx`: pixel_values [B,3,H,W] -> cross_k_i, cross_v_i [B,heads,S,head_dim] for
  every decoder layer i: the cross-attention keys/values are computed once per batch
  (they depend only on the image), not once per decode step.
- `decoder.onnx`: input_ids [B,T], past_k_i, past_v_i [B,heads,P,head_dim], cross_k_i,
  cross_v_i -> logits [B,T,V], present_k_i, present_v_i [B,heads,P+T,head_dim].
  A zero-length past is the first step.

The TorchScript exporter (`dynamo=False`, opset 18) is used: with transformers 5.x its
graphs ran 20-40 % faster than the dynamo exporter's and it takes plain `dynamic_axes`
(see DESIGN.md). The decoder is traced through the real TrOCR modules, with the K/V fed
in through an `EncoderDecoderCache` whose cross layers are marked already computed.

torch and transformers (the `export` extra, seconds to import) are imported by the
functions that use them, so `ocrq models quantize` and `list` work without them.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from models.tooling.trocr.graph import drop_single_input_concats, fuse_encoder_attention
from models.trocr.files import DECODER, ENCODER
from ocrq.errors import ModelError

OPSET = 18


@dataclass(frozen=True)
class DecoderShape:
    layers: int
    heads: int
    head_dim: int
    vocab: int
    image_size: int

    @classmethod
    def of(cls, model: Any) -> DecoderShape:
        dec = model.config.decoder
        enc = model.config.encoder
        size = enc.image_size if isinstance(enc.image_size, int) else enc.image_size[0]
        return cls(
            layers=dec.decoder_layers,
            heads=dec.decoder_attention_heads,
            head_dim=dec.d_model // dec.decoder_attention_heads,
            vocab=dec.vocab_size,
            image_size=size,
        )


def past_names(layers: int) -> list[str]:
    return [f"past_{kv}_{i}" for i in range(layers) for kv in ("k", "v")]


def present_names(layers: int) -> list[str]:
    return [f"present_{kv}_{i}" for i in range(layers) for kv in ("k", "v")]


def cross_names(layers: int) -> list[str]:
    return [f"cross_{kv}_{i}" for i in range(layers) for kv in ("k", "v")]


def _decoder_layers(model: Any) -> Any:
    return model.decoder.model.decoder.layers


def encoder_module(model: Any) -> Any:
    import torch  # lazy, as the module docstring says

    class EncoderWithCrossKV(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model.encoder
            self.proj = getattr(model, "enc_to_dec_proj", None)
            self.layers = _decoder_layers(model)

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
            hidden = self.encoder(pixel_values=pixel_values, return_dict=True).last_hidden_state
            if self.proj is not None:  # as VisionEncoderDecoderModel.forward does
                hidden = self.proj(hidden)
            batch = hidden.shape[0]
            out = []
            for layer in self.layers:
                attn = layer.encoder_attn
                # the same projection and head split TrOCRAttention does for cross-attention
                k = attn.k_proj(hidden).view(batch, -1, attn.num_heads, attn.head_dim)
                v = attn.v_proj(hidden).view(batch, -1, attn.num_heads, attn.head_dim)
                out += [k.transpose(1, 2), v.transpose(1, 2)]
            return tuple(out)

    return EncoderWithCrossKV().eval()


def decoder_module(model: Any) -> Any:
    # lazy, as the module docstring says
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    n = DecoderShape.of(model).layers

    class DecoderStep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = model.decoder

        def forward(self, input_ids: torch.Tensor, *kv: torch.Tensor) -> tuple[torch.Tensor, ...]:
            past, cross = kv[: 2 * n], kv[2 * n :]
            self_cache = DynamicCache([(past[2 * i], past[2 * i + 1]) for i in range(n)])
            cross_cache = DynamicCache([(cross[2 * i], cross[2 * i + 1]) for i in range(n)])
            cache = EncoderDecoderCache(self_cache, cross_cache)
            for i in range(n):
                cache.is_updated[i] = True  # cross K/V are given: never recomputed
            out = self.decoder(
                input_ids=input_ids,
                # only its presence matters: it switches cross-attention on, and the K/V
                # then come from the cache
                encoder_hidden_states=cross[0],
                past_key_values=cache,
                use_cache=True,
                return_dict=True,
            )
            present = []
            for layer in out.past_key_values.self_attention_cache.layers:
                present += [layer.keys, layer.values]
            return (out.logits, *present)

    return DecoderStep().eval()


def export_onnx(model: Any, out_dir: Path, opset: int = OPSET) -> list[str]:
    """Write encoder.onnx and decoder.onnx; returns their file names."""
    import torch  # lazy, as the module docstring says

    shape = DecoderShape.of(model)
    n = shape.layers
    out_dir.mkdir(parents=True, exist_ok=True)

    pixel_values = torch.randn(2, 3, shape.image_size, shape.image_size)
    enc = encoder_module(model)
    cross_out = cross_names(n)
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python-level shape check in transformers; the parity
        # check after export is what tells whether the trace generalizes.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        cross = enc(pixel_values)
        torch.onnx.export(
            enc,
            (pixel_values,),
            str(out_dir / ENCODER),
            input_names=["pixel_values"],
            output_names=cross_out,
            dynamic_axes={"pixel_values": {0: "batch"}, **{k: {0: "batch"} for k in cross_out}},
            opset_version=opset,
            dynamo=False,
        )
        _rewrite(out_dir / ENCODER, encoder_heads=_encoder_heads(model))
        # Trace with T=2 and a non-empty past so neither the causal mask nor the position
        # offset can be specialized away (both stay dynamic in the graph).
        ids = torch.tensor([[5, 6], [7, 8]], dtype=torch.long)
        past = [
            torch.randn(2, shape.heads, 3, shape.head_dim) for _ in range(2 * n)
        ]  # fmt: skip
        dec = decoder_module(model)
        inputs = ["input_ids", *past_names(n), *cross_out]
        outputs = ["logits", *present_names(n)]
        axes: dict[str, dict[int, str]] = {"input_ids": {0: "batch", 1: "seq"}}
        axes.update({k: {0: "batch", 2: "past"} for k in past_names(n)})
        axes.update({k: {0: "batch"} for k in cross_out})
        axes["logits"] = {0: "batch", 1: "seq"}
        axes.update({k: {0: "batch", 2: "total"} for k in present_names(n)})
        torch.onnx.export(
            dec,
            (ids, *past, *cross),
            str(out_dir / DECODER),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
        _rewrite(out_dir / DECODER)
    return [ENCODER, DECODER]


def _encoder_heads(model: Any) -> int:
    return int(model.config.encoder.num_attention_heads)


def _rewrite(path: Path, encoder_heads: int | None = None) -> None:
    """The exact clean-ups of models.tooling.trocr.graph, in place. Only nodes change: a model
    over 2 GB keeps its weights in the external data files the exporter wrote."""
    graph = onnx.load(str(path), load_external_data=False)
    changed = drop_single_input_concats(graph)
    if encoder_heads is not None:
        changed += fuse_encoder_attention(graph, encoder_heads)
    if changed:
        onnx.save(graph, str(path))


def copy_side_files(
    source_dir: Path | None, tokenizer: Any, model: Any, out_dir: Path
) -> list[str]:
    """Tokenizer, processor and generation config beside the graphs (what the engine reads)."""
    from transformers import GenerationConfig  # lazy, as the module docstring says

    tokenizer.save_pretrained(out_dir)
    model.config.save_pretrained(out_dir)
    gen = model.generation_config or GenerationConfig.from_model_config(model.config)
    gen.save_pretrained(out_dir)
    pre = out_dir / "preprocessor_config.json"
    if source_dir is not None and (source_dir / "preprocessor_config.json").is_file():
        shutil.copyfile(source_dir / "preprocessor_config.json", pre)
    else:
        from transformers import AutoImageProcessor  # lazy, as the module docstring says

        try:
            AutoImageProcessor.from_pretrained(str(model.name_or_path)).save_pretrained(out_dir)
        except (OSError, ValueError) as exc:
            raise ModelError(f"no image processor config for {model.name_or_path}: {exc}") from exc
    return sorted(p.name for p in out_dir.iterdir() if p.suffix in (".json", ".txt", ".model"))
