"""Train the sequence path (engine/serving/sequence_path.py serves it): a reader of one frame's attributes and a
reasoner over the frames' attributes as tokens, and add both to a bundle.

The reasoner learns from the generator's own states (no pictures: each training sequence's frames are computed
from its kind and parameters), with the position, size and turn tokens moved by one level now and then as a reader
misreads them. The reader learns from frames and near misses (the generator's wrong answers) drawn at some size
and shrunk to 32 px as serving shrinks them. `sight` has the reader read the card's held-out sequences and the
reasoner rank their candidates, beside the LVM's choices from an evaluation report. docs/model-experiments.md,
section 33, has what they showed; engine/recipes/sequence_path.sh the commands that made the shipped pair, e.g.

    python -m engine.sequence_probe data --n 200000 --seed 53000000 --out runs/sp/sequences.npz
    python -m engine.sequence_probe train --data runs/sp/sequences.npz --minutes 20 --out runs/sp/reasoner
    python -m engine.sequence_probe sight-data --n 16000 --seed 54000000 --out runs/sp/frames32.npz
    python -m engine.sequence_probe sight-data --n 8000 --seed 54100000 --draw-size 96 --out runs/sp/frames96.npz
    python -m engine.sequence_probe reader --data runs/sp/frames32.npz runs/sp/frames96.npz --minutes 20 \\
        --out runs/sp/reader.pt
    python -m engine.sequence_probe sight --reader runs/sp/reader.pt --reasoner runs/sp/reasoner/model.pt \\
        --n 200 --first 350 --sure-attribute 0.99
    python -m engine.sequence_probe export --reader runs/sp/reader.pt --reasoner runs/sp/reasoner/model.pt \\
        --bundle engine/bundles/default --sure-attribute 0.99
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.path_training import Checks, fit_reader, train_for_cpu_minutes
from engine.serving.matrix_path import Gate
from engine.serving.sequence_path import (
    BOS,
    CLASSES,
    FIELD_STARTS,
    FRAME_TOKENS,
    LEVELS,
    MAX_COUNT,
    PAD,
    READER_OUTPUTS,
    READER_SIZE,
    SENTENCE,
    TOLERATED,
    VOCAB,
    FrameState,
    candidate_log_likelihoods,
    frame_tokens,
    read_outputs,
)
from puzzles.puzzle import Puzzle
from puzzles.scenes import BACKGROUND_COLOURS, SHAPES, STRONG_COLOURS, Spec
from puzzles.seeds import check_training_seed

JITTERED = TOLERATED  # the fields a reader misreads by a level


def frame_state(background: list[int], objects: list[Spec]) -> FrameState:
    """The attributes of a frame of `objects` (all of one shape and colour, as the generator draws them)."""
    first = objects[0]
    return FrameState(
        shape=SHAPES.index(first["shape"]), colour=STRONG_COLOURS.index(tuple(first["colour"])),
        background=BACKGROUND_COLOURS.index(tuple(background)), count=len(objects),
        x=float(np.mean([o["cx"] for o in objects])), y=float(np.mean([o["cy"] for o in objects])),
        r=float(np.mean([o["r"] for o in objects])), angle=float(first["angle"]))


def training_sequences(n: int, seed: int, progress: bool = True) -> Iterator[Puzzle]:
    """Sequences on training seeds seed .. seed + n - 1, drawn small: only their kinds and parameters are used."""
    from tqdm import tqdm

    from puzzles.generators import generate
    from puzzles.generators.sequence import GRID

    if GRID * GRID != MAX_COUNT:
        raise ValueError(f"the generator's lattice holds {GRID * GRID} objects; the sentence counts to {MAX_COUNT}")
    check_training_seed(seed)
    check_training_seed(seed + n - 1)
    for offset in tqdm(range(n), desc="sequences", mininterval=10, disable=not progress):
        try:
            yield generate("sequence", seed + offset, size=16)
        except RuntimeError:  # too few distinct candidates at this seed
            continue


def sequence_sentence(puzzle: Puzzle) -> list[int]:
    """A generated sequence's prompt frames and answer as tokens after BOS, from its kind and parameters."""
    from puzzles.generators.sequence import objects_at

    meta = puzzle.meta
    if puzzle.family != "sequence" or "params" not in meta:
        raise ValueError(f"puzzle {puzzle.id} is not a generated sequence with its parameters in meta")
    frames = len(puzzle.panels)
    background = meta["params"]["background"]
    return [BOS] + sum((frame_tokens(frame_state(background, objects_at(meta["kind"], meta["params"], step)))
                        for step in range(frames + 1)), [])


