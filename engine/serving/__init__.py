"""The serving path: what the app needs to answer with a bundle, on ONNX Runtime and numpy alone (never torch, onnx
or the puzzle generators; tests/test_runtime.py checks it).

runtime (Bundle: load, encode, complete, score), decode (the sampling loop over the KV cache), sentences (images
and codes in one token sequence), batching (concurrent requests sharing one run), priority (the model's threads
yield the CPU to lighter requests). Writing bundles (export, engine.compact's weight storage) needs onnx and stays
in engine/.
"""
