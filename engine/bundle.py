"""The model bundle's format, in one place: where bundles live, the manifest, the file checks, and reading the
LVM's weights back out of a bundle's graphs.

A bundle is a directory: manifest.json plus encoder.onnx, decoder.onnx and lvm.onnx (and lvm_static.onnx when
engine.export_static added it; reader.onnx and reasoner.onnx, named by `"matrix_path"`, when `engine.attribute_probe
export` added a matrix path, engine/serving/matrix_path.py; sequence_reader.onnx and sequence_reasoner.onnx, named by
`"sequence_path"`, when `engine.sequence_probe export` added a sequence path, engine/serving/sequence_path.py);
engine.export.build_manifest lists the fields.
engine.export writes bundles, engine.serving.runtime serves them, app/health.py checks them at start-up, training
and the benchmark read their weights back; all of them ask this module. Serving imports it, so it needs neither
torch nor onnx: the weight read-back imports onnx when it is called.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.serving.sentences import Vocabulary

if TYPE_CHECKING:
    import onnx

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_FILES = ("encoder.onnx", "decoder.onnx", "lvm.onnx")
REQUIRED_KEYS = (
    "format_version", "name", "image_size", "token_grid", "tokens_per_image", "codebook_size", "vocab_size",
    "code_range", "special_tokens", "context_length", "kv_cache", "files",
)
BUNDLE_ENV = "GELATO_BUNDLE"
SHIPPED_BUNDLE_DIR = Path(__file__).resolve().parent / "bundles" / "default"  # ships with the code
# LVM weights by their LlamaForCausalLM names
LAYER_WEIGHTS = (
    "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
    "self_attn.o_proj.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
    "mlp.down_proj.weight",
)
PANEL_EMBEDDINGS = ("model.panel_cell_embed.weight", "model.panel_index_embed.weight")
EMBEDDINGS = ("model.embed_tokens.weight", *PANEL_EMBEDDINGS)  # (rows, width) tables, not transposed products



class BundleError(ValueError):
    """A bundle that cannot be served: missing, corrupt or inconsistent files."""


def default_bundle_dir() -> Path:
    """The shipped bundle, unless the GELATO_BUNDLE environment variable names another directory."""
    override = os.environ.get(BUNDLE_ENV)
    return Path(override) if override else SHIPPED_BUNDLE_DIR


# --- manifest and file checks ---------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """A file's manifest entry: its sha256 and size, checked at load."""
    return {"sha256": sha256_file(path), "bytes": Path(path).stat().st_size}


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Parse manifest.json and check that it has every key the runtime needs."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: manifest.json is missing (is {directory} a model bundle?)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BundleError(f"{path}: manifest.json is not valid JSON ({error})") from error
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BundleError(f"{path}: manifest.json lacks {', '.join(missing)}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise BundleError(f"{path}: format_version {manifest['format_version']} is not supported ({FORMAT_VERSION})")
    check_vocabulary(path, manifest)
    return manifest


def check_vocabulary(path: Path, manifest: dict[str, Any]) -> None:
    """Token ids must follow engine.serving.sentences: codes 0..K-1, then BOS and EOS (the rule training used)."""
    vocab = Vocabulary(int(manifest["codebook_size"]), int(manifest["tokens_per_image"]))
    expected = {"code_range": [0, vocab.codebook_size], "special_tokens": {"bos": vocab.bos, "eos": vocab.eos}}
    for key, value in expected.items():
        if manifest[key] != value:
            raise BundleError(f"{path}: {key} {manifest[key]} does not match the sentence vocabulary ({value})")
    if int(manifest["vocab_size"]) < vocab.eos + 1:
        raise BundleError(f"{path}: vocab_size {manifest['vocab_size']} is smaller than the codes plus BOS/EOS")


def write_manifest(directory: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Write manifest.json (indented, so a diff of two bundles reads well)."""
    path = Path(directory) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def update_manifest(directory: str | Path, **fields: Any) -> dict[str, Any]:
    """Set top-level fields of a bundle's manifest (metrics, sampling, ...); the files and checksums stay."""
    manifest = {**read_manifest(directory), **fields}
    write_manifest(directory, manifest)
    return manifest


def with_static_graph(manifest: Mapping[str, Any], directory: Path, name: str, max_positions: int,
                      weights: str) -> dict[str, Any]:
    """The manifest listing `name` (engine.export_static's fixed-cache graph, in `directory`) as the one to serve."""
    return {**manifest, "files": {**manifest["files"], name: file_entry(Path(directory) / name)},
            "static_kv": {"file": name, "max_positions": max_positions, "weights": weights}}


def verify_bundle(directory: str | Path) -> dict[str, Any]:
    """The manifest of a bundle whose every file is present and matches its size and sha256; BundleError if not."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"{directory}: bundle directory does not exist")
    manifest = read_manifest(directory)
    verify_files(directory, manifest)
    return manifest


def verify_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Every file listed must exist with the listed size and sha256; the three graphs must be listed."""
    files = manifest["files"]
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleError(f"{directory}: manifest does not list {name}")
    for name, entry in files.items():
        if Path(name).name != name:
            raise BundleError(f"{directory}: manifest file name {name!r} must be a plain file name")
        path = Path(directory) / name
        if not path.is_file():
            raise BundleError(f"{path}: file listed in the manifest is missing")
        if path.stat().st_size != entry["bytes"]:
            raise BundleError(f"{path}: size {path.stat().st_size} bytes, manifest says {entry['bytes']}")
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(f"{path}: sha256 does not match the manifest (file corrupt or replaced)")


def static_graph_file(manifest: dict[str, Any]) -> str | None:
    """The fixed-cache graph the manifest lists under `static_kv` (engine.export_static), or None."""
    entry = manifest.get("static_kv")
    if not entry:
        return None
    name = entry.get("file") if isinstance(entry, dict) else None
    if not name or name not in manifest["files"]:
        raise BundleError(f"manifest static_kv names {name!r}, which its files do not list")
    return name


# --- the LVM's weights back out of a graph (lvm.onnx or lvm_static.onnx) ---------------------------------


def panel_weights(config: Mapping[str, Any]) -> list[str]:
    """The panel-position embeddings (engine.model.LVMConfig.panel_tokens) the config asks for, if any."""
    return list(PANEL_EMBEDDINGS) if int(config.get("panel_tokens", 0)) else []


def required_weights(config: Mapping[str, Any]) -> list[str]:
    """Every weight the graph needs, by its LlamaForCausalLM name (plus the panel embeddings when used)."""
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", *panel_weights(config)]
    for layer in range(int(config["n_layer"])):
        names += [f"model.layers.{layer}.{suffix}" for suffix in LAYER_WEIGHTS]
    return names


def _dequantized(initializers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Replace (X_quantized, X_scale, X_zero_point) triples (engine.compact's int8 storage) by float X."""
    result = {name: array for name, array in initializers.items()
              if not name.endswith(("_quantized", "_scale", "_zero_point"))}
    for name, array in initializers.items():
        if name.endswith("_quantized"):
            base = name[: -len("_quantized")]
            scale, zero = initializers[f"{base}_scale"], initializers.get(f"{base}_zero_point", 0)
            result[base] = ((array.astype(np.float32) - np.float32(zero)) * scale).astype(np.float32)
    return result


def stored_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Float initializers by name, with fp16-stored ones (engine.compact: X__fp16 -> Cast -> X) back as fp32."""
    from onnx import numpy_helper

    stored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.input[0] in stored and node.input[0].endswith("__fp16"):
            stored[node.output[0]] = stored.pop(node.input[0]).astype(np.float32)
    return _dequantized(stored)


def weights_from_static_graph(path: str | Path) -> dict[str, np.ndarray]:
    """The LlamaForCausalLM state (float, [out, in] Linear layout) stored in an lvm_static.onnx."""
    import onnx

    model = onnx.load(str(path))
    stored = stored_weights(model)
    weights: dict[str, np.ndarray] = {}
    for name, array in stored.items():
        if name.startswith(("rotary.", "panel.")):
            continue
        if name.endswith("qkv_proj.weight"):
            prefix = name[: -len("qkv_proj.weight")]
            q_out = array.shape[0]  # q has d_model outputs (n_head * head_dim == d_model)
            q, kv = array[:, :q_out], array[:, q_out:]
            k, v = np.split(kv, 2, axis=1)
            weights.update({f"{prefix}q_proj.weight": q.T, f"{prefix}k_proj.weight": k.T,
                            f"{prefix}v_proj.weight": v.T})
        elif name.endswith("gate_up_proj.weight"):
            prefix = name[: -len("gate_up_proj.weight")]
            gate, up = np.split(array, 2, axis=1)
            weights.update({f"{prefix}gate_proj.weight": gate.T, f"{prefix}up_proj.weight": up.T})
        elif array.ndim == 2 and name not in EMBEDDINGS:
            weights[name] = array.T
        else:
            weights[name] = array
    return {name: np.ascontiguousarray(array) for name, array in weights.items()}


def weights_from_traced_graph(path: str | Path, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The state stored in engine.export's lvm.onnx. The tracer keeps the names of the embedding and the norms
    but renames the (transposed) Linear weights, so those are taken in graph order: per layer q, k, v, o, gate,
    up, down, then lm_head, each checked against its expected shape."""
    import onnx

    model = onnx.load(str(path))
    stored = stored_weights(model)
    embedding = [name for name in stored if name.endswith("embed_tokens.weight")]
    if not embedding:
        raise ValueError(f"{path}: no embed_tokens initializer; re-export the bundle")
    weights: dict[str, np.ndarray] = {"model.embed_tokens.weight": stored[embedding[0]]}
    for name in panel_weights(config):
        found = [stored_name for stored_name in stored if stored_name.endswith(name)]
        if len(found) != 1:
            raise ValueError(f"{path}: expected one {name} initializer, found {len(found)}; re-export the bundle")
        weights[name] = stored[found[0]]
    norm_names = [name for name in required_weights(config) if name.endswith("norm.weight")]
    norm_names.append(norm_names.pop(0))  # model.norm comes last in the graph
    norms = _norm_weights(model, stored, int(config["d_model"]))
    if len(norms) != len(norm_names):
        raise ValueError(f"{path}: found {len(norms)} norm weights, expected {len(norm_names)}; re-export the bundle")
    weights.update(zip(norm_names, norms, strict=True))
    linear = [name for name in required_weights(config) if name not in weights and name != "lm_head.weight"]
    linear.append("lm_head.weight")  # the last product of the graph
    matrices = _matmul_weights(model, stored)
    if len(matrices) != len(linear):
        raise ValueError(f"{path}: found {len(matrices)} weight matrices, expected {len(linear)}; re-export the bundle")
    shapes = _linear_shapes(config)
    for name, array in zip(linear, matrices, strict=True):
        out_width, in_width = shapes[name.rsplit(".", 2)[-2]]
        array = array.T  # a product's right-hand side is (in, out); torch keeps (out, in)
        if array.shape != (out_width, in_width):
            raise ValueError(f"{path}: weight for {name} has shape {array.shape}, expected {(out_width, in_width)}")
        weights[name] = array
    return {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in weights.items()}


def _matmul_weights(model: onnx.ModelProto, stored: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Constant right-hand sides of the matrix products as (in, out), in graph order."""
    matrices = []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "MatMulInteger", "DynamicQuantizeMatMul", "Gemm") and len(node.input) > 1:
            name = node.input[1].removesuffix("_quantized")
            if name in stored and stored[name].ndim == 2:
                matrix = stored[name]
                matrices.append(matrix.T if node.op_type == "Gemm" and _attribute(node, "transB") else matrix)
    return matrices


def _norm_weights(model: onnx.ModelProto, stored: dict[str, np.ndarray], width: int) -> list[np.ndarray]:
    """RMSNorm gains in graph order: the constant (width,) factor of a Mul (equal gains may share one tensor)."""
    gains = []
    for node in model.graph.node:
        if node.op_type == "Mul":
            constant = [stored[name] for name in node.input if name in stored and stored[name].shape == (width,)]
            gains += constant[:1]
    return gains


def _attribute(node: onnx.NodeProto, name: str) -> int:
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), 0)


def _linear_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """(out, in) of every Linear, keyed by its module name."""
    d_model, ffn, vocab = int(config["d_model"]), int(config["ffn_hidden"]), int(config["vocab_size"])
    kv_width = int(config["n_kv_head"]) * (d_model // int(config["n_head"]))
    return {"q_proj": (d_model, d_model), "k_proj": (kv_width, d_model), "v_proj": (kv_width, d_model),
            "o_proj": (d_model, d_model), "gate_proj": (ffn, d_model), "up_proj": (ffn, d_model),
            "down_proj": (d_model, ffn), "lm_head": (vocab, d_model)}


def bundle_weights(bundle_dir: str | Path) -> dict[str, np.ndarray]:
    """Float weights of a bundle's LVM as exported (lvm.onnx), never the int8 serving graph's rounded ones."""
    return weights_from_traced_graph(Path(bundle_dir) / "lvm.onnx", read_manifest(bundle_dir)["lvm_config"])