def write_data(n: int, seed: int, out: str | Path, progress: bool = True) -> int:
    """n training sequences as rows of SENTENCE tokens (PAD after the answer) and their kinds, in one .npz."""
    rows, kinds = np.full((n, SENTENCE), PAD, np.int16), []
    for index, puzzle in enumerate(training_sequences(n, seed, progress)):
        sentence = sequence_sentence(puzzle)
        rows[index, :len(sentence)] = sentence
        kinds.append(puzzle.meta["kind"])
    np.savez(out, rows=rows[:len(kinds)], kinds=np.array(kinds))
    return len(kinds)


def jitter(rows: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """Move a `share` of the position, size and turn tokens one level up or down (within their field; a turn past
    the last level comes round to the first)."""
    rows = rows.copy()
    field = (np.arange(SENTENCE) - 1) % FRAME_TOKENS
    for name in JITTERED:
        index = list(LEVELS).index(name)
        hit = (field == index)[None, :] & (rows != PAD) & (np.arange(SENTENCE) > 0) & (rng.random(rows.shape) < share)
        moved = rows + rng.choice((-1, 1), size=rows.shape)
        low, high = FIELD_STARTS[name], FIELD_STARTS[name] + LEVELS[name] - 1
        moved = low + (moved - low) % LEVELS[name] if name == "angle" else np.clip(moved, low, high)
        rows = np.where(hit, moved, rows)
    return rows


def held_out_sentences(n: int) -> list[tuple[str, list[int]]]:
    """The card's held-out sequences as (kind, sentence)."""
    from engine.evaluate import load_puzzles

    return [(puzzle.meta["kind"], sequence_sentence(puzzle)) for puzzle in load_puzzles("sequence", n, 16)]


def answer_read_right(model: Any, items: list[tuple[str, list[int]]]) -> dict[str, float]:
    """Per kind, the share of held-out sequences whose answer frame the reasoner predicts token for token
    (each token the likeliest after the true ones before it)."""
    import torch

    right: dict[str, list[bool]] = {}
    model.eval()
    with torch.no_grad():
        for kind, sentence in items:
            tokens = torch.tensor([sentence])
            picked = model(tokens[:, :-1])[0][0, -FRAME_TOKENS:].argmax(-1)
            right.setdefault(kind, []).append(bool((picked == tokens[0, -FRAME_TOKENS:]).all()))
    model.train()
    return {kind: float(np.mean(hits)) for kind, hits in sorted(right.items())}


@dataclass
class ReasonerConfig:
    data: str
    out: str
    minutes: float = 20.0  # CPU-minutes (process time)
    eval_every_min: float = 5.0
    held_out: int = 350
    batch_size: int = 64
    lr: float = 2e-3
    jitter: float = 0.15
    seed: int = 0
    n_layer: int = 3
    d_model: int = 64
    ffn_hidden: int = 176


def reasoner_config(n_layer: int, d_model: int, ffn_hidden: int) -> Any:
    from engine.model import LVMConfig

    return LVMConfig(vocab_size=VOCAB, context_length=SENTENCE, n_layer=n_layer, d_model=d_model, n_head=4,
                     n_kv_head=4, ffn_hidden=ffn_hidden)


def train_reasoner(config: ReasonerConfig) -> list[dict[str, Any]]:
    """Train for config.minutes CPU-minutes; held-out checks go to OUT/log.jsonl, the weights to OUT/model.pt."""
    import torch
    import torch.nn.functional as F

    from engine.model import LVM

    torch.manual_seed(config.seed)
    rows = np.load(config.data)["rows"].astype(np.int64)
    if rows.ndim != 2 or rows.shape[1] != SENTENCE:
        raise ValueError(f"{config.data}: expected rows of {SENTENCE} tokens from `sequence_probe data`")
    model = LVM(reasoner_config(config.n_layer, config.d_model, config.ffn_hidden))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=0.1)
    items = held_out_sentences(config.held_out)
    rng = np.random.default_rng(config.seed)

    def loss(used: float) -> Any:
        batch = torch.from_numpy(jitter(rows[rng.integers(len(rows), size=config.batch_size)], rng, config.jitter))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(batch[:, :-1])[0]
        targets = batch[:, 1:].masked_fill(batch[:, 1:] == PAD, -100)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)

    def lr(step: int, used: float) -> float:
        warmup = min(1.0, (step + 1) / 50)
        return config.lr * warmup * (0.1 + 0.45 * (1 + math.cos(math.pi * used / config.minutes)))

    def measure(used: float, step: int) -> dict[str, Any]:
        per_kind = answer_read_right(model, items)
        return {"cpu_minutes": round(used, 2), "sequences": step * config.batch_size,
                "answer_read_right": float(np.mean(list(per_kind.values()))), "kinds": per_kind}

    def save(path: Path) -> None:
        torch.save({"config": asdict(model.config), "state": model.state_dict()}, path)

    return train_for_cpu_minutes(model, optimizer, config.minutes, loss, lr, clip=1.0,
                                 checks=Checks(Path(config.out), config.eval_every_min, measure, save))


