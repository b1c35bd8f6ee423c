"""`ocrq models convert-mlx`: registered by models/cli.py.

`ocrq` imports this module at start-up, so the command imports the converter (and through
it onnxruntime, torch, transformers and mlx) only when it runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from models import cache
from models.tooling.options import fail, models_dir_option, resolve_models_dir
from ocrq.errors import OcrqError

# models.tooling.mlx.convert.DTYPES, repeated here so `ocrq --help` imports no converter
DTYPE_CHOICES = ("float32", "float16", "bfloat16")


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
@models_dir_option
@click.option("--no-check", is_flag=True, help="Skip the parity check against PyTorch.")
def convert_mlx(
    source: str, dtype: str, out_dir: Path | None, models_dir: Path | None, no_check: bool
) -> None:
    """Convert a Hugging Face TrOCR (hub id or local directory) to MLX weights.

    Writes model.safetensors, config.json, tokenizer and processor files and a manifest;
    unless --no-check, PyTorch and MLX are compared on rendered sample lines and the
    figures recorded (the conversion fails if they are outside the thresholds).
    """
    from models.tooling.mlx.convert import convert  # start-up time: see the docstring

    root = resolve_models_dir(models_dir)
    try:
        path = convert(source, root, dtype=dtype, out_dir=out_dir, check=not no_check)
    except OcrqError as exc:
        fail(exc)
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
