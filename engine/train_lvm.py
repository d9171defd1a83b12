"""Train the LVM on visual sentences of freshly generated puzzles, with a frozen tokenizer.

    python -m engine.train_lvm --tokenizer runs/tokenizer/ckpt.pt --out runs/lvm --minutes 60
    torchrun --nproc-per-node 8 -m engine.train_lvm --tokenizer TOK --out runs/lvm --minutes 30 --batch-size 64

Loss: next-token cross-entropy, weighted: the answer image (and EOS) by --answer-weight, the context panels
by --context-weight (random context panels would dominate the loss otherwise). With --choice-weight > 0 a
multiple-choice term is added: cross-entropy over each puzzle's candidates of their summed log-likelihoods
given the context (the rule the runtime ranks with), so a distractor that merely copies a prompt panel is
pushed down. With --prompt-dropout P a share P of the sentences is trained as BOS, the last prompt panel and the
answer: the weak prompt of guided sampling (docs/model-experiments.md, section 27). Held-out multiple-choice
accuracy per family and configuration is logged every --eval-every-tokens, which gives the learning curve.

--tokenizer takes a tokenizer checkpoint or a model bundle directory (its exported encoder, run on ONNX
Runtime); --init-bundle starts from a bundle's LVM weights (read back from its ONNX graph). --shards trains on
pre-tokenized puzzles (engine.shards) instead of generating and encoding them every step.

Every log record carries where the window's time went (seconds per step): `time/data` (waiting for puzzles:
generation not hidden by the loader, or reading shards), `time/encode` (the tokenizer), `time/forward` (the
sentences), `time/choice` (the candidates' forward), `time/backward` (backward and optimizer step).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine import training
from engine.bundle import read_manifest
from engine.data import DEFAULT_MIX, PuzzleStream, StreamConfig, make_loader, mix_entry, parse_mix, puzzle_config
from engine.model import LVM, LVMConfig, deepen, model_checkpoint
from engine.patch_tokenizer import SYMMETRIES, CodeSymmetries, PatchTokenizer, code_symmetries
from engine.serving.sentences import Vocabulary, build_sentence, max_images, select_panels
from engine.shards import ShardSet, family_weighted_order
from engine.tokenizer import FrozenTokenizer, encode_uint8, load_frozen_tokenizer
from puzzles.generators import generate
from puzzles.images import to_square
from puzzles.seeds import eval_seed

logger = logging.getLogger("engine.train_lvm")


@dataclass
class TrainLVMConfig:
    tokenizer: str = field(default="", metadata={"help": "tokenizer checkpoint or bundle directory (required)"})
    init_bundle: str | None = field(default=None, metadata={"help": "start from this bundle's LVM weights and size"})
    out: str = field(default="runs/lvm", metadata={"help": "output directory (ckpt.pt, log.jsonl, loss_curve.png)"})
    steps: int | None = field(default=None, metadata={"type": int, "help": "optimizer steps"})
    minutes: float | None = field(default=None, metadata={"type": float, "help": "time budget (see --clock)"})
    clock: str = field(default="wall", metadata={
        "help": "what --minutes counts: wall (wall-clock) or cpu (this process's CPU time, so that runs sharing "
                "a busy machine get equal compute)"})
    batch_size: int = field(default=16, metadata={"help": "sentences per step per rank"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warmup steps"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay"})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient norm clip"})
    answer_weight: float = field(default=1.0, metadata={"help": "loss weight of the answer image's tokens and EOS"})
    context_weight: float = field(default=0.3, metadata={"help": "loss weight of the context panels' tokens"})
    choice_weight: float = field(default=0.0, metadata={"help": "weight of the multiple-choice loss (0: off)"})
    choice_detach: bool = field(default=False, metadata={
        "help": "the multiple-choice loss reads the context's keys and values without a gradient into them "
                "(a cheaper backward; the context still learns from the next-token loss)"})
    choice_per_code: bool = field(default=False, metadata={
        "help": "score candidates by their mean code log-probability instead of the sum (the sum's gradient "
                "outweighs the next-token loss's by about the codes a panel has: docs/model-experiments.md)"})
    prompt_dropout: float = field(default=0.0, metadata={
        "help": "share of sentences trained on the last prompt image alone, then the answer: the weak prompt that "
                "guided sampling and the pmi_last_panel rule read, made a prompt the model has seen (the context "
                "dropout of classifier-free guidance)"})
    mix: str = field(default=DEFAULT_MIX, metadata={"help": "family weights"})
    augment: bool = field(default=False, metadata={
        "help": "whole-puzzle augmentation: each shard puzzle under one of the 8 flips and quarter turns, the same "
                "for all its panels and candidates (every family's rule survives it); shards of a patch tokenizer"})
    shards: str | None = field(default=None, metadata={
        "help": "train on these pre-tokenized shard directories (comma-separated; python -m engine.shards) instead "
                "of streaming; --mix weights their families"})
    context_length: int = field(default=640, metadata={"help": "longest sentence"})
    n_layer: int = field(default=8, metadata={"help": "transformer blocks"})
    d_model: int = field(default=384, metadata={"help": "width"})
    n_head: int = field(default=6, metadata={"help": "query heads"})
    n_kv_head: int = field(default=6, metadata={"help": "key/value heads"})
    ffn_hidden: int = field(default=1024, metadata={"help": "SwiGLU hidden width"})
    grow_layers: int = field(default=0, metadata={
        "help": "with --init-bundle, this many more blocks spread through the depth, each starting as the identity "
                "(engine.model.deepen): a larger model that begins where the bundle is"})
    panel_positions: bool = field(default=False, metadata={
        "help": "learned cell and panel-index embeddings (engine.model.LVMConfig.panel_tokens); with --init-bundle "
                "they are added at zero to a bundle without them"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    workers: int = field(default_factory=training.default_workers, metadata={"help": "DataLoader workers"})
    seed: int = field(default=0, metadata={"help": "first training seed"})
    log_every: int = field(default=10, metadata={"help": "steps between log records"})
    eval_every_tokens: int = field(default=0, metadata={"help": "tokens between held-out evaluations (0: end only)"})
    eval_n: int = field(default=64, metadata={"help": "held-out puzzles per family"})
    save_every_min: float = field(default=10.0, metadata={"help": "minutes between checkpoints"})
    resume: bool = field(default=False, metadata={"help": "continue from OUT/ckpt.pt"})
    half_weights_out: str | None = field(default=None, metadata={"help": "also write fp16 LVM weights here"})

    def lvm_config(self, vocab: Vocabulary) -> LVMConfig:
        return LVMConfig(vocab_size=vocab.vocab_size, context_length=self.context_length, n_layer=self.n_layer,
                         d_model=self.d_model, n_head=self.n_head, n_kv_head=self.n_kv_head,
                         ffn_hidden=self.ffn_hidden,
                         panel_tokens=vocab.tokens_per_image if self.panel_positions else 0)


MODEL_SIZE_KEYS = ("context_length", "n_layer", "d_model", "n_head", "n_kv_head", "ffn_hidden")


def recorded_config(config: TrainLVMConfig, model: LVMConfig) -> dict[str, Any]:
    """The run's options as its checkpoint records them, with the sizes of the model it really trained (a bundle
    or a resumed checkpoint fixes those, whatever the size flags say)."""
    return {**vars(config), **{key: getattr(model, key) for key in MODEL_SIZE_KEYS},
            "panel_positions": bool(model.panel_tokens)}


def tokenizer_vocabulary(tokenizer: FrozenTokenizer) -> Vocabulary:
    cfg = tokenizer.tokenizer_config
    return Vocabulary(codebook_size=cfg.codebook_size, tokens_per_image=cfg.tokens_per_image)


class StepTimer:
    """Seconds spent per phase of the training step, summed over a log window."""

    PHASES = ("data", "encode", "forward", "choice", "backward")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def per_step(self, steps: int) -> dict[str, float]:
        """`time/<phase>` in seconds per step, then cleared for the next window."""
        record = {f"time/{name}": self.seconds[name] / max(steps, 1) for name in self.PHASES}
        self.seconds.clear()
        return record


NO_TIMER = StepTimer()  # for callers that do not read the split


@dataclass
class ChoiceGroup:
    """Puzzles of one batch whose contexts have the same length, with their candidates' codes."""
    rows: torch.Tensor  # (n,) batch rows
    context_length: int  # tokens before the answer (BOS included)
    candidates: torch.Tensor  # (n, C, tokens_per_image)
    answer_index: torch.Tensor  # (n,)


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, L-1)
    targets: torch.Tensor  # (B, L-1)
    weights: torch.Tensor  # (B, L-1) loss weight of each target
    tokens: int  # real (unpadded) tokens
    choices: list[ChoiceGroup] = field(default_factory=list)


