"""Write a bundle's model card (MODEL_CARD.md + pictures) from its evaluation and training logs.

    python -m engine.model_card --bundle engine/bundles/default --eval eval.json \
        --lvm-log runs/default/lvm/log.jsonl --tokenizer-log runs/default/tokenizer_log.jsonl \
        --recipe engine/recipes/default.sh

The evaluation's headline numbers also go into manifest.json ("metrics"), and the card's table is rendered
from those same numbers (`metrics_table`), so a test can check that the two agree.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from engine.bundle import update_manifest  # noqa: E402
from engine.evaluate import load_puzzles  # noqa: E402
from engine.sample_sheet import sample_sheet  # noqa: E402
from engine.serving.runtime import Bundle  # noqa: E402

logger = logging.getLogger("engine.model_card")

# The project's quality bar for the model (held-out seeds, served int8 graph): row label: ((multiple-choice target,
# floor), (generative target, floor)); generation has one bar for every family.
TARGETS = {
    "analogy": ((0.85, 0.65), (0.60, 0.35)),
    "sequence": ((0.95, 0.85), (0.60, 0.35)),
    "matrix, mean of the 7 layouts": ((0.60, 0.40), (0.60, 0.35)),
    "matrix, one centred shape": ((0.98, 0.85), (0.60, 0.35)),
}


def headline_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers the card and the manifest carry: per family, per matrix layout, and the matrix mean."""
    metrics: dict[str, Any] = {"families": {}, "matrix_layouts": {}}
    for family, summary in report["families"].items():
        metrics["families"][family] = _pick(summary)
    matrix = report["families"].get("matrix")
    if matrix:
        layouts = {name: _pick(s) for name, s in matrix["configurations"].items()}
        metrics["matrix_layouts"] = layouts
        keys = ("multiple_choice_accuracy", "generative_accuracy")
        metrics["matrix_layout_mean"] = {key: _mean([m[key] for m in layouts.values()]) for key in keys}
    return metrics


def _pick(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "multiple_choice_accuracy", "generative_accuracy", "pass_at_2", "psnr_generated", "psnr_ceiling")
    return {key: summary.get(key) for key in keys}


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def metrics_table(metrics: dict[str, Any]) -> str:
    """Markdown table of the headline numbers against the targets (floor in brackets)."""
    families, layouts = metrics["families"], metrics.get("matrix_layouts", {})
    rows = []
    for label, source in (("analogy", families.get("analogy")), ("sequence", families.get("sequence")),
                          ("matrix, mean of the 7 layouts", metrics.get("matrix_layout_mean")),
                          ("matrix, one centred shape", layouts.get("center"))):
        if source is None:
            continue
        (target, floor), (generative, generative_floor) = TARGETS[label]
        n = source.get("n", sum(m["n"] for m in layouts.values()))
        rows.append(f"| {label} | {n} | {_pct(source['multiple_choice_accuracy'])} | {target:.0%} ({floor:.0%}) "
                    f"| {_pct(source['generative_accuracy'])} | {generative:.0%} ({generative_floor:.0%}) |")
    for name, source in layouts.items():
        rows.append(f"| matrix: {name} | {source['n']} | {_pct(source['multiple_choice_accuracy'])} | | "
                    f"{_pct(source['generative_accuracy'])} | |")
    if "grid" in families:
        grid = families["grid"]
        rows.append(f"| ARC-AGI-1 evaluation (pass@2 of the decoded grid) | {grid['n']} | — | report | "
                    f"{_pct(grid['pass_at_2'])} | report |")
    header = ("| family | n | multiple choice | target (floor) | generative (nearest candidate) | target (floor) |\n"
              "|---|---|---|---|---|---|")
    return "\n".join([header, *rows])


