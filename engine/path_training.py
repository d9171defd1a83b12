"""What the trainers of the bundle's small paths share (engine.attribute_probe for matrices, engine.sequence_probe
for sequences, engine.analogy_probe for analogies): their graphs' export into a bundle, and their commands' common
arguments."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
