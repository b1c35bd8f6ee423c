"""Tiny random-weight TrOCR-style models, saved so `from_pretrained` loads them offline.

The hub is unreachable here, so tests (and the MLX agent) build VisionEncoderDecoder models
from configs that mirror the two public TrOCR families, at toy sizes:

- "small" (like microsoft/trocr-small-printed): DeiT encoder (CLS + distillation token),
  TrOCR decoder with learned positions and `layernorm_embedding`, relu FFN.
- "base" (like microsoft/trocr-base-printed): ViT encoder, TrOCR decoder with sinusoidal
  positions and `scale_embedding`, gelu FFN.

`full_size_trocr` builds the real sizes (random weights) for the benchmark.
Everything a `from_pretrained` needs is written: config + safetensors weights, a byte-level
BPE tokenizer trained locally, `preprocessor_config.json`, `generation_config.json`.
"""

from __future__ import annotations

from pathlib import Path

# Special ids follow the RoBERTa/TrOCR convention: <s>=0 <pad>=1 </s>=2 <unk>=3, and the
# decoder starts from </s> (TrOCR's decoder_start_token_id is 2).
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
BOS, PAD, EOS, UNK = 0, 1, 2, 3

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Invoice number 4711 dated 12 March 2024, total amount due: 1,234.56 EUR.",
    "Please return the signed form to the office before Friday.",
    "Optical character recognition turns scanned pages into text.",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789",
    "Hello world! Where is the nearest train station? It is 3 km away.",
    "Batch OCR workers read lines of printed text from many documents.",
]

# (encoder, decoder) sizes. Tiny: fast to build and export; full: the public checkpoints.
_SIZES = {
    ("small", "tiny"): dict(
        image=32, patch=8, enc_hidden=32, enc_layers=2, enc_heads=2, enc_ffn=64,
        d_model=32, dec_layers=2, dec_heads=2, dec_ffn=64, vocab=None, max_pos=64,
    ),
    ("base", "tiny"): dict(
        image=48, patch=16, enc_hidden=48, enc_layers=2, enc_heads=4, enc_ffn=96,
        d_model=64, dec_layers=2, dec_heads=4, dec_ffn=128, vocab=None, max_pos=64,
    ),
    ("small", "full"): dict(
        image=384, patch=16, enc_hidden=384, enc_layers=12, enc_heads=6, enc_ffn=1536,
        d_model=256, dec_layers=6, dec_heads=8, dec_ffn=1024, vocab=64044, max_pos=512,
    ),
    ("base", "full"): dict(
        image=384, patch=16, enc_hidden=768, enc_layers=12, enc_heads=12, enc_ffn=3072,
        d_model=1024, dec_layers=12, dec_heads=16, dec_ffn=4096, vocab=50265, max_pos=512,
    ),
}  # fmt: skip


