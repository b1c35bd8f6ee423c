"""TrOCR in MLX: a ViT/DeiT image encoder and the TrOCR text decoder.

The layers mirror Hugging Face's `VisionEncoderDecoderModel` (ViT/DeiT + `TrOCRForCausalLM`)
so converted weights load one-to-one (names: `models.tooling.mlx.convert.KEY_TABLE`). What varies
between checkpoints is read from the saved `config.json`: DeiT's extra distillation token,
learned vs sinusoidal decoder positions, the embedding scale, the embedding layernorm, the
activation, and the optional encoder-to-decoder projection.

Decoding is split so callers can cache: `encode` once per batch, `cross_kv` once per batch
(the cross-attention keys/values never change), then `decode` one step at a time with the
self-attention cache it returns.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from models.mlx.files import WEIGHTS_FILE
from ocrq.errors import ModelError

# Hugging Face activation names -> MLX functions. "gelu" is the exact (erf) GELU in both.
ACTIVATIONS = {
    "gelu": nn.gelu,
    "relu": nn.relu,
    "gelu_new": nn.gelu_approx,
    "gelu_pytorch_tanh": nn.gelu_approx,
    "silu": nn.silu,
    "swish": nn.silu,
}

KVCache = list[tuple[mx.array, mx.array]]  # per decoder layer: keys, values [B, H, T, D]


@dataclass(frozen=True)
class EncoderConfig:
    model_type: str  # "vit" | "deit" (DeiT adds a distillation token)
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    image_size: int
    patch_size: int
    num_channels: int
    layer_norm_eps: float
    activation: str
    qkv_bias: bool

    @property
    def num_prefix_tokens(self) -> int:
        return 2 if self.model_type == "deit" else 1

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    cross_attention_size: int  # width of what the decoder reads from the encoder
    activation: str
    learned_positions: bool
    scale_embedding: bool
    layernorm_embedding: bool
    max_positions: int
    pad_token_id: int


@dataclass(frozen=True)
class ModelConfig:
    encoder: EncoderConfig
    decoder: DecoderConfig
    enc_to_dec_proj: bool  # a Linear between encoder and decoder widths
    decoder_start_token_id: int
    eos_token_id: int
    pad_token_id: int


def _size(value: Any) -> int:
    # image_size/patch_size may be an int or a [h, w] pair; TrOCR uses squares.
    if isinstance(value, list | tuple):
        if value[0] != value[1]:
            raise ModelError(f"non-square image/patch size {value} is not supported")
        return int(value[0])
    return int(value)


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """Read the fields we need from a Hugging Face VisionEncoderDecoder `config.json`."""
    enc, dec = hf.get("encoder", {}), hf.get("decoder", {})
    if enc.get("model_type") not in ("vit", "deit"):
        raise ModelError(f"encoder type {enc.get('model_type')!r} is not supported (ViT/DeiT)")
    if dec.get("model_type") != "trocr":
        raise ModelError(f"decoder type {dec.get('model_type')!r} is not supported (TrOCR)")
    encoder = EncoderConfig(
        model_type=enc["model_type"],
        hidden_size=enc["hidden_size"],
        num_layers=enc["num_hidden_layers"],
        num_heads=enc["num_attention_heads"],
        intermediate_size=enc["intermediate_size"],
        image_size=_size(enc["image_size"]),
        patch_size=_size(enc["patch_size"]),
        num_channels=enc.get("num_channels", 3),
        layer_norm_eps=enc.get("layer_norm_eps", 1e-12),
        activation=enc.get("hidden_act", "gelu"),
        qkv_bias=enc.get("qkv_bias", True),
    )
    cross = dec.get("cross_attention_hidden_size")
    # Same rule as VisionEncoderDecoderModel: a projection only when the widths differ and
    # the decoder does not read the encoder width directly.
    proj = cross is None and encoder.hidden_size != dec["d_model"]
    decoder = DecoderConfig(
        vocab_size=dec["vocab_size"],
        hidden_size=dec["d_model"],
        num_layers=dec["decoder_layers"],
        num_heads=dec["decoder_attention_heads"],
        ffn_dim=dec["decoder_ffn_dim"],
        cross_attention_size=cross if cross is not None else dec["d_model"],
        activation=dec.get("activation_function", "gelu"),
        learned_positions=dec.get("use_learned_position_embeddings", True),
        scale_embedding=dec.get("scale_embedding", False),
        layernorm_embedding=dec.get("layernorm_embedding", True),
        max_positions=dec.get("max_position_embeddings", 512),
        pad_token_id=dec.get("pad_token_id", 1),
    )
    for act in (encoder.activation, decoder.activation):
        if act not in ACTIVATIONS:
            raise ModelError(f"activation {act!r} is not supported")

    def first(key: str) -> int:
        value = hf.get(key, dec.get(key))
        if value is None:
            raise ModelError(f"config.json has no {key}")
        return int(value)

    return ModelConfig(
        encoder=encoder,
        decoder=decoder,
        enc_to_dec_proj=proj,
        decoder_start_token_id=first("decoder_start_token_id"),
        eos_token_id=first("eos_token_id"),
        pad_token_id=first("pad_token_id"),
    )


class Attention(nn.Module):
    """Multi-head attention; keys/values may come from another sequence (cross-attention)."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None, bias: bool = True):
        super().__init__()
        kv_dim = kv_dim or dim
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(kv_dim, dim, bias=bias)
        self.v_proj = nn.Linear(kv_dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=True)

    def split(self, x: mx.array) -> mx.array:
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, -1).transpose(0, 2, 1, 3)

    def keys_values(self, x: mx.array) -> tuple[mx.array, mx.array]:
        return self.split(self.k_proj(x)), self.split(self.v_proj(x))

    def attend(self, x: mx.array, k: mx.array, v: mx.array, mask: str | None = None) -> mx.array:
        q = self.split(self.q_proj(x))
        o = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        b, _, t, _ = o.shape
        return self.out_proj(o.transpose(0, 2, 1, 3).reshape(b, t, -1))


