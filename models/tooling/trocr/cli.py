"""`ocrq models export|quantize|verify|list` for TrOCR on ONNX Runtime (and `verify` for
MLX conversions too). Registered by models/cli.py.

`ocrq` imports this module at start-up, so the commands import models.tooling.trocr.tools
(onnxruntime, onnx's quantizer: about a second) only when they run.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from models.cache import list_models, read_manifest
from models.tooling.options import fail, models_dir_option, resolve_models_dir
from models.tooling.parity import ParityError
from ocrq.errors import OcrqError, UsageError


@click.command("export")
@click.argument("source")
@click.option("--name", default=None, help="Name in the cache (default: last part of SOURCE).")
@click.option("--no-check", is_flag=True, help="Skip the FP32 parity check against PyTorch.")
@models_dir_option
def export(source: str, name: str | None, no_check: bool, models_dir: Path | None) -> None:
    """Export a TrOCR / VisionEncoderDecoder (hub id or local directory) to ONNX."""
    from models.tooling.trocr.tools import export_model  # start-up time: see the docstring

    try:
        out = export_model(source, resolve_models_dir(models_dir), name=name, check=not no_check)
    except OcrqError as exc:
        fail(exc)
    parity = read_manifest(out).get("parity", {}).get("fp32")
    click.echo(f"exported {source} -> {out}")
    if parity:
        click.echo(
            f"fp32 parity: max |dlogit| {parity['max_abs_logit_diff']:.2e}, cosine "
            f"{parity['logit_cosine']:.8f}, greedy rows identical "
            f"{parity['greedy_rows_identical']}/{parity['inputs']}"
        )


@click.command("quantize")
@click.argument("model")
@click.option("--mode", type=click.Choice(["dynamic", "static"]), default="dynamic")
@click.option(
    "--calibration",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of text-line crops for static calibration.",
)
@click.option(
    "--reduce-range",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="7-bit weights. auto: on for x86 CPUs without VNNI, whose INT8 kernels saturate "
    "with 8-bit weights; say `on` when the model will run on such CPUs too.",
)
@models_dir_option
def quantize(
    model: str, mode: str, calibration: str | None, reduce_range: str, models_dir: Path | None
) -> None:
    """INT8-quantize a cached model (dynamic, or static calibrated on real crops)."""
    from models.tooling.trocr.tools import quantize as run  # start-up time: see the docstring

    if mode == "static" and not calibration:
        fail(UsageError("--mode static needs --calibration DIR (a folder of line crops)"))
    try:
        result = run(
            model,
            resolve_models_dir(models_dir),
            mode,
            Path(calibration) if calibration else None,
            reduce_range={"auto": None, "on": True, "off": False}[reduce_range],
        )
    except OcrqError as exc:
        fail(exc)
    agree = result["int8_vs_fp32"]
    click.echo(
        f"int8 ({mode}, per-channel, {7 if result['int8']['reduce_range'] else 8}-bit weights) "
        f"written; vs fp32 on {agree['on']}: cosine "
        f"{agree['logit_cosine']:.6f}, token agreement {agree['greedy_token_agreement']:.4f} "
        f"(teacher-forced top-1 {agree['forced_top1_agreement']:.4f}, FP32 top-1 margin "
        f"{agree['reference_top1_margin']:.3g})"
    )


def _row(name: str, r: dict) -> str:
    status = "ok" if r["passed"] else "FAIL: " + "; ".join(r["failures"])
    return (
        f"{name:<10} {r['max_abs_logit_diff']:>12.3e} {r['max_rel_logit_diff']:>10.2e} "
        f"{r['logit_cosine']:>12.8f} {r['greedy_rows_identical']:>4}/{r['inputs']:<4} "
        f"{r['greedy_token_agreement']:>9.4f}  {status}"
    )


@click.command("verify")
@click.argument("model")
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of line crops (default: rendered sample lines).",
)
@click.option(
    "--backend",
    type=click.Choice(["onnx", "mlx", "all"]),
    default=None,
    help="What to check (default: what the model is, by its manifest: an ONNX export or "
    "an MLX conversion); all: the ONNX graphs and the MLX conversion beside them.",
)
@click.option("--source", default=None, help="PyTorch model (default: the manifest's source).")
@click.option("--max-new-tokens", type=int, default=20, show_default=True)
@click.option("--limit", type=int, default=16, show_default=True, help="Max images used.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@models_dir_option
def verify(
    model: str,
    images: str | None,
    backend: str | None,
    source: str | None,
    max_new_tokens: int,
    limit: int,
    as_json: bool,
    models_dir: Path | None,
) -> None:
    """Compare PyTorch with the ONNX (FP32, INT8) and/or MLX model; exit non-zero on failure."""
    from models.tooling.trocr.tools import verify_model  # start-up time: see the docstring

    try:
        reports = verify_model(
            model,
            resolve_models_dir(models_dir),
            Path(images) if images else None,
            backend,
            source,
            max_new_tokens,
            limit,
        )
    except OcrqError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(reports, indent=2, default=str))
    else:
        click.echo(
            f"{'backend':<10} {'max|dlogit|':>12} {'rel':>10} {'cosine':>12} {'rows':>9} "
            f"{'tok.agree':>9}"
        )
        for name, report in reports.items():
            click.echo(_row(name, report))
    failed = [name for name, r in reports.items() if not r["passed"]]
    if failed:
        fail(ParityError(f"parity below thresholds: {', '.join(failed)}"))


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the full manifests as JSON.")
@models_dir_option
def list_(as_json: bool, models_dir: Path | None) -> None:
    """Models in the cache with their manifests."""
    root = resolve_models_dir(models_dir)
    found = list_models(root)
    if as_json:
        click.echo(json.dumps(dict(found), indent=2, default=str))
        return
    if not found:
        click.echo(f"no models in {root}")
        return
    for name, m in found:
        if "error" in m:
            click.echo(f"{name}: {m['error']}")
            continue
        size = sum(f.get("bytes", 0) for f in m.get("files", {}).values()) / 1e6
        int8 = m.get("quantization", {}).get("int8", {}).get("mode")
        parity = m.get("parity", {})
        checks = ", ".join(
            f"{k} {'ok' if v.get('passed') else 'FAIL'}" for k, v in sorted(parity.items())
        )
        click.echo(
            f"{name}  [{m.get('kind')}]  source={m.get('source')}  {size:.1f} MB  "
            f"int8={int8 or '-'}  parity: {checks or '-'}"
        )


list_.name = "list"
COMMANDS = [export, quantize, verify, list_]