def psnr_table(metrics: dict[str, Any]) -> str:
    rows = [f"| {family} | {m['psnr_ceiling']:.1f} dB | {m['psnr_generated']:.1f} dB |"
            for family, m in metrics["families"].items() if m.get("psnr_ceiling") is not None]
    return "\n".join(["| family | tokenizer round trip of the answer | generated answer vs truth |", "|---|---|---|",
                      *rows])


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_learning_curve(records: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """Held-out multiple-choice accuracy per family against training tokens; returns the points plotted."""
    points = [r for r in records if r.get("kind") == "eval"]
    families = sorted({k.split("/")[1] for r in points for k in r if k.startswith("acc/") and k.count("/") == 1})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for family in families:
        xs = [r["tokens"] / 1e6 for r in points if f"acc/{family}" in r]
        ax.plot(xs, [100 * r[f"acc/{family}"] for r in points if f"acc/{family}" in r], marker="o", label=family)
    ax.axhline(12.5, color="grey", linestyle=":", label="chance")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("multiple choice (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return points


def failure_strip(report: dict[str, Any], spec: str, n: int, size: int, family: str, out: Path, rows: int = 4) -> int:
    """A picture of typical wrong answers: each row is the prompt, the model's pick (red) and the truth (green)."""
    wrong = {r["id"]: r for r in report["puzzles"]
             if r["family"] == family and r["multiple_choice_correct"] is False}
    if not wrong:
        return 0
    puzzles = [p for p in load_puzzles(spec, n, size) if p.id in wrong][:rows]
    strips = []
    for puzzle in puzzles:
        chosen = wrong[puzzle.id]["chosen_candidate"]
        cells = [*puzzle.panels, _framed(puzzle.candidates[chosen], (220, 40, 40)),
                 _framed(puzzle.candidates[puzzle.answer_index], (40, 160, 40))]
        strips.append(np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=255) for c in cells], 1))
    width = max(s.shape[1] for s in strips)
    strips = [np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips]
    Image.fromarray(np.concatenate(strips, 0)).save(out)
    return len(strips)


