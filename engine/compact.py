"""fp16 storage for ONNX weights: half the bytes on disk, fp32 arithmetic at run time.

Each large fp32 initializer is stored as fp16 and followed by a Cast back to fp32 at the head of the
graph; ONNX Runtime folds those casts when it builds the session, so serving runs exactly the fp32
graph on fp16-rounded weights (a relative change of at most 2**-11 per weight).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MIN_ELEMENTS = 1024  # small tensors (norm weights, constants) stay fp32: no saving worth a node


def store_weights_fp16(path: Path, lossless_only: bool = False) -> tuple[int, int]:
    """Rewrite the model at `path` in place with fp16-stored weights; returns (bytes before, bytes after).

    `lossless_only` converts only tensors that fp16 holds exactly (weights trained or saved in fp16), so the
    model computes bit for bit what it did before; tensors derived at export time stay fp32.
    """
    before = path.stat().st_size
    model = onnx.load(str(path))
    graph = model.graph
    casts, kept = [], []
    for initializer in graph.initializer:
        if initializer.data_type != TensorProto.FLOAT or np.prod(initializer.dims) < MIN_ELEMENTS:
            kept.append(initializer)
            continue
        weights = numpy_helper.to_array(initializer)
        if lossless_only and not np.array_equal(weights.astype(np.float16).astype(np.float32), weights):
            kept.append(initializer)
            continue
        half_name = f"{initializer.name}__fp16"
        kept.append(numpy_helper.from_array(weights.astype(np.float16), half_name))
        casts.append(helper.make_node("Cast", [half_name], [initializer.name], to=TensorProto.FLOAT,
                                      name=f"{initializer.name}__to_fp32"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*casts, *nodes])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return before, path.stat().st_size
