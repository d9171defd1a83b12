"""A fused, fixed-size-cache LVM graph for serving: lvm_static.onnx.

    python -m engine.export_static --bundle DIR [--int8]

adds `lvm_static.onnx` to an existing bundle (its weights are read from the bundle's lvm.onnx, so no checkpoint
is needed) and lists it in manifest.json under `files` and `static_kv`.

The graph is written node by node with ONNX Runtime's fused operators rather than traced, because the tracer
cannot express an attention that writes into a caller-owned buffer:
- `GroupQueryAttention` (com.microsoft) with the rotary embedding inside and the KV cache as a preallocated
  buffer `[1, kv_heads, M, head_dim]`: when the caller binds the same buffer as `past_*` input and `present_*`
  output, the new keys/values are written in place at positions `seqlens_k + 1 - T ..`, and no step copies the
  cache. Rotary positions come from `position_ids` and an `attention_bias` hides keys from queries, so several
  samples (or candidates) can extend one shared prompt inside a single sequence (engine.serving.decode.StaticCache).
- `SimplifiedLayerNormalization` / `SkipSimplifiedLayerNormalization` for RMSNorm plus the residual add.
- one packed q|k|v MatMul and one packed gate|up MatMul per layer.

Inputs: input_ids int64 [1, T], position_ids int64 [1, T], attention_bias float [1, 1, T, total],
seqlens_k int32 [1] (total - 1), total_sequence_length int32 [], past_key_<i> / past_value_<i> float
[1, kv_heads, M, head_dim]. Outputs: logits [1, T, V], present_key_<i> / present_value_<i> (same shape as past).
M, the buffer length, may reach `max_positions` (the rotary table's length): the context plus MAX_ROWS images.
Weight names follow Hugging Face `LlamaForCausalLM` (transposed to [in, out]).

Only numpy, onnx and onnxruntime are needed here: the weights come in as a name -> array mapping.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.bundle import (
    LAYER_WEIGHTS,
    PANEL_EMBEDDINGS,
    bundle_weights,
    panel_weights,
    read_manifest,
    required_weights,
    with_static_graph,
    write_manifest,
)
from engine.compact import store_matmul_weights_int8, store_weights_fp16

log = logging.getLogger(__name__)

STATIC_FILE = "lvm_static.onnx"
MAX_ROWS = 16  # samples or candidates that may share one prompt in a cache (the app asks for at most 16 samples)
OPSET = 18  # Split with num_outputs; SimplifiedLayerNormalization is ONNX Runtime's, registered in the default domain
MS_DOMAIN = "com.microsoft"


# --- weights --------------------------------------------------------------------------------------------------


def check_weights(weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> None:
    missing = [name for name in required_weights(config) if name not in weights]
    if missing:
        raise ValueError(f"weights lack {len(missing)} tensors the graph needs, e.g. {', '.join(missing[:3])}")


def rotary_tables(config: Mapping[str, Any], max_positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin (max_positions, head_dim/2), the same angles as engine.model.RotaryEmbedding (rotate-half layout)."""
    head_dim = int(config["d_model"]) // int(config["n_head"])
    exponents = np.arange(0, head_dim, 2, dtype=np.float32) / head_dim
    inv_freq = (1.0 / (float(config["rope_theta"]) ** exponents)).astype(np.float32)
    angles = np.arange(max_positions, dtype=np.float32)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


# --- the graph ------------------------------------------------------------------------------------------------


