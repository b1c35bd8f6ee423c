"""Prune the hidden channels of the recognizer's 1x1 feed-forward pairs, measure what it
costs and buys (issue #31; docs/speed.md, "Pruning the recognizer's feed-forward
layers").

    python scripts/prune_ffn.py CROPS_DIR --keep 0.5 --out /tmp/p50.onnx \
        [--distill-minutes 35 --distilled /tmp/p50d.onnx]

The shipped recognizer (head narrowed to the Latin classes) is ~80 % pairs of 1x1
convolutions with a GELU between them (C -> 2C -> C). Each pair keeps `--keep` of its
hidden channels (those whose mean square times outgoing weight norm is largest); the
second convolution and its bias are then refitted by least squares so the pair's output
matches the shipped graph's on real line crops (PNG files under CROPS_DIR, e.g. from
`models.tooling.ppocr.harvest` over scans outside ../shared/eval), pair after pair, each
fed what the pruned graph before it computes. No gradient is needed; `--distill-minutes`
then trains the pruned graph toward the shipped one's per-step distributions (KL).

Prints the disagreement with the shipped graph (share of CTC steps whose best class
differs, on held-out crops) and the network's speed against the shipped graph's, FP32
and INT8, one core, interleaved crop by crop. The pruned graph runs in the engine with
`ocrq run --model OUT`.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from models.ppocr import resources  # noqa: E402
from models.ppocr.quantize import ensure_int8  # noqa: E402
from models.ppocr.recognizer import (  # noqa: E402
    WIDTH_STEP,
    RecognizerConfig,
    build_batch,
    resized_width,
)
from models.tooling.ppocr.finetune import (  # noqa: E402
    distill_loss,
    narrowed_model,
    optimizer_step,
)
from models.tooling.ppocr.onnx_module import OnnxModule  # noqa: E402

ELEMENTWISE = {"Add", "Mul", "Div", "Erf", "Identity", "Sub", "Sigmoid", "Relu", "Pow", "Tanh"}
POOLS = {"ReduceMean", "GlobalAveragePool", "AveragePool"}


def _pointwise(node, inits) -> bool:
    if node.op_type != "Conv" or node.input[1] not in inits:
        return False
    group = [a.i for a in node.attribute if a.name == "group"]
    return list(inits[node.input[1]].dims[2:]) == [1, 1] and (not group or group[0] == 1)


def _source_conv(b, producers, inits):
    """The 1x1 Conv feeding `b` through elementwise nodes only (the GELU), or None."""
    t, chain = b.input[0], 0
    while t in producers:
        node = producers[t]
        if node.op_type == "Conv":
            return node if chain and _pointwise(node, inits) else None
        if node.op_type not in ELEMENTWISE:
            return None
        chain += 1
        t = next(i for i in node.input if i not in inits)
    return None


def _pooled(tensor: str, producers) -> bool:
    """Whether `tensor` is a pooled map (squeeze-excitation: 1x1, nothing to gain)."""
    node = producers.get(tensor)
    while node is not None and node.op_type == "Identity":
        node = producers.get(node.input[0])
    return node is not None and node.op_type in POOLS


def _between(a, b, consumers) -> list | None:
    """Every node fed by `a` up to `b`, if all are elementwise."""
    seen: dict[str, onnx.NodeProto] = {}
    stack = [a.output[0]]
    while stack:
        for node in consumers[stack.pop()]:
            if node is b or node.name in seen:
                continue
            if node.op_type not in ELEMENTWISE:
                return None
            seen[node.name] = node
            stack.extend(node.output)
    return list(seen.values())


def ffn_pairs(model: onnx.ModelProto) -> list[dict]:
    """1x1 Conv -> elementwise -> 1x1 Conv -> bias Add, on full feature maps."""
    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers = defaultdict(list)
    for node in model.graph.node:
        for i in node.input:
            consumers[i].append(node)
    pairs = []
    for b in model.graph.node:
        a = _source_conv(b, producers, inits) if _pointwise(b, inits) else None
        if a is None or _pooled(a.input[0], producers):
            continue
        hidden = inits[a.input[1]].dims[0]
        nodes = _between(a, b, consumers)
        after = consumers[b.output[0]]
        if nodes is None or inits[b.input[1]].dims[1] != hidden or len(after) != 1:
            continue
        consts = {i for n in nodes for i in n.input if i in inits and np.prod(inits[i].dims) > 1}
        bias = [i for i in after[0].input if i in inits]
        if after[0].op_type != "Add" or len(bias) != 1:
            continue
        if any(list(inits[c].dims) != [1, hidden, 1, 1] for c in consts):
            continue
        pairs.append(
            {
                "a": a,
                "b": b,
                "consts": sorted(consts),
                "bias": bias[0],
                "hidden": hidden,
                "target": after[0].output[0],
                "tensors": {o for n in nodes for o in n.output} | {a.output[0]},
            }
        )
    return pairs


def _captured(module: OnnxModule, x: torch.Tensor, name: str) -> torch.Tensor:
    env = dict(module.consts)
    env.update({n: module.params[k] for n, k in module.names.items()})
    env[module.graph.input[0].name] = x
    for fn, inputs, outputs, attrs in module.steps:
        env[outputs[0]] = fn(*[env[i] if i else None for i in inputs], a=attrs)
        if outputs[0] == name:
            return env[name]
    raise KeyError(name)


def _set(module: OnnxModule, name: str, value: torch.Tensor) -> None:
    key = module.names[name]
    module.params[key] = torch.nn.Parameter(value.contiguous(), requires_grad=True)


def _batches(crops, cfg: RecognizerConfig, size: int = 8):
    widths = [resized_width(c.shape[0], c.shape[1], cfg) for c in crops]
    order = sorted(range(len(crops)), key=lambda i: widths[i])
    for k in range(0, len(order), size):
        idx = order[k : k + size]
        yield torch.from_numpy(build_batch([crops[i] for i in idx], [widths[i] for i in idx], cfg))


def prune(student: OnnxModule, teacher: OnnxModule, pairs, keep: float, crops) -> None:
    """Keep `keep` of each pair's hidden channels and refit its second Conv (in place)."""
    batches = list(_batches(crops, RecognizerConfig()))
    rng = np.random.default_rng(0)
    for p in pairs:
        a, b, h = p["a"], p["b"], p["hidden"]
        k = int(round(h * keep))
        gram = cross = None
        for x in batches:
            with torch.no_grad():
                hid = _captured(student, x, b.input[0])
                out = _captured(teacher, x, p["target"])
            hs = hid.permute(0, 2, 3, 1).reshape(-1, h).double().numpy()
            ys = out.permute(0, 2, 3, 1).reshape(-1, out.shape[1]).double().numpy()
            sel = rng.choice(len(hs), min(len(hs), 3000), replace=False)
            h1 = np.hstack([hs[sel], np.ones((len(sel), 1))])
            gram = h1.T @ h1 if gram is None else gram + h1.T @ h1
            cross = h1.T @ ys[sel] if cross is None else cross + h1.T @ ys[sel]
        w2 = student.params[student.names[b.input[1]]].detach().double().numpy()[:, :, 0, 0]
        kept = np.sort(np.argsort(-(np.diag(gram)[:h] * (w2**2).sum(0)))[:k])
        rows = np.append(kept, h)
        sub = gram[np.ix_(rows, rows)]
        solved = np.linalg.solve(
            sub + 1e-4 * np.trace(sub) / len(rows) * np.eye(len(rows)), cross[rows]
        )
        index = torch.from_numpy(kept)
        _set(student, a.input[1], student.params[student.names[a.input[1]]].detach()[index])
        for name in p["consts"]:
            _set(student, name, student.params[student.names[name]].detach()[:, index])
        weight = torch.from_numpy(solved[:k].T.astype(np.float32))[:, :, None, None]
        _set(student, b.input[1], weight)
        _set(
            student, p["bias"], torch.from_numpy(solved[k].astype(np.float32)).reshape(1, -1, 1, 1)
        )
        print(f"{a.name} -> {b.name}: {h} -> {k} hidden channels", flush=True)


