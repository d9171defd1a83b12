"""Held-out multiple-choice accuracy of saved LVM checkpoints: where more training tokens would go.

    python -m engine.learning_curve --tokenizer TOK --checkpoints runs/lvm/points/*.pt --n 64 --out curve.jsonl

Each checkpoint becomes one record like the training log's evaluation records ({"kind": "eval", "tokens",
"acc/<family>", ...}), so engine.model_card plots either.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from tqdm import tqdm

from engine.model import model_from_checkpoint
from engine.tokenizer import load_frozen_tokenizer
from engine.train_lvm import evaluate, held_out_items, tokenizer_vocabulary

logger = logging.getLogger("engine.learning_curve")


def curve(tokenizer_path: Path, checkpoints: list[Path], families: list[str], n: int) -> list[dict]:
    device = torch.device("cpu")
    tokenizer = load_frozen_tokenizer(tokenizer_path, device)
    vocab = tokenizer_vocabulary(tokenizer)
    states = sorted((torch.load(path, map_location="cpu", weights_only=False) for path in checkpoints),
                    key=lambda state: state["tokens_seen"])
    limit = states[0]["lvm_config"]["context_length"]
    items = held_out_items(families, n, tokenizer, vocab, limit, tokenizer.tokenizer_config.image_size, device)
    records = []
    for state in tqdm(states, desc="checkpoints"):
        model = model_from_checkpoint(state)
        results = evaluate(model, items, vocab, device, bf16=True)
        records.append({"kind": "eval", "tokens": state["tokens_seen"], "step": state["step"], **results})
        logger.info("%.1fM tokens: %s", state["tokens_seen"] / 1e6,
                    ", ".join(f"{f} {results.get(f'acc/{f}', 0):.3f}" for f in families))
    return records


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="tokenizer checkpoint or bundle directory")
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    parser.add_argument("--families", default="analogy,sequence,matrix")
    parser.add_argument("--n", type=int, default=64, help="held-out puzzles per family")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one record per checkpoint")
    args = parser.parse_args(argv)
    records = curve(args.tokenizer, args.checkpoints, args.families.split(","), args.n)
    args.out.write_text("".join(json.dumps(record) + "\n" for record in records))


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.learning_curve")