def _framed(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    framed = image.copy()
    framed[:3], framed[-3:], framed[:, :3], framed[:, -3:] = colour, colour, colour, colour
    return framed


def _panel_codes(manifest: dict[str, Any]) -> str:
    """What one panel becomes: a grid of codes, after a gist code when the tokenizer has one."""
    rows, columns = manifest["token_grid"]
    gist_codes = manifest["tokenizer_config"].get("gist_codes", 0)
    grid = f"a {rows}x{columns} grid of codes from a codebook of {manifest['codebook_size'] - gist_codes}"
    if not gist_codes:
        return grid
    side = manifest["tokenizer_config"]["gist_size"]
    return (f"one gist code (the panel shrunk to {side}x{side} px, from a second codebook of {gist_codes}; the "
            f"model reads it first, the decoder ignores it), then {grid}")


def _scoring_text(manifest: dict[str, Any]) -> str:
    """How the bundle ranks candidates, in words (engine.serving.runtime.scoring_rules)."""
    from engine.serving.runtime import scoring_rules

    rules = scoring_rules(manifest)
    chosen = manifest["scoring"].get("chosen_by") if isinstance(manifest.get("scoring"), dict) else None
    text = "Multiple choice ranks the candidates by the sum of their codes' log-likelihoods after the prompt"
    pmi = sorted(family for family, rule in rules.items() if rule == "pmi_last_panel")
    if pmi:
        where = "every family" if pmi == ["*"] else ", ".join(pmi)
        text += (f"; for {where}, less their log-likelihood after the last prompt panel alone (`pmi_last_panel`: "
                 "a copy of a prompt panel is not favoured" + (f"; chosen by `{chosen}`" if chosen else "") + ")")
    channel = sorted(family for family, rule in rules.items() if rule == "pmi_channel")
    if channel:
        text += (f"; for {', '.join(channel)}, less their log-likelihood after the query panel alone and plus the "
                 "log-likelihood of the example pairs read after the query and the candidate (`pmi_channel`: a copy "
                 "of the query is not favoured, a candidate that carries the examples' change is"
                 + (f"; chosen by `{chosen}`" if chosen else "") + ")")
    return text + "."


def _sampling_text(manifest: dict[str, Any]) -> str:
    """The settings Solve samples at, in words (engine.serving.runtime.sampling_defaults)."""
    from engine.serving.runtime import guidance_weights, sampling_defaults

    options = sampling_defaults(manifest)
    text = f"temperature {options.temperature:g}, top-k {options.top_k or 'off'}, top-p {options.top_p:g}"
    guided = ", ".join(f"{family} at weight {weight:g}" for family, weight in sorted(guidance_weights(manifest).items())
                       if weight > 0)
    if guided:
        text += (f"; guided for {guided} (each code drawn away from what the last prompt panel alone predicts, "
                 "so that a copy of it is not what comes out)")
    return text


def write_card(bundle: Path, report: dict[str, Any], spec: str, n: int, lvm_log: Path, tokenizer_log: Path | None,
               recipe: str, eval_command: str, notes: str = "", curve: Path | None = None) -> Path:
    metrics = headline_metrics(report)
    manifest = update_manifest(bundle, metrics=metrics)
    records = read_log(lvm_log)
    points = plot_learning_curve(read_log(curve) if curve else records, bundle / "learning_curve.png")
    plot_training_curve(records, bundle / "training_curve.png")
    strips = {family: failure_strip(report, spec, n, manifest["image_size"], family, bundle / f"failures_{family}.png")
              for family in metrics["families"]}
    Image.fromarray(sample_sheet(Bundle.load(bundle))).save(bundle / "samples.png", optimize=True)
    card = _card_text(manifest, metrics, report, points, strips, records, tokenizer_log, recipe, eval_command, notes)
    path = bundle / "MODEL_CARD.md"
    path.write_text(card)
    return path


def plot_training_curve(records: list[dict[str, Any]], out: Path) -> None:
    """The loss (and held-out accuracy) of the log the card is given, which may join several runs' logs."""
    from engine.training import plot_curves

    if any(r.get("kind", "train") == "train" for r in records):
        plot_curves(records, out, ("loss",), "tokens")


def _data_source(provenance: dict[str, Any]) -> str:
    """How the LVM's last run read its puzzles: pre-tokenized shards or fresh from the generators."""
    # export writes train_config as null when the checkpoint recorded none
    shards = ((provenance.get("lvm") or {}).get("train_config") or {}).get("shards")
    if shards:
        return f"Puzzles generated once and pre-tokenized into shards (`{shards}`)"
    return "Puzzles streamed fresh from the generators"


def _card_text(manifest: dict[str, Any], metrics: dict[str, Any], report: dict[str, Any], points: list[dict[str, Any]],
               strips: dict[str, int], records: list[dict[str, Any]], tokenizer_log: Path | None, recipe: str,
               eval_command: str, notes: str) -> str:
    lvm, tok = manifest["lvm_config"], manifest["tokenizer_config"]
    provenance = manifest.get("provenance", {})
    lvm_hardware = provenance.get("lvm", {}).get("hardware") or "hardware not recorded"
    tokenizer_hardware = provenance.get("tokenizer", {}).get("hardware") or "not recorded in its checkpoint"

    train = [r for r in records if r.get("kind") == "train"]
    last = train[-1] if train else {}
    families = ("analogy", "sequence", "matrix")
    curve_rows = "\n".join(f"| {r['tokens'] / 1e6:.1f}M | " + " | ".join(_pct(r.get(f"acc/{f}")) for f in families)
                           + " |" for r in points)
    tokenizer_psnr = ""
    if tokenizer_log and tokenizer_log.exists():
        evals = [r for r in read_log(tokenizer_log) if r.get("kind") == "eval"]
        if evals:
            tokenizer_psnr = ", ".join(f"{k.split('/')[1]} {v:.1f} dB" for k, v in evals[-1].items()
                                       if k.startswith("psnr/"))
    failures = "\n".join(f"![{family}: typical wrong answers](failures_{family}.png)\n" for family, count
                         in strips.items() if count)
    parameters = manifest.get("parameters", {}).get("lvm", "?")
    tokenizer_kind = (f"a patch codebook (k-means over {tok['patch_size']} px patches of training panels, flipped "
                      "and turned; engine/patch_tokenizer.py)" if tok.get("kind") == "patch"
                      else "a VQ tokenizer (diffusers `VQModel`)")
    panel_positions = (", rotary positions plus learned embeddings of each code's cell in its panel and of the "
                       "panel's index" if lvm.get("panel_tokens") else "")
    return f"""# Model card: {manifest['name']}

{notes}

## What it is
A LLaMA-style decoder ({lvm['n_layer']} layers, width {lvm['d_model']}, {lvm['n_head']} heads, SwiGLU
{lvm['ffn_hidden']}, context {lvm['context_length']}{panel_positions}; {parameters} parameters)
over the codes of {tokenizer_kind}, {tok['image_size']} px images -> {_panel_codes(manifest)}.
Weights: {manifest.get('weights', 'fp32')}.
A puzzle is a visual sentence (BOS, the codes of each panel in order); the answer is the next image.

## Data
{_data_source(provenance)}, on training seeds below {1_000_000_000:,} (evaluation uses the
held-out range from there on). LVM mixture: `{provenance.get('lvm', {}).get('data', '?')}`.
LVM tokens seen: {last.get('tokens', 0) / 1e6:.1f}M in all; its last training run took
{last.get('elapsed', 0) / 60:.0f} minutes ({lvm_hardware}). Tokenizer hardware: {tokenizer_hardware};
reconstruction PSNR on held-out panels: {tokenizer_psnr or 'the round trip column of the PSNR table below'}.

Reproduce:
```bash
{recipe.strip()}
```

## Evaluation (held-out seeds)
`{eval_command}`

{_scoring_text(manifest)}

{metrics_table(metrics)}

Reconstruction ceiling and generated answers (PSNR):

{psnr_table(metrics)}

## Training curve
![training loss](training_curve.png)

## Learning curve (held-out multiple choice, small samples during training)
![learning curve](learning_curve.png)

| tokens | analogy | sequence | matrix |
|---|---|---|---|
{curve_rows}

## What Solve returns
Held-out puzzles at the app's default sampling settings (the manifest's `sampling`: {_sampling_text(manifest)}):
each row is the prompt, the answer (green) and four samples, framed green when the nearest candidate is the answer
and red otherwise.

![samples at the default settings](samples.png)

## Known failure modes
Each row: the prompt, the model's pick (red frame), the right answer (green frame).

{failures}
"""


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--eval", type=Path, required=True, help="evaluation JSON from engine.evaluate")
    parser.add_argument("--puzzles", default="matrix:all,analogy,sequence", help="the evaluation's puzzle spec")
    parser.add_argument("--n", type=int, default=200, help="the evaluation's --n")
    parser.add_argument("--lvm-log", type=Path, required=True)
    parser.add_argument("--tokenizer-log", type=Path)
    parser.add_argument("--recipe", type=Path, required=True, help="script holding the commands that made the bundle")
    parser.add_argument("--notes", type=Path, help="markdown inserted under the title")
    parser.add_argument("--curve", type=Path, help="learning-curve records from engine.learning_curve "
                        "(default: the evaluation records of the LVM log)")
    args = parser.parse_args(argv)
    report = json.loads(args.eval.read_text())
    command = (f"python -m engine.evaluate --bundle {args.bundle} --puzzles {args.puzzles} --n {args.n} "
               f"--json {args.eval.name}")
    notes = args.notes.read_text() if args.notes else ""
    path = write_card(args.bundle, report, args.puzzles, args.n, args.lvm_log, args.tokenizer_log,
                      args.recipe.read_text(), command, notes, args.curve)
    logger.info("wrote %s", path)


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.model_card")
