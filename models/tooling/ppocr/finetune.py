"""Fine-tune the shipped PP-OCR recognizer to read at a lower input height.

The recognizer's work grows with the square of its input height (rows, and at the same
aspect, columns): at 32 px it does 0.45x the multiply-adds of 48 px, but read there
untrained it loses letters (docs/speed.md). Here its own graph, run by torch
(`onnx_module`), learns that height: CTC on rendered lines (`lines`, true text) mixed
with real scan crops read by the 48 px recognizer (`harvest`, the teacher's text), its
head cut to the Latin classes ocrq decodes. The result is the same graph with new
weights, its `character` list narrowed to match and its height in the metadata
(`ocrq_input_height`), which `models.ppocr.engine` reads.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
import torch.nn.functional as F

from models.ppocr.head import narrow_classifier
from models.ppocr.recognizer import (
    HEIGHT_METADATA,
    WIDTH_SCALE_METADATA,
    WIDTH_STEP,
    RecognizerConfig,
    allowed_classes,
    build_batch,
    charset_from_metadata,
    ctc_greedy_decode,
    resized_width,
)
from models.tooling.ppocr.onnx_module import OnnxModule, free_height
from ocrq.scoring import cer_counts


@dataclass(frozen=True)
class FinetuneOptions:
    height: int = 32
    # Width scales drawn per batch: the student learns a range, the engine picks one.
    # 32 px at the engine's 48 px width scale (0.85) leaves too few CTC steps for narrow
    # letters (the untrained graph: 7.1 % CER on held-out scan lines at 0.85, 3.2 % at
    # 1.0), so the student learns around 1.0 and says so in its metadata.
    width_scales: tuple[float, float] = (0.95, 1.1)
    batch_size: int = 24
    # 2e-4 made held-out lines worse after 260 steps (batches of 24 are noisy)
    lr: float = 5e-5
    warmup_steps: int = 100
    minutes: float = 50.0  # wall-clock budget; the schedule decays over it
    real_share: float = 0.3  # share of each batch from teacher-labelled scan crops
    max_width: int = 1024  # input columns; longer lines are skipped
    threads: int = 2
    seed: int = 0
    # Distil instead: the student, fed each crop at `height` rows and the columns the
    # teacher reads it at (48 px, 0.85), has the teacher's CTC steps one for one and
    # learns its per-step distributions (KL); no text is needed. width_scales unused.
    distill: bool = False

    @property
    def width_scale(self) -> float:
        """The width scale the engine runs the result at (written to its metadata)."""
        if self.distill:
            teacher = RecognizerConfig()
            return round(teacher.width_scale * teacher.height / self.height, 3)
        return round(sum(self.width_scales) / 2, 3)


def narrowed_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The graph with its head cut to the Latin classes and its `character` metadata to
    match (blank first and space last stay implicit, as PP-OCR writes them)."""
    meta = {p.key: p.value for p in model.metadata_props}
    charset = charset_from_metadata(meta["character"])
    keep = allowed_classes(charset, "latin")
    out = free_height(model)
    if keep is None:
        return out, charset
    if charset[keep[-1]] != " " or keep[0] != 0:
        raise ValueError("expected blank first and space last among the kept classes")
    if not narrow_classifier(out, keep, len(charset)):
        raise ValueError("the recognizer's head is not MatMul + Add + Softmax")
    # The exporter's shape notes after the head name its 18,710 columns: say the kept
    # count (kept, not dropped: the opset converter needs the ranks to leave Softmax be).
    for info in out.graph.value_info:
        dims = info.type.tensor_type.shape.dim
        if dims and dims[-1].dim_value == len(charset):
            dims[-1].dim_value = len(keep)
    kept = [charset[i] for i in keep]
    _set_meta(out, "character", "\n".join(kept[1:-1]))
    return out, kept


def _set_meta(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)


def encode(text: str, index: dict[str, int]) -> list[int] | None:
    """Class indices of `text`, or None when a character is not in the charset."""
    out = [index.get(c) for c in text]
    return None if any(i is None for i in out) else out  # type: ignore[return-value]


def _ctc_fits(labels: Sequence[int], steps: int) -> bool:
    repeats = sum(1 for a, b in zip(labels, labels[1:], strict=False) if a == b)
    return len(labels) > 0 and len(labels) + repeats <= steps


Sample = tuple[np.ndarray, str]