def sample_codes(
    samples: list[dict[str, Any]], chosen: list[int], tokenizer: FrozenTokenizer, device: torch.device,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each sample's sentence codes and the chosen samples' candidate codes: read from shard samples as they
    are, or encoded from streamed images in one tokenizer call."""
    if all("codes" in sample for sample in samples):
        return [s["codes"] for s in samples], [samples[row]["candidate_codes"] for row in chosen]
    stacks = [sample["images"] for sample in samples] + [samples[row]["candidates"] for row in chosen]
    codes = encode_uint8(tokenizer, np.concatenate(stacks), device)
    pieces = np.split(codes, np.cumsum([len(stack) for stack in stacks])[:-1])
    return pieces[: len(samples)], pieces[len(samples) :]


def make_batch(
    samples: list[dict[str, Any]], tokenizer: FrozenTokenizer, vocab: Vocabulary, config: TrainLVMConfig,
    device: torch.device, timer: StepTimer = NO_TIMER,
) -> Batch:
    """Samples -> padded sentences, loss weights and (with --choice-weight) candidate groups."""
    chosen = [row for row, sample in enumerate(samples)
              if config.choice_weight > 0 and ("candidates" in sample or "candidate_codes" in sample)]
    with timer.phase("encode"):
        rows, candidate_codes = sample_codes(samples, chosen, tokenizer, device)
    sentences = [build_sentence(list(image_codes), vocab, complete=True) for image_codes in rows]
    length = max(len(sentence) for sentence in sentences)
    tokens = np.full((len(sentences), length), vocab.eos, dtype=np.int64)
    weights = np.zeros((len(sentences), length - 1), dtype=np.float32)
    for row, sentence in enumerate(sentences):
        tokens[row, : len(sentence)] = sentence
        answer_start = len(sentence) - 1 - vocab.tokens_per_image  # first answer token's position
        weights[row, : answer_start - 1] = config.context_weight  # targets 1 .. answer_start-1 (context)
        weights[row, answer_start - 1 : len(sentence) - 1] = config.answer_weight  # answer tokens and EOS
    tokens_t = torch.from_numpy(tokens).to(device)
    choices = choice_groups(chosen, [len(sentences[row]) - 1 - vocab.tokens_per_image for row in chosen],
                            candidate_codes, [samples[row]["answer_index"] for row in chosen], device)
    return Batch(tokens_t[:, :-1], tokens_t[:, 1:], torch.from_numpy(weights).to(device), sum(map(len, sentences)),
                 choices)


def choice_groups(rows: list[int], context_lengths: list[int], candidates: list[np.ndarray], answers: list[int],
                  device: torch.device) -> list[ChoiceGroup]:
    """Group the puzzles with candidates by context length (and candidate count): one forward per group."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, (length, codes) in enumerate(zip(context_lengths, candidates, strict=True)):
        groups[(length, len(codes))].append(index)
    return [ChoiceGroup(torch.tensor([rows[i] for i in members], device=device), length,
                        torch.from_numpy(np.stack([candidates[i] for i in members])).to(device),
                        torch.tensor([answers[i] for i in members], device=device))
            for (length, _), members in groups.items()]


def choice_loss(model: torch.nn.Module, logits: torch.Tensor, cache: list[tuple[torch.Tensor, torch.Tensor]],
                groups: list[ChoiceGroup], codebook_size: int, detach_context: bool = False,
                per_code: bool = False) -> torch.Tensor:
    """Cross-entropy over candidates of log p(candidate | context), summed over its tokens (`per_code`: averaged).

    The context's keys/values come from the sentence forward (causal, so the answer after them does not change
    them): each candidate costs one pass over its own tokens. Its first token is predicted by the context's last
    position, which that forward already computed. With `detach_context` no gradient flows from the candidates'
    passes back into the context's keys and values (its backward is then the candidates' own).
    """
    if detach_context:
        cache = [(k.detach(), v.detach()) for k, v in cache]
    total, count = logits.new_zeros((), dtype=torch.float32), 0
    for group in groups:
        n, choices, length = group.candidates.shape[0], group.candidates.shape[1], group.context_length
        past = [(k[group.rows, :, :length].repeat_interleave(choices, 0),
                 v[group.rows, :, :length].repeat_interleave(choices, 0)) for k, v in cache]
        flat = group.candidates.flatten(0, 1)  # (n*C, t)
        later, _ = model(flat[:, :-1], past)  # predictions of tokens 1..t-1
        first = logits[group.rows, length - 1, :codebook_size].float().log_softmax(-1)  # (n, K)
        first = first.gather(1, group.candidates[:, :, 0])  # (n, C)
        rest = later[..., :codebook_size].float().log_softmax(-1).gather(-1, flat[:, 1:, None])[..., 0]
        scores = first + rest.sum(-1).view(n, choices)
        if per_code:
            scores = scores / group.candidates.shape[2]
        total = total + F.cross_entropy(scores, group.answer_index, reduction="sum")
        count += n
    return total / max(count, 1)


def weighted_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return (losses * weights.flatten()).sum() / weights.sum().clamp_min(1e-9)


# --- held-out multiple-choice evaluation -------------------------------------------------------------------

@dataclass
class EvalItem:
    family: str
    config: str
    context: np.ndarray  # sentence without the answer: BOS + panel codes
    candidates: np.ndarray  # (C, tokens_per_image)
    answer_index: int


def held_out_items(
    entries: list[str], count: int, tokenizer: FrozenTokenizer, vocab: Vocabulary, limit: int, size: int,
    device: torch.device,
) -> list[EvalItem]:
    """Tokenize `count` held-out puzzles per mixture entry (those with candidates), once per run."""
    items = []
    for family, options in map(mix_entry, entries):
        for index in range(count):
            puzzle = generate(family, eval_seed(index), size=size, **options)
            if not puzzle.candidates or puzzle.answer_index is None:
                continue
            keep = select_panels(puzzle.family, len(puzzle.panels), limit)
            images = np.stack([to_square(image, size) for image in [*(puzzle.panels[i] for i in keep),
                                                                    *puzzle.candidates]])
            codes = encode_uint8(tokenizer, images, device)
            items.append(EvalItem(family, puzzle_config(puzzle), build_sentence(list(codes[: len(keep)]), vocab),
                                  codes[len(keep) :], puzzle.answer_index))
    return items


@torch.no_grad()
def score_candidates(model: LVM, context: torch.Tensor, candidates: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Sum of log p(candidate tokens | context) over code logits: context (B, L), candidates (B, C, t) -> (B, C)."""
    batch, count, length = candidates.shape
    inputs = torch.cat([context[:, None, :].expand(batch, count, context.shape[1]), candidates], dim=2)
    logits, _ = model(inputs.flatten(0, 1)[:, :-1])  # (B*C, L+t-1, V)
    logits = logits[:, context.shape[1] - 1 :, :codebook_size].float()  # predictions of the candidate tokens
    log_probs = torch.log_softmax(logits, dim=-1).gather(-1, candidates.flatten(0, 1)[..., None])[..., 0]
    return log_probs.sum(-1).view(batch, count)


def evaluate(model: LVM, items: list[EvalItem], vocab: Vocabulary, device: torch.device, bf16: bool,
             group: int = 8) -> dict[str, float]:
    """Multiple-choice accuracy per family and per family/configuration ("acc/..."), and per family under the
    serving rule "pmi_last_panel" ("acc_pmi/<family>": less each candidate's log-likelihood after BOS and the last
    prompt panel alone, which a next-token model's liking for copies needs; docs/model-experiments.md, section 18)."""
    model.eval()
    hits: dict[str, list[bool]] = defaultdict(list)
    by_shape: dict[tuple, list[EvalItem]] = defaultdict(list)
    for item in items:
        by_shape[(len(item.context), item.candidates.shape)].append(item)
    for same_shape in by_shape.values():
        for start in range(0, len(same_shape), group):
            chunk = same_shape[start : start + group]
            context = torch.from_numpy(np.stack([item.context for item in chunk])).to(device)
            candidates = torch.from_numpy(np.stack([item.candidates for item in chunk])).to(device)
            last_panel = torch.cat([context[:, :1], context[:, -vocab.tokens_per_image:]], dim=1)
            with training.autocast(device, bf16):
                scores = score_candidates(model, context, candidates, vocab.codebook_size)
                pmi = scores - score_candidates(model, last_panel, candidates, vocab.codebook_size)
            for item, best, best_pmi in zip(chunk, scores.argmax(dim=1).tolist(), pmi.argmax(dim=1).tolist(),
                                            strict=True):
                hits[f"acc/{item.family}"].append(best == item.answer_index)
                hits[f"acc/{item.family}/{item.config}"].append(best == item.answer_index)
                hits[f"acc_pmi/{item.family}"].append(best_pmi == item.answer_index)
    model.train()
    results = {key: float(np.mean(values)) for key, values in sorted(hits.items())}
    results.update({key.replace("acc/", "n/"): len(values) for key, values in hits.items()
                    if key.startswith("acc/") and key.count("/") == 1})
    return results


# --- the loop ----------------------------------------------------------------------------------------------

def build_model(config: TrainLVMConfig, vocab: Vocabulary, checkpoint: dict[str, Any] | None) -> LVM:
    if checkpoint is None and config.init_bundle:
        return deepen(model_from_bundle(config.init_bundle, vocab, config.panel_positions), config.grow_layers)
    if config.grow_layers and checkpoint is None:
        raise ValueError("--grow-layers grows the model of --init-bundle; give one")
    if checkpoint is None:
        return LVM(config.lvm_config(vocab))
    lvm_config = LVMConfig.from_dict(checkpoint["lvm_config"])
    if lvm_config.vocab_size != vocab.vocab_size:
        raise ValueError(f"checkpoint vocabulary {lvm_config.vocab_size} does not match the tokenizer's "
                         f"{vocab.vocab_size}")
    model = LVM(lvm_config)
    model.load_state_dict(checkpoint["model"])
    return model


def model_from_bundle(directory: str | Path, vocab: Vocabulary, panel_positions: bool = False) -> LVM:
    """The LVM of an exported bundle, back in PyTorch (fp32) to train on; `panel_positions` adds the panel
    embeddings at zero when the bundle has none (the model then computes exactly what the bundle does)."""
    from engine.bundle import PANEL_EMBEDDINGS, bundle_weights

    manifest = read_manifest(Path(directory))
    lvm_config = LVMConfig.from_dict(manifest["lvm_config"])
    if lvm_config.vocab_size != vocab.vocab_size:
        raise ValueError(f"bundle {directory} has vocabulary {lvm_config.vocab_size}, the tokenizer "
                         f"{vocab.vocab_size}")
    if panel_positions and not lvm_config.panel_tokens:
        lvm_config = replace(lvm_config, panel_tokens=vocab.tokens_per_image)
    model = LVM(lvm_config)
    weights = {name: torch.tensor(array) for name, array in bundle_weights(directory).items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or set(missing) - set(PANEL_EMBEDDINGS):
        raise ValueError(f"bundle {directory} weights do not fit its lvm_config: missing {missing}, "
                         f"unexpected {unexpected}")
    return model


def bundle_tokens_seen(directory: str | Path) -> int:
    """Training tokens behind a bundle's LVM, as its manifest records them (0 when it does not)."""
    manifest = read_manifest(Path(directory))
    return int(manifest.get("provenance", {}).get("lvm", {}).get("tokens") or 0)


def make_stream(config: TrainLVMConfig, runtime: training.TrainingProcess, image_size: int, limit: int,
                sentences_seen: int = 0) -> PuzzleStream:
    """This rank's share of the training puzzles (DDP ranks and loader workers never share a seed)."""
    return PuzzleStream(StreamConfig(mix=parse_mix(config.mix), image_size=image_size, max_images=limit,
                                     candidates=config.choice_weight > 0,
                                     base_seed=training.resumed_base_seed(config.seed, sentences_seen),
                                     rank=runtime.rank, world_size=runtime.world_size))


def family_weights(mix: str) -> dict[str, float]:
    """A mixture's weight per family (a shard records families, not layouts: 'matrix:center' counts as matrix)."""
    weights: dict[str, float] = defaultdict(float)
    for entry, weight in parse_mix(mix).items():
        weights[mix_entry(entry)[0]] += weight
    return dict(weights)


def shard_batches(shard: ShardSet, config: TrainLVMConfig, runtime: training.TrainingProcess, sentences_seen: int,
                  symmetries: CodeSymmetries | None = None) -> Iterator[list[dict[str, Any]]]:
    """Batches of shard samples, families drawn by --mix, each family reshuffled every epoch (a resumed run draws
    a new order); with `symmetries`, each puzzle turned or flipped as a whole."""
    order = family_weighted_order(shard.family_names(), family_weights(config.mix), config.seed + sentences_seen,
                                  runtime.rank, runtime.world_size)
    rng = np.random.default_rng(config.seed + sentences_seen + 1)
    while True:
        batch = [shard.sample(next(order)) for _ in range(config.batch_size)]
        if symmetries is not None:
            batch = [symmetric_sample(sample, symmetries, int(rng.integers(SYMMETRIES))) for sample in batch]
        yield batch


def drop_prompts(samples: list[dict[str, Any]], share: float, rng: np.random.Generator) -> list[dict[str, Any]]:
    """About `share` of the samples cut to their last prompt image and answer (no candidates: the weak prompt is
    not a puzzle to choose in)."""
    if share <= 0:
        return samples
    return [weak_prompt_sample(sample) if rng.random() < share else sample for sample in samples]


def weak_prompt_sample(sample: dict[str, Any]) -> dict[str, Any]:
    key = "codes" if "codes" in sample else "images"
    return {key: sample[key][-2:]}


def symmetric_sample(sample: dict[str, Any], symmetries: CodeSymmetries, symmetry: int) -> dict[str, Any]:
    turned = {key: symmetries.apply(sample[key], symmetry) for key in ("codes", "candidate_codes") if key in sample}
    return {**sample, **turned}


def code_symmetries_for(tokenizer: FrozenTokenizer) -> CodeSymmetries:
    if not isinstance(tokenizer, PatchTokenizer):
        raise ValueError("--augment turns and flips puzzles in code space, which needs a patch tokenizer "
                         "(python -m engine.patch_tokenizer); this one is a learned encoder")
    return code_symmetries(tokenizer)


LOSS_CURVES = ("loss", "loss/next_token", "loss/choice")  # the loss and its parts, drawn in loss_curve.png


def train_step(
    trained: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, config: TrainLVMConfig, lr: float,
    device: torch.device, codebook_size: int, timer: StepTimer = NO_TIMER,
) -> dict[str, torch.Tensor]:
    """One optimizer step on a batch; returns this rank's loss and its parts (next-token, multiple-choice), detached
    (read as numbers only when logged, so a GPU step does not wait for them).

    `trained` is the model or its DistributedDataParallel wrapper, whose backward averages the gradients over
    ranks: with equal loss-weight sums per rank, that is the gradient of the global batch.
    """
    training.set_lr(optimizer, lr)
    with training.autocast(device, config.bf16):
        with timer.phase("forward"):
            logits, cache = trained(batch.inputs)
            loss = next_token = weighted_loss(logits, batch.targets, batch.weights)
        parts = {"loss/next_token": next_token.detach()}
        if batch.choices:
            with timer.phase("choice"):
                choice = choice_loss(trained, logits, cache, batch.choices, codebook_size, config.choice_detach,
                                     config.choice_per_code)
                loss = loss + config.choice_weight * choice
            parts["loss/choice"] = choice.detach()
    with timer.phase("backward"):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), config.grad_clip)
        optimizer.step()
    return {"loss": loss.detach(), **parts}


def train(config: TrainLVMConfig) -> Path:
    if not config.tokenizer:
        raise ValueError("--tokenizer is required: a checkpoint (python -m engine.train_tokenizer) or a bundle")
    runtime = training.setup_runtime(config.device)
    out_dir = Path(config.out)
    if not 0 <= config.prompt_dropout < 1:
        raise ValueError(f"--prompt-dropout must be in [0, 1), got {config.prompt_dropout}")
    if config.choice_weight > 0 and runtime.world_size > 1:
        raise ValueError("--choice-weight needs a second forward per step, which DDP does not allow: one process")
    tokenizer = load_frozen_tokenizer(config.tokenizer, runtime.device)
    vocab = tokenizer_vocabulary(tokenizer)
    state = training.load_checkpoint(out_dir / "ckpt.pt", runtime.device) if config.resume else None
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = build_model(config, vocab, state).to(runtime.device)
    limit = max_images(model.config.context_length, vocab)  # the model's own (a resumed or bundle model's)
    optimizer = training.make_optimizer(model, config.lr, config.weight_decay, runtime.device)
    loop = training.TrainingLoop(out_dir, runtime, config.steps, config.minutes, config.log_every,
                                 config.save_every_min, "lvm", state, clock=config.clock)
    sentences_seen = state["sentences_seen"] if state is not None else 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    elif config.init_bundle:  # count on from the tokens the bundle's weights have seen
        loop.seen = bundle_tokens_seen(config.init_bundle)
    logger.info("LVM %.2fM parameters, vocabulary %d, %d images per sentence, device %s",
                model.num_parameters() / 1e6, vocab.vocab_size, limit, runtime.device)
    trained = training.distribute(model, runtime)
    if config.compile:
        trained = torch.compile(trained, dynamic=True)
    if config.shards:
        shard = ShardSet(config.shards.split(","))
        shard.check_fits(tokenizer.tokenizer_config.to_dict(), limit)
        batches = shard_batches(shard, config, runtime, sentences_seen,
                                code_symmetries_for(tokenizer) if config.augment else None)
    else:
        if config.augment:
            raise ValueError("--augment works on pre-tokenized puzzles: give --shards")
        stream = make_stream(config, runtime, tokenizer.tokenizer_config.image_size, limit, sentences_seen)
        batches = training.infinite(make_loader(stream, config.batch_size, config.workers, collate=False))
    entries = [entry for entry in parse_mix(config.mix) if mix_entry(entry)[0] != "grid"]
    items = (held_out_items(entries, config.eval_n, tokenizer, vocab, limit, tokenizer.tokenizer_config.image_size,
                            runtime.device) if runtime.is_main else [])
    next_eval = loop.seen + config.eval_every_tokens if config.eval_every_tokens else None

    def save() -> None:
        if not runtime.is_main:
            return
        payload = {**model_checkpoint(model), "optimizer": optimizer.state_dict(), **loop.facts(),
                   "sentences_seen": sentences_seen, "vocab": vocab.to_dict(), "tokenizer_path": config.tokenizer,
                   "train_config": recorded_config(config, model.config),
                   "hardware": training.describe_hardware(runtime)}
        training.save_checkpoint(payload, out_dir / "ckpt.pt")
        if config.half_weights_out:
            kept = ("vocab", "step", "tokens_seen", "elapsed", "hardware", "train_config")
            facts = {key: payload[key] for key in kept}
            training.save_checkpoint({**model_checkpoint(model, half=True), **facts}, Path(config.half_weights_out))

    def run_eval() -> None:
        results = evaluate(model, items, vocab, runtime.device, config.bf16)
        loop.log.write({"kind": "eval", "step": loop.step, "tokens": loop.seen, "elapsed": loop.budget.elapsed(),
                        **results})
        logger.info("eval at %d tokens: %s", loop.seen,
                    ", ".join(f"{k} {v:.3f}" for k, v in results.items() if k.count("/") == 1 and k[:3] == "acc"))

    timer = StepTimer()
    dropout_rng = np.random.default_rng([config.seed, sentences_seen, 2])
    for fraction in loop.running():
        with timer.phase("data"):
            samples = drop_prompts(next(batches), config.prompt_dropout, dropout_rng)
        batch = make_batch(samples, tokenizer, vocab, config, runtime.device, timer)
        lr = training.learning_rate(loop.step, fraction, config.lr, config.warmup_steps)
        losses = train_step(trained, optimizer, batch, config, lr, runtime.device, vocab.codebook_size, timer)
        loop.advance(batch.tokens * runtime.world_size)
        sentences_seen += batch.inputs.shape[0] * runtime.world_size
        if loop.log_due():
            # every rank joins each reduction
            losses = {name: training.mean_over_ranks(float(value), runtime) for name, value in losses.items()}
            if runtime.is_main:
                record = {"kind": "train", "step": loop.step, "tokens": loop.seen, **losses, "lr": lr,
                          "tok/s": loop.rate(), "elapsed": loop.budget.elapsed(), **timer.per_step(config.log_every)}
                loop.log.write(record)
                loop.log.plot(LOSS_CURVES)
                split = "/".join(f"{record[f'time/{name}'] * 1000:.0f}" for name in StepTimer.PHASES)
                loop.progress.set_postfix(loss=f"{losses['loss']:.3f}", tok_s=f"{record['tok/s']:.0f}",
                                          ms_data_enc_fwd_choice_bwd=split)
        if next_eval is not None and loop.seen >= next_eval:
            if runtime.is_main:
                run_eval()
            next_eval += config.eval_every_tokens
        if loop.save_due():
            save()
    save()  # before the final evaluation, so a run stopped by its time limit keeps its weights
    if runtime.is_main and items:
        run_eval()
        loop.log.plot(LOSS_CURVES)
    training.shutdown_runtime(runtime)
    return out_dir / "ckpt.pt"


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = training.parse_config(TrainLVMConfig, __doc__.splitlines()[0], argv)
    train(config)


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.train_lvm")
