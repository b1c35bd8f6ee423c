"""`ocrq models convert-mlx`: registered by models/cli.py. MLX, torch and transformers are
imported only when the command runs."""

from __future__ import annotations

from pathlib import Path

import click

from ocrq.config import default_models_dir

DTYPE_CHOICES = ("float32", "float16", "bfloat16")  # models.mlx.convert.DTYPES, without mlx


@click.command("convert-mlx")
@click.argument("source")
@click.option(
    "--dtype",
    type=click.Choice(DTYPE_CHOICES),
    default="float32",
    show_default=True,
    help="Weight dtype. Half precision is for Apple GPUs; on x86 CPUs it is many times slower.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory (default: MODELS_DIR/<name>-mlx).",
)
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="OCRQ_MODELS",
    default=default_models_dir,
    show_default="~/.cache/ocrq/models",
    help="Model cache (env OCRQ_MODELS).",
)
@click.option("--no-check", is_flag=True, help="Skip the parity check against PyTorch.")
def convert_mlx(
    source: str, dtype: str, out_dir: Path | None, models_dir: Path, no_check: bool
) -> None:
    """Convert a Hugging Face TrOCR (hub id or local directory) to MLX weights.

    Writes model.safetensors, config.json, tokenizer and processor files and a manifest;
    unless --no-check, PyTorch and MLX are compared on rendered sample lines and the
    figures recorded (the conversion fails if they are outside the thresholds).
    """
    from models import cache
    from models.mlx.convert import convert

    path = convert(source, models_dir, dtype=dtype, out_dir=out_dir, check=not no_check)
    click.echo(f"converted {source} -> {path} ({dtype})")
    parity = cache.read_manifest(path).get("parity", {}).get("mlx")
    if parity:
        click.echo(
            f"parity vs PyTorch: max logit diff {parity['max_abs_logit_diff']:.2e} "
            f"(relative {parity['max_rel_logit_diff']:.2e}), cosine {parity['logit_cosine']:.7f}, "
            f"greedy rows identical {parity['greedy_rows_identical']}/{parity['inputs']}"
        )
    click.echo(f"run it with: --engine trocr-mlx --model {path.name if not out_dir else path}")


COMMANDS = [convert_mlx]