def batches(
    synthetic: Iterator[Sample],
    real: Sequence[Sample],
    index: dict[str, int],
    opts: FinetuneOptions,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(inputs, targets, input lengths, target lengths), as the engine would feed them."""
    rng = random.Random(opts.seed)
    while True:
        cfg = RecognizerConfig(
            height=opts.height,
            width_scale=rng.uniform(*opts.width_scales),
            max_width=opts.max_width,
        )
        crops: list[np.ndarray] = []
        labels: list[list[int]] = []
        widths: list[int] = []
        while len(crops) < opts.batch_size:
            crop, text = (
                rng.choice(real) if real and rng.random() < opts.real_share else next(synthetic)
            )
            ids = encode(text, index)
            width = resized_width(crop.shape[0], crop.shape[1], cfg)
            if (
                ids is None
                or width >= opts.max_width
                or not _ctc_fits(ids, math.ceil(width / WIDTH_STEP))
            ):
                continue
            crops.append(crop)
            labels.append(ids)
            widths.append(width)
        x = torch.from_numpy(build_batch(crops, widths, cfg))
        targets = torch.tensor([i for ids in labels for i in ids], dtype=torch.long)
        steps = torch.tensor([math.ceil(w / WIDTH_STEP) for w in widths], dtype=torch.long)
        lengths = torch.tensor([len(ids) for ids in labels], dtype=torch.long)
        yield x, targets, steps, lengths


def distill_batches(
    synthetic: Iterator[Sample], real: Sequence[Sample], opts: FinetuneOptions
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(student inputs, teacher inputs, steps per crop): the same crops at the student's
    height and the teacher's, both as wide as the teacher reads them."""
    rng = random.Random(opts.seed)
    teacher = RecognizerConfig(max_width=opts.max_width)
    student = RecognizerConfig(height=opts.height, max_width=opts.max_width)
    while True:
        crops: list[np.ndarray] = []
        widths: list[int] = []
        while len(crops) < opts.batch_size:
            use_real = real and rng.random() < opts.real_share
            crop, _ = rng.choice(real) if use_real else next(synthetic)
            width = resized_width(crop.shape[0], crop.shape[1], teacher)
            if width < opts.max_width:
                crops.append(crop)
                widths.append(width)
        steps = torch.tensor([math.ceil(w / WIDTH_STEP) for w in widths], dtype=torch.long)
        yield (
            torch.from_numpy(build_batch(crops, widths, student)),
            torch.from_numpy(build_batch(crops, widths, teacher)),
            steps,
        )


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Mean KL(teacher || student) over the crops' own steps (padding steps left out);
    both are N x T x C logits."""
    with torch.no_grad():
        target = F.softmax(teacher, dim=-1)
    kl = (target * (torch.log(target.clamp_min(1e-8)) - F.log_softmax(student, -1))).sum(-1)
    mask = torch.arange(kl.shape[1])[None, :] < steps[:, None]
    return kl[mask].mean()


def optimizer_step(opt: torch.optim.Optimizer, params: list, loss: torch.Tensor) -> float:
    """One update, gradients clipped to norm 5 (batches of a few dozen lines are noisy)."""
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 5.0)
    opt.step()
    return float(loss.detach())


def cer(
    module: OnnxModule, samples: Sequence[Sample], charset: Sequence[str], cfg: RecognizerConfig
) -> float:
    """Character error rate of best-path reading over `samples`, one crop per run."""
    errors = total = 0
    module.eval()
    with torch.no_grad():
        for crop, text in samples:
            width = resized_width(crop.shape[0], crop.shape[1], cfg)
            probs = module(torch.from_numpy(build_batch([crop], [width], cfg))).numpy()
            (read,) = ctc_greedy_decode(probs, charset, [math.ceil(width / WIDTH_STEP)])
            dist, n = cer_counts(read.text, text)
            errors, total = errors + dist, total + n
    module.train()
    return errors / max(total, 1)


def train(
    model: onnx.ModelProto,
    synthetic: Iterator[Sample],
    real: Sequence[Sample],
    held_out: Sequence[Sample],
    opts: FinetuneOptions,
    out: Path,
    log: Callable[[str], None] = print,
    checkpoint_minutes: float = 10.0,
) -> onnx.ModelProto:
    """Train the narrowed graph for `opts.minutes`; write `out` (and checkpoints beside
    it) with the trained weights and the height in its metadata."""
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    narrowed, charset = narrowed_model(model)
    index = {c: i for i, c in enumerate(charset) if i > 0}
    module = OnnxModule(narrowed, logits=True)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=1e-4)
    eval_cfg = RecognizerConfig(height=opts.height, width_scale=opts.width_scale)
    log(f"held-out CER at {opts.height} px before: {cer(module, held_out, charset, eval_cfg):.4f}")
    start = last_ckpt = time.monotonic()
    budget = opts.minutes * 60
    step = 0
    losses: list[float] = []
    teacher = OnnxModule(narrowed, logits=True).eval() if opts.distill else None
    source = (
        distill_batches(synthetic, real, opts)
        if opts.distill
        else batches(synthetic, real, index, opts)
    )
    for batch in source:
        elapsed = time.monotonic() - start
        if elapsed >= budget:
            break
        warm = min(1.0, (step + 1) / opts.warmup_steps)
        for group in opt.param_groups:
            group["lr"] = opts.lr * warm * 0.5 * (1 + math.cos(math.pi * elapsed / budget))
        if teacher is not None:
            x, x_teacher, steps = batch
            with torch.no_grad():
                taught = teacher(x_teacher)
            loss = distill_loss(module(x), taught, steps)
        else:
            x, targets, steps, lengths = batch
            logp = F.log_softmax(module(x), dim=-1).permute(1, 0, 2)  # T, N, C
            loss = F.ctc_loss(logp, targets, steps, lengths, blank=0, zero_infinity=True)
        losses.append(optimizer_step(opt, params, loss))
        step += 1
        if step % 50 == 0:
            log(f"step {step} {elapsed / 60:.1f} min loss {np.mean(losses[-50:]):.3f}")
        if time.monotonic() - last_ckpt > checkpoint_minutes * 60:
            last_ckpt = time.monotonic()
            save(module, narrowed, opts, out.with_suffix(f".step{step}.onnx"))
            log(f"held-out CER step {step}: {cer(module, held_out, charset, eval_cfg):.4f}")
    log(
        f"held-out CER at {opts.height} px after {step} steps: {cer(module, held_out, charset, eval_cfg):.4f}"
    )
    return save(module, narrowed, opts, out)


def save(
    module: OnnxModule, narrowed: onnx.ModelProto, opts: FinetuneOptions, path: Path
) -> onnx.ModelProto:
    trained = module.write_back(narrowed)
    _set_meta(trained, HEIGHT_METADATA, str(opts.height))
    _set_meta(trained, WIDTH_SCALE_METADATA, str(opts.width_scale))
    _set_meta(trained, "ocrq_finetune", json.dumps(asdict(opts)))
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(trained, str(path))
    return trained


def load_crop(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
