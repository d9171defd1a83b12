"""What the trainers of the bundle's small paths share (engine.attribute_probe for matrices, engine.sequence_probe
for sequences, engine.analogy_probe for analogies): training for a budget of CPU-minutes with held-out checks, their
graphs' export into a bundle, and their commands' common arguments."""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Checks:
    """Held-out checks during training: every `every` CPU-minutes and at the end, `measure(minutes, steps)` is
    printed and appended to OUT/log.jsonl, and `save(path)` keeps the weights at OUT/model.pt."""

    out: Path
    every: float
    measure: Callable[[float, int], dict[str, Any]]
    save: Callable[[Path], None]


def train_for_cpu_minutes(model: Any, optimizer: Any, minutes: float, loss: Callable[[float], Any],
                          lr: Callable[[int, float], float], clip: float | None = None,
                          checks: Checks | None = None) -> list[dict[str, Any]]:
    """Step `optimizer` on `loss(minutes used)` until `minutes` CPU-minutes of process time are spent (so runs
    sharing a machine get equal compute), the learning rate `lr(step, minutes used)` and gradients clipped to norm
    `clip`; returns the checks' records."""
    import torch

    records: list[dict[str, Any]] = []
    started, step, next_check = time.process_time(), 0, 0.0
    if checks is not None:
        checks.out.mkdir(parents=True, exist_ok=True)
    while True:
        used = (time.process_time() - started) / 60
        if checks is not None and (used >= next_check or used >= minutes):
            record = checks.measure(used, step)
            records.append(record)
            checks.save(checks.out / "model.pt")
            with (checks.out / "log.jsonl").open("a") as log:
                log.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
            next_check += checks.every
        if used >= minutes:
            return records
        value = loss(used)
        for group in optimizer.param_groups:
            group["lr"] = lr(step, used)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        step += 1


def fit_reader(reader: Any, images: Any, loss: Callable[[Any, Any], Any], minutes: float, seed: int) -> Any:
    """Fit a reader on (N, 3, 32, 32) uint8 pictures for `minutes` CPU-minutes: batches of 128 drawn with `seed`,
    bf16 autocast, AdamW at 2e-3 on a cosine; `loss(outputs, batch indices)`. Returns it in eval mode."""
    import math

    import numpy as np
    import torch

    optimizer = torch.optim.AdamW(reader.parameters(), lr=2e-3, weight_decay=0.01)
    rng = np.random.default_rng(seed)

    def batch_loss(used: float) -> Any:
        batch = torch.from_numpy(rng.integers(len(images), size=128))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = reader(images[batch].float() / 255.0)
        return loss(outputs.float(), batch)

    train_for_cpu_minutes(reader, optimizer, minutes, batch_loss,
                          lambda step, used: 2e-3 * 0.5 * (1 + math.cos(math.pi * used / minutes)))
    return reader.eval()


@dataclass
class PathGraph:
    """One graph of a path: the module, an example input, the graph's names and which axes vary, and how its
    weights are stored ("fp16" for a convolutional reader, "int8" for a decoder's MatMul weights)."""

    name: str
    module: Any
    example: tuple
    inputs: list[str]
    outputs: list[str]
    dynamic_shapes: Any
    storage: str


def logits_only(model: Any) -> Any:
    """A decoder whose graph returns its logits alone (no KV cache): the paths' reasoners are run whole."""
    from torch import nn

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, tokens: Any) -> Any:
            return self.model(tokens)[0]

    return Logits()


def add_graphs(bundle: Path, graphs: list[PathGraph], entry_name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Export each graph into the bundle (weights stored compactly, the exporter's notes dropped), list the files in
    its manifest and set the manifest's `entry_name` to `entry`; returns the entry."""
    from engine.bundle import file_entry, read_manifest, write_manifest
    from engine.compact import store_matmul_weights_int8, store_weights_fp16, strip_export_notes
    from engine.export import export_graph

    manifest = read_manifest(bundle)
    for graph in graphs:
        path = bundle / graph.name
        export_graph(graph.module, graph.example, path, graph.inputs, graph.outputs, graph.dynamic_shapes)
        if graph.storage == "fp16":
            store_weights_fp16(path)
        else:
            store_matmul_weights_int8(path)
        strip_export_notes(path)
        manifest["files"][graph.name] = file_entry(path)
    manifest[entry_name] = entry
    write_manifest(bundle, manifest)
    return entry


def add_seeded_command(commands: Any, name: str, help: str, out: str) -> argparse.ArgumentParser:
    """A command that writes `--n` training puzzles from seed `--seed` on to `--out`."""
    command = commands.add_parser(name, help=help)
    command.add_argument("--n", type=int, required=True)
    command.add_argument("--seed", type=int, required=True, help="first training seed")
    command.add_argument("--out", required=True, help=out)
    return command


def add_reader_command(commands: Any, pictures: str) -> argparse.ArgumentParser:
    """The `reader` command: fit a reader on sight-data files for some CPU-minutes and keep its weights."""
    command = commands.add_parser("reader", help=f"fit the reader on sight-data {pictures} and keep its weights")
    command.add_argument("--data", required=True, nargs="+", help="from sight-data (one file or several)")
    command.add_argument("--minutes", type=float, default=10.0, help="CPU-minutes to fit the reader")
    command.add_argument("--out", required=True, help=".pt file")
    return command


def add_train_command(commands: Any, help: str, minutes: float) -> argparse.ArgumentParser:
    """The `train` command: `--data` from the data command, `--out` a run directory, `--minutes` CPU-minutes."""
    command = commands.add_parser("train", help=help)
    command.add_argument("--data", required=True)
    command.add_argument("--out", required=True)
    command.add_argument("--minutes", type=float, default=minutes)
    return command