def pruned_graph(model: onnx.ModelProto, student: OnnxModule, pairs) -> onnx.ModelProto:
    out = student.write_back(model)
    width = {}
    for p in pairs:
        k = int(student.params[student.names[p["a"].input[1]]].shape[0])
        width.update(dict.fromkeys(p["tensors"] | {p["b"].input[0]}, k))
    for info in out.graph.value_info:  # shape notes the quantizer's opset pass reads
        dims = info.type.tensor_type.shape.dim
        if info.name in width and len(dims) == 4:
            dims[1].Clear()
            dims[1].dim_value = width[info.name]
    return out


def disagreement(student: OnnxModule, teacher: OnnxModule, crops) -> float:
    """Share of CTC steps whose best class differs from the shipped graph's."""
    cfg, diff, total = RecognizerConfig(), 0, 0
    with torch.no_grad():
        for c in crops:
            w = resized_width(c.shape[0], c.shape[1], cfg)
            x = torch.from_numpy(build_batch([c], [w], cfg))
            n = math.ceil(w / WIDTH_STEP)
            s, t = student(x).argmax(-1)[0, :n], teacher(x).argmax(-1)[0, :n]
            diff, total = diff + int((s != t).sum()), total + n
    return diff / max(total, 1)


def distill(student, teacher, pool, minutes: float, lr: float = 1e-4) -> None:
    """Per-step KL toward the shipped graph, same 48-px inputs, cosine over `minutes`."""
    cfg, rng = RecognizerConfig(), random.Random(1)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    start, step, losses = time.monotonic(), 0, []
    while (elapsed := time.monotonic() - start) < minutes * 60:
        crops = [c for c in rng.sample(pool, 16)]
        widths = [min(resized_width(c.shape[0], c.shape[1], cfg), 1024) for c in crops]
        x = torch.from_numpy(build_batch(crops, widths, cfg))
        steps = torch.tensor([math.ceil(w / WIDTH_STEP) for w in widths])
        for g in opt.param_groups:
            g["lr"] = (
                lr
                * min(1.0, (step + 1) / 30)
                * 0.5
                * (1 + math.cos(math.pi * elapsed / (minutes * 60)))
            )
        with torch.no_grad():
            target = teacher(x)
        losses.append(optimizer_step(opt, params, distill_loss(student(x), target, steps)))
        step += 1
        if step % 50 == 0:
            print(f"step {step} {elapsed / 60:.1f} min KL {np.mean(losses[-50:]):.4f}", flush=True)