class _GraphBuilder:
    """Collects nodes and initializers; each helper returns the name of its output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def weight(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def integer(self, name: str, value: int) -> str:
        self.initializers.append(numpy_helper.from_array(np.array(value, dtype=np.int64), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], domain: str = "", **attributes: Any) -> list[str]:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=f"{op}_{len(self.nodes)}", domain=domain,
                                           **attributes))
        return outputs


def _layer(builder: _GraphBuilder, weights: Mapping[str, np.ndarray], config: Mapping[str, Any], layer: int,
           hidden: str, residual: str | None, rotary: tuple[str, str]) -> tuple[str, str]:
    """One transformer block: returns (MLP output, residual stream before it); the caller adds them."""
    prefix, eps = f"model.layers.{layer}", float(config["norm_eps"])
    n_head, n_kv_head = int(config["n_head"]), int(config["n_kv_head"])
    w = {suffix: weights[f"{prefix}.{suffix}"] for suffix in LAYER_WEIGHTS}
    in_norm = builder.weight(f"{prefix}.input_layernorm.weight", w["input_layernorm.weight"])
    if residual is None:  # first block: the residual stream is the embedding itself
        (normed,) = builder.node("SimplifiedLayerNormalization", [hidden, in_norm], [f"l{layer}_in_norm"],
                                 axis=-1, epsilon=eps)
        residual = hidden
    else:
        normed, _, _, residual = builder.node(
            "SkipSimplifiedLayerNormalization", [hidden, residual, in_norm],
            [f"l{layer}_in_norm", "", "", f"l{layer}_residual_in"], domain=MS_DOMAIN, epsilon=eps)
    qkv_weight = np.concatenate([w["self_attn.q_proj.weight"], w["self_attn.k_proj.weight"],
                                 w["self_attn.v_proj.weight"]], axis=0).T  # (C, (H + 2 KV) hd)
    qkv = builder.node("MatMul", [normed, builder.weight(f"{prefix}.self_attn.qkv_proj.weight", qkv_weight)],
                       [f"l{layer}_qkv"])[0]
    attended = builder.node(
        "GroupQueryAttention",
        [qkv, "", "", f"past_key_{layer}", f"past_value_{layer}", "seqlens_k", "total_sequence_length", *rotary,
         "position_ids", "attention_bias"],
        [f"l{layer}_attn", f"present_key_{layer}", f"present_value_{layer}"], domain=MS_DOMAIN,
        num_heads=n_head, kv_num_heads=n_kv_head, do_rotary=1, rotary_interleaved=0, local_window_size=-1,
    )[0]
    o_weight = builder.weight(f"{prefix}.self_attn.o_proj.weight", w["self_attn.o_proj.weight"].T)
    projected = builder.node("MatMul", [attended, o_weight], [f"l{layer}_o"])[0]
    post_norm = builder.weight(f"{prefix}.post_attention_layernorm.weight", w["post_attention_layernorm.weight"])
    normed, _, _, residual = builder.node(
        "SkipSimplifiedLayerNormalization", [projected, residual, post_norm],
        [f"l{layer}_post_norm", "", "", f"l{layer}_residual_mid"], domain=MS_DOMAIN, epsilon=eps)
    gate_up_weight = np.concatenate([w["mlp.gate_proj.weight"], w["mlp.up_proj.weight"]], axis=0).T  # (C, 2F)
    gate_up = builder.node("MatMul", [normed, builder.weight(f"{prefix}.mlp.gate_up_proj.weight", gate_up_weight)],
                           [f"l{layer}_gate_up"])[0]
    gate, up = builder.node("Split", [gate_up], [f"l{layer}_gate", f"l{layer}_up"], axis=-1, num_outputs=2)
    sigmoid = builder.node("Sigmoid", [gate], [f"l{layer}_sigmoid"])[0]
    silu = builder.node("Mul", [gate, sigmoid], [f"l{layer}_silu"])[0]
    activated = builder.node("Mul", [silu, up], [f"l{layer}_act"])[0]
    down = builder.weight(f"{prefix}.mlp.down_proj.weight", w["mlp.down_proj.weight"].T)
    return builder.node("MatMul", [activated, down], [f"l{layer}_mlp"])[0], residual


def _add_panel_positions(builder: _GraphBuilder, weights: Mapping[str, np.ndarray], config: Mapping[str, Any],
                         hidden: str) -> str:
    """hidden + the cell and panel-index embeddings of each position id (as engine.model.panel_cells)."""
    panel_tokens = int(config["panel_tokens"])
    last_panel = weights["model.panel_index_embed.weight"].shape[0] - 1
    one, zero = builder.integer("panel.one", 1), builder.integer("panel.zero", 0)
    size, last = builder.integer("panel.tokens", panel_tokens), builder.integer("panel.last", last_panel)
    shifted = builder.node("Sub", ["position_ids", one], ["panel_shifted"])[0]
    offset = builder.node("Max", [shifted, zero], ["panel_offset"])[0]
    cell = builder.node("Mod", [offset, size], ["panel_cell"])[0]
    index = builder.node("Min", [builder.node("Div", [offset, size], ["panel_quotient"])[0], last], ["panel_index"])[0]
    for name, ids in zip(PANEL_EMBEDDINGS, (cell, index), strict=True):
        table = builder.weight(name, weights[name])
        looked_up = builder.node("Gather", [table, ids], [f"{name}_rows"], axis=0)[0]
        hidden = builder.node("Add", [hidden, looked_up], [f"{name}_added"])[0]
    return hidden


def build_static_graph(weights: Mapping[str, np.ndarray], config: Mapping[str, Any],
                       max_positions: int | None = None) -> onnx.ModelProto:
    """The fused graph for `config` (engine.model.LVMConfig as a dict) with these weights."""
    head_dim = int(config["d_model"]) // int(config["n_head"])
    if head_dim % 16:
        raise ValueError(f"head_dim {head_dim} is not a multiple of 16, which GroupQueryAttention needs")
    check_weights(weights, config)
    n_layer, n_kv_head = int(config["n_layer"]), int(config["n_kv_head"])
    max_positions = max_positions or int(config["context_length"])
    builder = _GraphBuilder()
    cos, sin = rotary_tables(config, max_positions)
    rotary = (builder.weight("rotary.cos_cache", cos), builder.weight("rotary.sin_cache", sin))
    embed = builder.weight("model.embed_tokens.weight", weights["model.embed_tokens.weight"])
    hidden = builder.node("Gather", [embed, "input_ids"], ["embedded"], axis=0)[0]
    if panel_weights(config):
        hidden = _add_panel_positions(builder, weights, config, hidden)
    residual = None
    for layer in range(n_layer):
        hidden, residual = _layer(builder, weights, config, layer, hidden, residual, rotary)
    final_norm = builder.weight("model.norm.weight", weights["model.norm.weight"])
    normed = builder.node("SkipSimplifiedLayerNormalization", [hidden, residual, final_norm],
                          ["final_norm", "", "", ""], domain=MS_DOMAIN, epsilon=float(config["norm_eps"]))[0]
    lm_head = builder.weight("lm_head.weight", weights["lm_head.weight"].T)
    builder.node("MatMul", [normed, lm_head], ["logits"])

    cache_shape = ["batch", n_kv_head, "max_length", head_dim]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "new_length"]),
              helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "new_length"]),
              helper.make_tensor_value_info("attention_bias", TensorProto.FLOAT,
                                            ["batch", 1, "new_length", "total_length"]),
              helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch"]),
              helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, [])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "new_length",
                                                                           int(config["vocab_size"])])]
    for layer in range(n_layer):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_{kind}_{layer}", TensorProto.FLOAT, cache_shape))
            outputs.append(helper.make_tensor_value_info(f"present_{kind}_{layer}", TensorProto.FLOAT, cache_shape))
    graph = helper.make_graph(builder.nodes, "lvm_static", inputs, outputs, builder.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
                              producer_name="gelato")
    model.ir_version = 9
    return model


def buffer_positions(manifest: Mapping[str, Any]) -> int:
    """The longest cache a bundle's static graph takes: a full context, then MAX_ROWS - 1 more images."""
    return int(manifest["context_length"]) + (MAX_ROWS - 1) * int(manifest["tokens_per_image"])


