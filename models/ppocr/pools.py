"""Let the detector read a large input in bands of rows, with the page's pool statistics.

The detector's peak memory is its activations, in proportion to the input's area: a
2000-px page (1984x1536) took a loaded engine from ~170 MB to 680-900 MB, mostly 96-channel
maps at 1/4 scale in the FPN neck. Reading the input in bands of rows bounds that, but
the network has 13 global-average pools (squeeze-excitation gates in the backbone and
neck) whose means, taken over a band, are not the page's: 256-row bands alone took a
UNLV page from 1.6 to 16 % CER.

So each pool's output becomes `computed * keep + given` (`expose_pools`), and its
computed mean is also a graph output. With keep = 1 and given = 0 the graph is the
original, exactly (x * 1 + 0 == x), and reports the page's means; that is how every
ordinary pass runs, the coarse probe included. A large fine pass then runs band by band
with keep = 0 and the probe's means as given: the same gates for every band, taken over
the whole page at the probe's scale. Measured side by side (scripts/eval_engine.py, one
core, FP32, AMD EPYC with AVX2, 2026-11-30; 256-row bands with 64 rows of context on each
side, inputs over 1.2 Mpx): tesseract_test 1.32 -> 1.13 % CER, book pages 1.14 -> 1.19 %,
receipts and lines unchanged (their passes stay under the threshold); a loaded engine
reading a UNLV page peaked at 370 MB instead of 684 MB, a book page at 345 instead of
571; the banded pass took 0.99-1.07x the whole one's time (the halo's extra rows are
paid back by smaller working sets). With the probe's means but no bands the CER moved
the same way, so the means, not the band edges, make the difference.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

KEEP = "pools.keep"  # 1: use the pools' own means; 0: use the given ones


def given_name(index: int) -> str:
    return f"pools.{index}.given"


def mean_name(index: int) -> str:
    return f"pools.{index}.mean"


def _is_page_pool(node: onnx.NodeProto) -> bool:
    """A mean over the whole feature map (H and W), keeping dims: what an SE gate reads."""
    if node.op_type == "GlobalAveragePool":
        return True
    if node.op_type != "ReduceMean":
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return sorted(attrs.get("axes", [])) == [2, 3] and attrs.get("keepdims", 1) == 1


def expose_pools(model: onnx.ModelProto) -> bool:
    """Rewire every page-wide pool as the module says, in place; False if there is none."""
    graph = model.graph
    pools = [n for n in graph.node if _is_page_pool(n) and len(n.input) == 1]
    if not pools:
        return False
    added = []
    for i, node in enumerate(pools):
        gated = node.output[0]
        node.output[0] = mean_name(i)
        kept = f"pools.{i}.kept"
        added.append(helper.make_node("Mul", [mean_name(i), KEEP], [kept], name=f"pools.{i}.keep"))
        added.append(
            helper.make_node("Add", [kept, given_name(i)], [gated], name=f"pools.{i}.give")
        )
        graph.input.append(
            helper.make_tensor_value_info(given_name(i), TensorProto.FLOAT, [1, None, 1, 1])
        )
        graph.output.append(helper.make_tensor_value_info(mean_name(i), TensorProto.FLOAT, None))
    graph.input.append(helper.make_tensor_value_info(KEEP, TensorProto.FLOAT, [1]))
    # Nodes must stay in topological order: each pair goes right after its pool.
    position = {id(n): k for k, n in enumerate(pools)}
    nodes = []
    for node in graph.node:
        nodes.append(node)
        if id(node) in position:
            k = position[id(node)]
            nodes.extend(added[2 * k : 2 * k + 2])
    del graph.node[:]
    graph.node.extend(nodes)
    return True


def pool_count(input_names: list[str]) -> int:
    return sum(1 for name in input_names if name.startswith("pools.") and name.endswith(".given"))


def own_means_feed(count: int) -> dict[str, np.ndarray]:
    """Feed for an ordinary pass: every pool uses its own mean (nothing for a graph
    whose pools are not exposed)."""
    if not count:
        return {}
    zero = np.zeros((1, 1, 1, 1), dtype=np.float32)
    return {KEEP: np.ones(1, dtype=np.float32), **{given_name(i): zero for i in range(count)}}


def given_means_feed(means: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Feed for a band: every pool uses the page's mean from an earlier pass."""
    return {KEEP: np.zeros(1, dtype=np.float32), **{given_name(i): m for i, m in enumerate(means)}}


def bands(rows: int, band: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(read_from, read_to, keep_from, keep_to) row spans covering `rows`: each band reads
    `halo` rows of context on either side (within the input) and keeps its own `band`
    rows. Spans are multiples of 32 where the input allows, so every band sees the
    network's stride grid as the whole input does."""
    band, halo = max(32, band // 32 * 32), max(0, halo // 32 * 32)
    spans = []
    for start in range(0, rows, band):
        stop = min(rows, start + band)
        spans.append((max(0, start - halo), min(rows, stop + halo), start, stop))
    return spans