def build_tokenizer(vocab_size: int = 300):
    """A byte-level BPE trained on a few English lines, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", BOS), ("</s>", EOS)]
    )
    assert [tok.token_to_id(s) for s in SPECIALS] == [BOS, PAD, EOS, UNK]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def build_model(kind: str = "small", encoder: str | None = None, size: str = "tiny",
                vocab_size: int = 300, seed: int = 0):  # fmt: skip
    """A random-weight VisionEncoderDecoderModel (eval mode) shaped like TrOCR `kind`."""
    import torch
    from transformers import (
        DeiTConfig,
        TrOCRConfig,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
    )

    if kind not in ("small", "base"):
        raise ValueError(f"kind must be small or base, not {kind!r}")
    encoder = encoder or ("deit" if kind == "small" else "vit")
    s = _SIZES[(kind, size)]
    enc_kwargs = dict(
        image_size=s["image"],
        patch_size=s["patch"],
        hidden_size=s["enc_hidden"],
        num_hidden_layers=s["enc_layers"],
        num_attention_heads=s["enc_heads"],
        intermediate_size=s["enc_ffn"],
        qkv_bias=True,
    )
    enc_cfg = DeiTConfig(**enc_kwargs) if encoder == "deit" else ViTConfig(**enc_kwargs)
    small = kind == "small"
    dec_cfg = TrOCRConfig(
        vocab_size=s["vocab"] or vocab_size,
        d_model=s["d_model"],
        decoder_layers=s["dec_layers"],
        decoder_attention_heads=s["dec_heads"],
        decoder_ffn_dim=s["dec_ffn"],
        max_position_embeddings=s["max_pos"],
        activation_function="relu" if small else "gelu",
        use_learned_position_embeddings=small,
        layernorm_embedding=small,
        scale_embedding=not small,
        cross_attention_hidden_size=s["enc_hidden"],
        decoder_start_token_id=EOS,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        is_decoder=True,
        add_cross_attention=True,
        # Untied head: with a tied head a random decoder just repeats its input token (the
        # start token is EOS, so every sequence would end at once). Untied keeps decoding
        # varied; real checkpoints of both kinds load either way.
        tie_word_embeddings=False,
    )
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc_cfg, dec_cfg)
    cfg.decoder_start_token_id = EOS
    cfg.eos_token_id = EOS
    cfg.pad_token_id = PAD
    cfg.tie_word_embeddings = False
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=cfg).eval()
    # Random init gives near-uniform logits; widen the output projection so argmax margins
    # are not at float-rounding level (parity tests then compare real decisions). The full
    # sizes keep the library init (benchmarks force the number of steps anyway).
    if size == "tiny":
        with torch.no_grad():
            head = model.decoder.output_projection.weight
            head.normal_(0.0, 1.0)
            # Louder cross-attention makes the tokens depend on the image, and a louder EOS
            # row makes some sequences stop early (small kind: 5-11 tokens on mixed inputs),
            # so batching and early-stop tests see rows of different lengths.
            for layer in model.decoder.model.decoder.layers:
                layer.encoder_attn.v_proj.weight.mul_(4.0)
                layer.encoder_attn.out_proj.weight.mul_(4.0)
            head[EOS].mul_(3.0)
    gen = model.generation_config
    gen.decoder_start_token_id = EOS
    gen.bos_token_id = BOS
    gen.eos_token_id = EOS
    gen.pad_token_id = PAD
    gen.max_length = None
    gen.max_new_tokens = 32
    return model


def save_processor(out_dir: Path, image_size: int, mean: float = 0.5, std: float = 0.5) -> None:
    """preprocessor_config.json as TrOCR ships it (ViT processor: resize, rescale, normalize)."""
    import json

    config = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": image_size, "width": image_size},
        "resample": 2,  # PIL bilinear, as in the TrOCR processor configs
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [mean, mean, mean],
        "image_std": [std, std, std],
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(config, indent=2))


def tiny_trocr(out_dir: Path | str, encoder: str | None = None, kind: str = "small",
               seed: int = 0, size: str = "tiny") -> Path:  # fmt: skip
    """Build and save a TrOCR-style model to `out_dir`; returns the directory.

    `encoder` is "deit" or "vit" (default: deit for small, vit for base).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(kind, encoder, size=size, vocab_size=len(tokenizer), seed=seed)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    save_processor(out_dir, model.config.encoder.image_size)
    return out_dir


def full_size_trocr(out_dir: Path | str, kind: str = "small", seed: int = 0) -> Path:
    """trocr-small-printed / trocr-base-printed shapes with random weights (benchmarks)."""
    return tiny_trocr(out_dir, kind=kind, seed=seed, size="full")


def export_tiny(models_dir: Path | str, kind: str = "small", seed: int = 0, name: str | None = None,
                check: bool = True) -> Path:  # fmt: skip
    """Build a tiny model and export it into the cache `models_dir` (as `ocrq models export`)."""
    from models.tooling.trocr.tools import export_model  # imports onnxruntime and onnx

    models_dir = Path(models_dir)
    name = name or f"tiny-{kind}-{seed}"
    source = tiny_trocr(models_dir.parent / "hf" / name, kind=kind, seed=seed)
    return export_model(str(source), models_dir, name=name, check=check)