class EncoderLayer(nn.Module):
    """ViT/DeiT block: layernorm before attention and MLP (pre-LN)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        d = cfg.hidden_size
        self.norm1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.attn = Attention(d, cfg.num_heads, bias=cfg.qkv_bias)
        self.norm2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(d, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, d)
        self.act = ACTIVATIONS[cfg.activation]

    def __call__(self, x: mx.array) -> mx.array:
        h = self.norm1(x)
        x = x + self.attn.attend(h, *self.attn.keys_values(h))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.hidden_size, cfg.patch_size
        # The patch convolution (stride = kernel) is one matmul over flattened patches.
        self.patch_embed = nn.Linear(cfg.num_channels * p * p, d)
        self.cls_token = mx.zeros((1, 1, d))
        if cfg.model_type == "deit":
            self.dist_token = mx.zeros((1, 1, d))
        self.pos_embed = mx.zeros((1, cfg.num_patches + cfg.num_prefix_tokens, d))
        self.layers = [EncoderLayer(cfg) for _ in range(cfg.num_layers)]
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)

    def __call__(self, pixel_values: mx.array) -> mx.array:
        b, c, h, w = pixel_values.shape
        p = self.cfg.patch_size
        if h != self.cfg.image_size or w != self.cfg.image_size:
            raise ModelError(f"input {h}x{w} does not match the model's {self.cfg.image_size}")
        # [B, C, H, W] -> [B, N, C*p*p] in (channel, row, column) order, as the conv kernel.
        patches = pixel_values.reshape(b, c, h // p, p, w // p, p)
        patches = patches.transpose(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), c * p * p)
        x = self.patch_embed(patches)
        prefix = [self.cls_token] + ([self.dist_token] if "dist_token" in self else [])
        prefix = [mx.broadcast_to(t, (b, 1, t.shape[-1])) for t in prefix]
        x = mx.concatenate([*prefix, x], axis=1) + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class DecoderLayer(nn.Module):
    """TrOCR block: residual then layernorm (post-LN) after self-, cross-attention and MLP."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        d = cfg.hidden_size
        self.self_attn = Attention(d, cfg.num_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = Attention(d, cfg.num_heads, kv_dim=cfg.cross_attention_size)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.act = ACTIVATIONS[cfg.activation]

    def __call__(
        self,
        x: mx.array,
        cross: tuple[mx.array, mx.array],
        past: tuple[mx.array, mx.array] | None,
    ) -> tuple[mx.array, tuple[mx.array, mx.array]]:
        k, v = self.self_attn.keys_values(x)
        if past is not None:
            k = mx.concatenate([past[0], k], axis=2)
            v = mx.concatenate([past[1], v], axis=2)
        # "causal" aligns the last query with the last key, so it also holds with a past.
        mask = "causal" if x.shape[1] > 1 else None
        x = self.self_attn_layer_norm(x + self.self_attn.attend(x, k, v, mask))
        x = self.encoder_attn_layer_norm(x + self.encoder_attn.attend(x, *cross))
        x = self.final_layer_norm(x + self.fc2(self.act(self.fc1(x))))
        return x, (k, v)


def sinusoidal_positions(positions: np.ndarray, dim: int, padding_idx: int) -> np.ndarray:
    """TrOCR's (fairseq/tensor2tensor) sinusoidal table rows for `positions`, in float32
    exactly as PyTorch computes them; the padding row is zero."""
    half = dim // 2
    step = math.log(10000) / (half - 1)
    freqs = np.exp(np.arange(half, dtype=np.float32) * np.float32(-step))
    angles = positions.astype(np.float32)[..., None] * freqs
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)
    if dim % 2:
        table = np.concatenate([table, np.zeros((*table.shape[:-1], 1), np.float32)], axis=-1)
    return np.where((positions == padding_idx)[..., None], np.float32(0), table)