def write_static_graph(weights: Mapping[str, np.ndarray], config: Mapping[str, Any], path: str | Path,
                       int8: bool = False, max_positions: int | None = None) -> Path:
    """Write lvm_static.onnx (int8: MatMul weights stored as int8 per output column, and the tables that fp16 holds
    exactly, such as the embeddings of an fp16-stored bundle, as fp16: engine.compact)."""
    path = Path(path)
    onnx.save(build_static_graph(weights, config, max_positions), str(path))
    if int8:
        store_matmul_weights_int8(path)
        store_weights_fp16(path, lossless_only=True, check=False)
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


# --- the bundle -----------------------------------------------------------------------------------------------


def add_to_bundle(bundle_dir: str | Path, int8: bool | None = None) -> Path:
    """Write lvm_static.onnx into a bundle from its own weights and record it in manifest.json.

    int8 None follows the manifest's `weights` (the precision lvm.onnx was exported in).
    """
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    int8 = manifest.get("weights") == "int8" if int8 is None else int8
    positions = buffer_positions(manifest)
    path = write_static_graph(bundle_weights(bundle_dir), manifest["lvm_config"], bundle_dir / STATIC_FILE,
                              int8=int8, max_positions=positions)
    precision = "int8" if int8 else "fp32"
    write_manifest(bundle_dir, with_static_graph(manifest, bundle_dir, STATIC_FILE, positions, precision))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.export_static", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="bundle directory written by engine.export")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--int8", dest="int8", action="store_true", default=None, help="int8 MatMul weights")
    precision.add_argument("--fp32", dest="int8", action="store_false", help="fp32 weights")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    add_to_bundle(args.bundle, int8=args.int8)


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.export_static")
