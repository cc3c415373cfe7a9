"""onnxruntime's transformer fusions on the dynamo exporter's graph, by onnxscript's own rewriter
(`onnxscript.rewriter.ort_fusions`): each layer's attention becomes one `MultiHeadAttention` (com.microsoft) and the
erf GELU after its bias one `BiasGelu`. Measured on MiniLM-L6 (bench/int8_settings.py): the fused int8 graph is the
fast one, because the fusion keeps the Q, K and V projections as MatMuls that the int8 quantizer turns into integer
matmuls (onnxscript's packed `Attention` fusion keeps them fp32: onnxruntime's quantizer skips an Attention with
`qkv_hidden_sizes`).

Residual + LayerNormalization pairs are left unfused, and onnxruntime's own `SkipLayerNormFusion` is disabled in the
sessions that run the graph (DISABLED_OPTIMIZERS): onnxruntime 1.32's SkipLayerNormalization CPU kernel took 3.0 ms
where Add + LayerNormalization took 0.7 ms on a (32, 48, 384) batch, one thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)  # onnxruntime session fusions that make the CPU graph slower


def _fusions() -> list[tuple[str, Callable[..., int]]]:
    """onnxscript's fusion passes, in the order its optimize_for_ort applies them, less the packed Attention and
    SkipLayerNormalization (see the module docstring)."""
    from onnxscript.rewriter.ort_fusions.bias_gelu import fuse_bias_gelu
    from onnxscript.rewriter.ort_fusions.erfgelu import fuse_erfgelu
    from onnxscript.rewriter.ort_fusions.mha import fuse_mha1, fuse_mha2
    from onnxscript.rewriter.ort_fusions.mha_bias import fuse_mha_bias
    from onnxscript.rewriter.ort_fusions.sdpa import fuse_sdpa

    return [
        ("erf_gelu", fuse_erfgelu),
        ("sdpa", lambda model: fuse_sdpa(model, apply_shape_inference=True)),
        ("mha1", fuse_mha1),
        ("mha2", fuse_mha2),
        ("mha_bias", fuse_mha_bias),
        ("bias_gelu", fuse_bias_gelu),
    ]


def fuse_graph(model: Any) -> dict[str, int]:
    """Fuse an onnx_ir model in place; returns how many of each fusion applied."""
    import onnx_ir.passes.common as common_passes
    from onnxscript.optimizer import optimize
    from onnxscript.rewriter import rewrite
    from onnxscript.rewriter.ort_fusions import ORT_PATTERN_REWRITE_RULES
    from onnxscript.rewriter.ort_fusions import shape_optimization

    common_passes.ShapeInferencePass()(model)  # optimize_for_ort's own preparation: shapes, folding, shape rules
    optimize(model)
    shape_optimization.rules.apply_to_model(model)
    optimize(model)
    counts = {name: fuse(model) for name, fuse in _fusions()}
    optimize(model)  # inlines what a fusion left unused
    rewrite(model, ORT_PATTERN_REWRITE_RULES)  # FusedMatMul and friends
    return counts


INTERNAL_DOMAIN = "ai.onnxruntime._fusion"  # onnxscript's intermediate ops (SDPA, ...): no runtime runs them


def unfinished(model: Any) -> set[str]:
    """The intermediate ops a fusion left behind without completing (e.g. SDPA when a head-pruned model's layers have
    different head counts and no MultiHeadAttention could be formed): a graph holding any cannot be loaded."""
    from onnx_ir.traversal import RecursiveGraphIterator

    return {node.op_type for node in RecursiveGraphIterator(model.graph) if node.domain == INTERNAL_DOMAIN}


def fuse_for_ort(path: Path) -> dict[str, int]:
    """Replace the graph at `path` by its fused version (weights kept beside it when the exporter wrote them there);
    returns how many of each fusion applied. A graph the fusions could not finish is left as exported (empty counts)."""
    import onnx_ir as ir

    data = path.with_name(path.name + ".data")
    model = ir.load(str(path))
    counts = fuse_graph(model)
    if unfinished(model):
        return {}
    ir.save(model, str(path), external_data=data.name if data.exists() else None)  # onnx_ir replaces `data` atomically
    return counts