class Decoder(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.embed_scale = math.sqrt(d) if cfg.scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(cfg.vocab_size, d)
        if cfg.learned_positions:
            # Learned positions are offset by 2 (a fairseq leftover kept by TrOCR).
            self.embed_positions = nn.Embedding(cfg.max_positions + 2, d)
        if cfg.layernorm_embedding:
            self.layernorm_embedding = nn.LayerNorm(d)
        self.layers = [DecoderLayer(cfg) for _ in range(cfg.num_layers)]
        self.output_projection = nn.Linear(d, cfg.vocab_size, bias=False)

    def positions(self, tokens: np.ndarray, offset: int, dtype: mx.Dtype) -> mx.array:
        b, t = tokens.shape
        if self.cfg.learned_positions:
            return self.embed_positions(mx.arange(offset, offset + t) + 2)[None]
        # Sinusoidal ids count non-padding tokens after the padding index, as in HF.
        pad = self.cfg.pad_token_id
        real = (tokens != pad).astype(np.int64)
        ids = (np.cumsum(real, axis=1) + offset) * real + pad
        return mx.array(sinusoidal_positions(ids, self.cfg.hidden_size, pad)).astype(dtype)

    def __call__(
        self, tokens: np.ndarray, cross: KVCache, cache: KVCache | None = None
    ) -> tuple[mx.array, KVCache]:
        offset = cache[0][0].shape[2] if cache else 0
        x = self.embed_tokens(mx.array(tokens)) * self.embed_scale
        x = x + self.positions(tokens, offset, x.dtype)
        if self.cfg.layernorm_embedding:
            x = self.layernorm_embedding(x)
        new_cache = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, cross[i], cache[i] if cache else None)
            new_cache.append(kv)
        return self.output_projection(x), new_cache


class TrOCR(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.encoder)
        if cfg.enc_to_dec_proj:
            self.enc_to_dec_proj = nn.Linear(cfg.encoder.hidden_size, cfg.decoder.hidden_size)
        self.decoder = Decoder(cfg.decoder)

    @property
    def dtype(self) -> mx.Dtype:
        return self.decoder.embed_tokens.weight.dtype

    def encode(self, pixel_values: np.ndarray) -> mx.array:
        """[B, C, H, W] normalized pixels -> encoder states [B, S, D] as the decoder reads them."""
        x = self.encoder(mx.array(pixel_values).astype(self.dtype))
        return self.enc_to_dec_proj(x) if self.cfg.enc_to_dec_proj else x

    def cross_kv(self, states: mx.array) -> KVCache:
        """Every decoder layer's cross-attention keys/values: computed once per batch."""
        return [layer.encoder_attn.keys_values(states) for layer in self.decoder.layers]

    def decode(
        self, tokens: np.ndarray, cross: KVCache, cache: KVCache | None = None
    ) -> tuple[mx.array, KVCache]:
        """Logits [B, T, V] for `tokens` [B, T] following `cache`; returns the grown cache."""
        return self.decoder(tokens, cross, cache)

    def __call__(self, pixel_values: np.ndarray, tokens: np.ndarray) -> mx.array:
        """Teacher-forced logits, as the PyTorch model's forward with decoder_input_ids."""
        return self.decode(tokens, self.cross_kv(self.encode(pixel_values)))[0]


def select_rows(kv: KVCache, rows: mx.array) -> KVCache:
    """Keep only `rows` of the batch in a cache (finished rows leave the batch)."""
    return [(k[rows], v[rows]) for k, v in kv]


def load_model(model_dir: Path) -> TrOCR:
    """Build the model from `config.json` and load `model.safetensors` (strict)."""
    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / "config.json", model_dir / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelError(f"{model_dir} is not an MLX model (config.json + {WEIGHTS_FILE})")
    cfg = config_from_hf(json.loads(config_path.read_text()))
    model = TrOCR(cfg)
    weights = mx.load(str(weights_path))
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:
        raise ModelError(f"weights in {weights_path} do not fit config.json: {exc}") from exc
    # Layers built in float32 take the dtype of the loaded weights (float16/bfloat16 too).
    model.eval()
    mx.eval(model.parameters())
    return model