def network_speed(graphs: dict[str, Path], crops, rounds: int = 3) -> None:
    """Seconds per graph over the crops, one thread, graphs interleaved crop by crop."""
    cfg = RecognizerConfig()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sessions = {
        k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        for k, p in graphs.items()
    }
    xs = [build_batch([c], [resized_width(c.shape[0], c.shape[1], cfg)], cfg) for c in crops]
    took = dict.fromkeys(sessions, 0.0)
    for _ in range(rounds):
        for x in xs:
            for k, s in sessions.items():
                t = time.perf_counter()
                s.run(None, {s.get_inputs()[0].name: x})
                took[k] += time.perf_counter() - t
    for k, t in took.items():
        ref = took["shipped-int8" if k.endswith("int8") else "shipped"]
        print(f"{k}: {t:.2f} s, {ref / t:.2f}x the shipped graph's speed")


def load_crops(folder: Path, seed: int = 0) -> list[np.ndarray]:
    files = sorted(folder.glob("*.png"))
    random.Random(seed).shuffle(files)
    images = (cv2.imread(str(f)) for f in files)
    return [
        cv2.cvtColor(i, cv2.COLOR_BGR2RGB)
        for i in images
        if i is not None and min(i.shape[:2]) >= 8
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crops", type=Path, help="folder of line crops (PNG)")
    ap.add_argument("--keep", type=float, default=0.5, help="share of hidden channels kept")
    ap.add_argument("--calibration", type=int, default=400, help="crops the refit sees")
    ap.add_argument("--held-out", type=int, default=150)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--distill-minutes", type=float, default=0.0)
    ap.add_argument("--distilled", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, _ = narrowed_model(onnx.load(str(resources.model_path(resources.REC_FILE))))
    crops = load_crops(args.crops)
    held, rest = crops[: args.held_out], crops[args.held_out :]
    teacher = OnnxModule(model, logits=True).eval()
    student = OnnxModule(model, logits=True).eval()
    pairs = ffn_pairs(model)
    prune(student, teacher, pairs, args.keep, rest[: args.calibration])
    onnx.save(pruned_graph(model, student, pairs), str(args.out))
    print(f"held-out steps disagreeing: {disagreement(student, teacher, held):.4f}")
    graphs = {"shipped": args.out.with_name("shipped.onnx"), args.out.stem: args.out}
    onnx.save(model, str(graphs["shipped"]))
    if args.distill_minutes > 0:
        distill(student.train(), teacher, rest, args.distill_minutes)
        student.eval()
        print(f"held-out steps disagreeing, distilled: {disagreement(student, teacher, held):.4f}")
        out = args.distilled or args.out.with_suffix(".distilled.onnx")
        onnx.save(pruned_graph(model, student, pairs), str(out))
        graphs[out.stem] = out
    cache = args.out.parent / "int8-cache"
    graphs.update({f"{k}-int8": ensure_int8("rec", p, cache) for k, p in list(graphs.items())})
    network_speed(graphs, held[:100])


if __name__ == "__main__":
    main()