# --- the reader -------------------------------------------------------------------------------------------------


def reader_targets(state: FrameState) -> tuple[list[int], list[float]]:
    """A frame's class targets (shape, colour, background, count) and regression targets (x, y, r, sin, cos)."""
    angle = math.radians(state.angle)
    return ([state.shape, state.colour, state.background, state.count],
            [state.x, state.y, state.r, math.sin(angle), math.cos(angle)])


def write_sight_data(n: int, seed: int, out: str | Path, draw_size: int, per_sequence: int = 8,
                     progress: bool = True) -> int:
    """Frames of n training sequences and near misses of their answers (half each, `per_sequence` in all), drawn at
    `draw_size` px and shrunk to 32 as serving shrinks them, with their attributes, in one .npz."""
    from puzzles.generators.sequence import objects_at, render_objects, wrong_answers
    from puzzles.images import to_square

    images, classes, regressed = [], [], []
    for puzzle in training_sequences(n, seed, progress):
        kind, params, frames = puzzle.meta["kind"], puzzle.meta["params"], len(puzzle.panels)
        rng = np.random.default_rng(puzzle.source["seed"])
        steps = [objects_at(kind, params, int(step)) for step in rng.integers(0, frames + 3, per_sequence // 2)]
        near = [objects for _, objects in wrong_answers(rng, kind, params, frames)]
        chosen = steps + [near[int(i)] for i in rng.choice(len(near), per_sequence - len(steps), replace=False)]
        for objects in chosen:
            images.append(to_square(render_objects(params, objects, draw_size), READER_SIZE))
            wanted, values = reader_targets(frame_state(params["background"], objects))
            classes.append(wanted)
            regressed.append(values)
    np.savez(out, images=np.stack(images), classes=np.array(classes, np.int8),
             regressed=np.array(regressed, np.float32))
    return len(images)


def reader_model() -> Any:
    """A small convolutional reader: a 32 px frame -> class logits (shape, colour, background, count) and the
    objects' centre, radius and turn (sin, cos)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.Conv2d(24, 48, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(48, 64, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, READER_OUTPUTS))


def reader_loss(outputs: Any, classes: Any, regressed: Any) -> Any:
    import torch.nn.functional as F

    loss, start = 0.0, 0
    for field, count in enumerate(CLASSES.values()):
        loss = loss + F.cross_entropy(outputs[:, start:start + count], classes[:, field])
        start += count
    placement = F.mse_loss(outputs[:, start:start + 3], regressed[:, :3])
    return loss + 300 * placement + F.mse_loss(outputs[:, start + 3:], regressed[:, 3:])


def load_reader(path: str | Path) -> Any:
    import torch

    reader = reader_model()
    reader.load_state_dict(torch.load(path, map_location="cpu"))
    return reader.eval()


def train_reader(data: list[str | Path], minutes: float, seed: int = 0) -> Any:
    """Fit the reader on the frames of `data` (sight-data files) for `minutes` CPU-minutes."""
    import torch

    torch.manual_seed(seed)
    files = [np.load(path) for path in data]
    images = torch.from_numpy(np.concatenate([f["images"] for f in files])).permute(0, 3, 1, 2)
    classes = torch.from_numpy(np.concatenate([f["classes"] for f in files])).long()
    regressed = torch.from_numpy(np.concatenate([f["regressed"] for f in files]))
    return fit_reader(reader_model(), images, lambda outputs, batch: reader_loss(outputs, classes[batch],
                                                                                 regressed[batch]), minutes, seed)


def sight_report(reader: Any, reasoner: Any, n: int, gate: Gate, draw_size: int = READER_SIZE,
                 lvm_report: str | Path | None = None, first: int = 0) -> dict[str, Any]:
    """On the card's held-out sequences drawn at `draw_size` px (shrunk to 32): the share of frames read token for
    token, the share of sequences the gate passes, and multiple choice when the reasoner ranks the candidates from
    the reader's tokens; with an evaluation report's choices (`lvm_report`), also the LVM's and the two together
    (the path where the gate passes, the LVM elsewhere). All per kind and in all. `first` skips that many (another
    held-out set to choose a gate on)."""
    import torch

    from engine.evaluate import load_puzzles
    from puzzles.images import to_square

    lvm_choices = {}
    if lvm_report is not None:
        lvm_choices = {p["id"]: p["chosen_candidate"] for p in json.loads(Path(lvm_report).read_text())["puzzles"]}
    rows: dict[str, dict[str, list[float]]] = {}
    for puzzle in load_puzzles("sequence", n, draw_size, first):
        frames = len(puzzle.panels)
        pictures = np.stack([to_square(p, READER_SIZE) for p in [*puzzle.panels, *puzzle.candidates]])
        with torch.no_grad():
            outputs = reader(torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 255.0).numpy()
            reading = read_outputs(outputs)
            prompt = [BOS] + sum(reading.frames[:frames], [])
            tokens = torch.tensor([prompt + frame for frame in reading.frames[frames:]])
            log_probs = torch.log_softmax(reasoner(tokens[:, :-1])[0].float(), -1)[:, -FRAME_TOKENS:]
        scores = candidate_log_likelihoods(log_probs.double().numpy(), tokens[:, -FRAME_TOKENS:].numpy())
        truth = sequence_sentence(puzzle)[1:]
        record = rows.setdefault(puzzle.meta["kind"], {})
        answer, passes = int(puzzle.answer_index), gate.passes(reading)
        record.setdefault("frames_read_right", []).extend(
            reading.frames[i] == truth[i * FRAME_TOKENS:(i + 1) * FRAME_TOKENS] for i in range(frames))
        record.setdefault("answer_read_right", []).append(
            reading.frames[frames + answer] == truth[frames * FRAME_TOKENS:])
        record.setdefault("gate_passes", []).append(passes)
        record.setdefault("multiple_choice", []).append(int(scores.argmax()) == answer)
        if puzzle.id in lvm_choices:
            lvm = lvm_choices[puzzle.id] == answer
            record.setdefault("lvm_multiple_choice", []).append(lvm)
            record.setdefault("together", []).append(int(scores.argmax()) == answer if passes else lvm)
    pooled = {name: sum((record[name] for record in rows.values()), []) for name in next(iter(rows.values()))}
    return {"kinds": {kind: {name: round(float(np.mean(v)), 3) for name, v in record.items()}
                      for kind, record in sorted(rows.items())},
            "all": {name: round(float(np.mean(v)), 3) for name, v in pooled.items()}}


# --- export -----------------------------------------------------------------------------------------------------


def export_sequence_path(reader_path: str | Path, reasoner_path: str | Path, bundle: str | Path, gate: Gate) -> dict:
    """Add sequence_reader.onnx (fp16-stored) and sequence_reasoner.onnx (int8 weights) to a bundle and name them
    in its manifest as its sequence path, used where the reading passes `gate`."""
    import torch

    from engine.attribute_probe import reasoner_model
    from engine.bundle import read_manifest
    from engine.path_training import PathGraph, add_graphs, logits_only

    bundle = Path(bundle)
    if int(read_manifest(bundle)["image_size"]) != READER_SIZE:
        raise ValueError(f"the reader reads {READER_SIZE} px pictures; {bundle} serves another size")
    reader, reasoner = load_reader(reader_path), reasoner_model(reasoner_path).eval()
    names = {"reader": "sequence_reader.onnx", "reasoner": "sequence_reasoner.onnx"}
    graphs = [
        PathGraph(names["reader"], reader, (torch.rand(16, 3, READER_SIZE, READER_SIZE),), ["images"],
                  ["attributes"], ({0: torch.export.Dim("pictures")},), "fp16"),
        PathGraph(names["reasoner"], logits_only(reasoner), (torch.full((8, SENTENCE - 1), BOS),), ["tokens"],
                  ["logits"], ({0: torch.export.Dim("rows"), 1: torch.export.Dim("length")},), "int8")]
    return add_graphs(bundle, graphs, "sequence_path", {
        **names, "sure": asdict(gate),
        "parameters": {"reader": sum(p.numel() for p in reader.parameters()), "reasoner": reasoner.num_parameters()},
        "reasoner_config": asdict(reasoner.config)})


def main(argv: list[str] | None = None) -> None:
    from engine.path_training import add_reader_command, add_seeded_command, add_train_command

    parser = argparse.ArgumentParser(prog="python -m engine.sequence_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    add_seeded_command(commands, "data", "write training sequences as attribute rows (.npz)", ".npz file")
    train = add_train_command(commands, "train the reasoner and log held-out checks", ReasonerConfig.minutes)
    train.add_argument("--jitter", type=float, default=ReasonerConfig.jitter)
    for name in ("n_layer", "d_model", "ffn_hidden"):
        train.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(ReasonerConfig, name))
    sight_data = add_seeded_command(commands, "sight-data", "write training frames and their attributes (.npz)",
                                    ".npz file")
    sight_data.add_argument("--draw-size", type=int, default=READER_SIZE,
                            help="draw at this size, then shrink to the reader's 32 px (as serving does)")
    add_reader_command(commands, "frames")
    sight = commands.add_parser("sight", help="rank held-out candidates from what a reader reads")
    sight.add_argument("--reader", required=True, help=".pt file of a `reader` run")
    sight.add_argument("--reasoner", required=True, help="model.pt of a `train` run")
    sight.add_argument("--n", type=int, default=350, help="held-out sequences")
    sight.add_argument("--first", type=int, default=0, help="skip this many held-out sequences")
    sight.add_argument("--draw-size", type=int, default=READER_SIZE, help="draw the held-out sequences at this size")
    sight.add_argument("--lvm-report", help="an engine.evaluate --json report on the same sequences")
    export = commands.add_parser("export", help="add a reader and a reasoner to a bundle as its sequence path")
    export.add_argument("--reader", required=True, help=".pt file of a `reader` run")
    export.add_argument("--reasoner", required=True, help="model.pt of a `train` run")
    export.add_argument("--bundle", required=True, help="the bundle directory to add them to")
    for command in (sight, export):
        command.add_argument("--sure-attribute", type=float, default=Gate.attribute,
                             help="a frame is read surely when its shape, colour, background and count are each "
                                  "at least this likely")
        command.add_argument("--sure-pictures", type=float, default=Gate.pictures,
                             help="the path answers when at least this share of the pictures is read surely")
    sight.add_argument("--json", help="write the report here too")
    args = parser.parse_args(argv)
    if args.command == "data":
        print(f"{write_data(args.n, args.seed, args.out)} sequences -> {args.out}")
    elif args.command == "train":
        train_reasoner(ReasonerConfig(data=args.data, out=args.out, minutes=args.minutes, jitter=args.jitter,
                                      n_layer=args.n_layer, d_model=args.d_model, ffn_hidden=args.ffn_hidden))
    elif args.command == "sight-data":
        print(f"{write_sight_data(args.n, args.seed, args.out, args.draw_size)} frames -> {args.out}")
    elif args.command == "reader":
        import torch

        torch.save(train_reader(args.data, args.minutes).state_dict(), args.out)
        print(f"reader -> {args.out}")
    elif args.command == "sight":
        from engine.attribute_probe import reasoner_model

        gate = Gate(args.sure_attribute, args.sure_pictures)
        report = sight_report(load_reader(args.reader), reasoner_model(args.reasoner).eval(), args.n, gate,
                              args.draw_size, args.lvm_report, args.first)
        print(json.dumps(report, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    else:
        gate = Gate(args.sure_attribute, args.sure_pictures)
        print(json.dumps(export_sequence_path(args.reader, args.reasoner, args.bundle, gate), indent=2))


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.sequence_probe")
