"""Train the VQ image tokenizer on generated puzzle images.

    python -m engine.train_tokenizer --out runs/tokenizer --minutes 30
    torchrun --nproc-per-node 4 -m engine.train_tokenizer --out runs/tokenizer --steps 20000

Loss: L1 + MSE reconstruction plus the VQ codebook/commitment loss. Codes unused for a while are
restarted on random encoder outputs of the current batch, so the whole codebook stays in use. Images of
every family (panels, answers, candidates) with random flips/rotations, so codes are consistent under
geometry. Reconstruction PSNR on held-out matrix and sequence panels is logged as training goes.

--decoder-only fine-tunes the decoder of a trained tokenizer (--init: a checkpoint or a bundle directory) with
the encoder and codebook frozen: every image keeps its codes, so an LVM trained on them stays valid.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine import training
from engine.data import ImageStream, StreamConfig, make_loader, parse_mix
from engine.tokenizer import (
    TokenizerConfig,
    build_tokenizer,
    decode,
    decode_latents,
    embed_codes,
    encode,
    load_tokenizer,
    tokenizer_checkpoint,
    tokenizer_from_bundle,
    tokenizer_from_checkpoint,
    vq_forward,
)
from puzzles.generators import generate
from puzzles.images import to_square
from puzzles.seeds import eval_seed

logger = logging.getLogger("engine.train_tokenizer")


@dataclass
class TrainTokenizerConfig:
    out: str = field(default="runs/tokenizer", metadata={"help": "output directory (ckpt.pt, log.jsonl, PNG)"})
    steps: int | None = field(default=None, metadata={"type": int, "help": "optimizer steps"})
    minutes: float | None = field(default=None, metadata={"type": float, "help": "wall-clock budget"})
    batch_size: int = field(default=64, metadata={"help": "images per step per rank"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    warmup_steps: int = field(default=200, metadata={"help": "linear warmup steps"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient norm clip"})
    mix: str = field(default="matrix=3,analogy=3,sequence=3,grid=1", metadata={"help": "family weights"})
    image_size: int = field(default=64, metadata={"help": "image side"})
    block_out_channels: tuple[int, ...] = field(default=(32, 64, 128, 128), metadata={"help": "channels per level"})
    latent_channels: int = field(default=64, metadata={"help": "channels around the quantizer"})
    vq_embed_dim: int = field(default=8, metadata={"help": "code vector width"})
    codebook_size: int = field(default=1024, metadata={"help": "number of codes"})
    restart_every: int = field(default=100, metadata={"help": "steps between dead-code restarts (0: never)"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast"})
    workers: int = field(default_factory=training.default_workers, metadata={"help": "DataLoader workers"})
    seed: int = field(default=0, metadata={"help": "first training seed"})
    log_every: int = field(default=20, metadata={"help": "steps between log records"})
    eval_every: int = field(default=500, metadata={"help": "steps between PSNR evaluations"})
    eval_n: int = field(default=32, metadata={"help": "held-out puzzles per family for PSNR"})
    save_every_min: float = field(default=10.0, metadata={"help": "minutes between checkpoints"})
    resume: bool = field(default=False, metadata={"help": "continue from OUT/ckpt.pt"})
    init: str | None = field(default=None, metadata={"help": "start from these tokenizer weights and architecture "
                                                                 "(new optimizer): a checkpoint or a bundle directory"})
    decoder_only: bool = field(default=False, metadata={"help": "train the decoder alone (needs --init)"})
    half_weights_out: str | None = field(default=None, metadata={"help": "also write fp16 weights here"})

    def tokenizer_config(self) -> TokenizerConfig:
        return TokenizerConfig(image_size=self.image_size, block_out_channels=self.block_out_channels,
                               latent_channels=self.latent_channels, vq_embed_dim=self.vq_embed_dim,
                               codebook_size=self.codebook_size)


def psnr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Mean PSNR in dB over a batch of [0, 1] images."""
    mse = ((reference - estimate) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


def held_out_panels(family: str, count: int, size: int) -> torch.Tensor:
    """Panels and answers of `count` held-out puzzles, float [N, 3, size, size]."""
    images = []
    for index in range(count):
        puzzle = generate(family, eval_seed(index), size=size)
        images += [to_square(image, size) for image in [*puzzle.panels, puzzle.answer]]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def evaluate_psnr(model: torch.nn.Module, panels: dict[str, torch.Tensor], device: torch.device) -> dict[str, float]:
    model.eval()
    results = {}
    for family, images in panels.items():
        pieces = []
        for chunk in images.split(128):
            chunk = chunk.to(device)
            pieces.append(decode(model, encode(model, chunk)).cpu())
        results[f"psnr/{family}"] = psnr(images, torch.cat(pieces))
    model.train()
    return results


@torch.no_grad()
def restart_dead_codes(model: torch.nn.Module, usage: torch.Tensor, latents: torch.Tensor) -> int:
    """Move codes unused since the last restart onto random encoder outputs (plus a little noise)."""
    dead = (usage == 0).nonzero().flatten()
    if dead.numel() == 0:
        return 0
    flat = latents.detach().float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    picks = flat[torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)]
    noise = 0.01 * picks.std() * torch.randn_like(picks)
    model.quantize.embedding.weight.data[dead] = picks + noise
    return int(dead.numel())


def reconstruction_loss(reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    reconstruction = reconstruction.float()
    return F.l1_loss(reconstruction, images) + F.mse_loss(reconstruction, images)


def train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, config: TrainTokenizerConfig,
    lr: float, runtime: training.TrainingProcess,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimizer step on this rank's images; gradients are averaged over ranks before clipping.

    Returns this rank's losses (loss, loss_rec, loss_vq; detached) and the codes the batch used.
    """
    training.set_lr(optimizer, lr)
    if config.decoder_only:  # the frozen encoder in fp32, outside autocast: the codes the exported encoder gives
        codes = encode(model, images)
    with training.autocast(runtime.device, config.bf16):
        if config.decoder_only:
            reconstruction = decode_latents(model, embed_codes(model, codes))
            vq_loss = torch.zeros((), device=images.device)
        else:
            reconstruction, vq_loss, codes = vq_forward(model, images)
        loss_rec = reconstruction_loss(reconstruction, images)
        loss = loss_rec + vq_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if runtime.distributed:
        _average_gradients(model, runtime.world_size)
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return {"loss": loss.detach(), "loss_rec": loss_rec.detach(), "loss_vq": vq_loss.detach()}, codes


def train(config: TrainTokenizerConfig) -> Path:
    runtime = training.setup_runtime(config.device)
    out_dir = Path(config.out)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    if config.decoder_only and not config.init:
        raise ValueError("--decoder-only fine-tunes a trained tokenizer: give it with --init")
    state = training.load_checkpoint(out_dir / "ckpt.pt", runtime.device) if config.resume else None
    model = initial_tokenizer(config, state).to(runtime.device)
    if config.decoder_only:
        model.requires_grad_(False)
        for part in (model.post_quant_conv, model.decoder):
            part.requires_grad_(True)
    optimizer = training.make_optimizer(model, config.lr, config.weight_decay, runtime.device)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    loop = training.TrainingLoop(out_dir, runtime, config.steps, config.minutes, config.log_every,
                                 config.save_every_min, "tokenizer", state, seen_key="images_seen")
    shape: TokenizerConfig = model.tokenizer_config
    stream = ImageStream(StreamConfig(mix=parse_mix(config.mix), image_size=shape.image_size,
                                      base_seed=training.resumed_base_seed(config.seed, loop.seen),
                                      rank=runtime.rank, world_size=runtime.world_size))
    batches = training.infinite(make_loader(stream, config.batch_size, config.workers))
    eval_families = ("matrix", "sequence") if runtime.is_main else ()
    eval_panels = {family: held_out_panels(family, config.eval_n, shape.image_size) for family in eval_families}
    usage = torch.zeros(shape.codebook_size, device=runtime.device)

    def save() -> None:
        if runtime.is_main:
            payload = {**tokenizer_checkpoint(model), "optimizer": optimizer.state_dict(), **loop.facts(),
                       "train_config": vars(config), "hardware": training.describe_hardware(runtime)}
            training.save_checkpoint(payload, out_dir / "ckpt.pt")
            if config.half_weights_out:
                facts = {key: payload[key] for key in ("step", "images_seen", "elapsed", "hardware", "train_config")}
                training.save_checkpoint({**tokenizer_checkpoint(model, half=True), **facts},
                                         Path(config.half_weights_out))

    def run_eval() -> dict[str, float]:
        results = evaluate_psnr(model, eval_panels, runtime.device)
        loop.log.write({"kind": "eval", "step": loop.step, "tokens": loop.seen, **results})
        return results

    for fraction in loop.running():
        images = next(batches).to(runtime.device, non_blocking=True)
        lr = training.learning_rate(loop.step, fraction, config.lr, config.warmup_steps)
        losses, codes = train_step(model, optimizer, images, config, lr, runtime)
        usage += torch.bincount(codes.flatten(), minlength=shape.codebook_size)
        loop.advance(images.shape[0] * runtime.world_size)
        if config.restart_every and not config.decoder_only and loop.step % config.restart_every == 0:
            restart_codes(model, usage, images, runtime, loop.log, loop.step)
        if loop.log_due():
            # every rank joins the reductions; the log holds the global batch's losses
            means = {key: training.mean_over_ranks(float(value), runtime) for key, value in losses.items()}
            if runtime.is_main:
                record = {"kind": "train", "step": loop.step, "tokens": loop.seen, **means, "lr": lr,
                          "img/s": loop.rate(), "elapsed": loop.budget.elapsed()}
                loop.log.write(record)
                loop.log.plot(("loss", "loss_rec", "loss_vq"))
                loop.progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
        if runtime.is_main and config.eval_every and loop.step % config.eval_every == 0:
            run_eval()
        if loop.save_due():
            save()
    save()  # before the final evaluation, so a run stopped by its time limit keeps its weights
    if runtime.is_main:
        final = run_eval()
        logger.info("final PSNR: %s", ", ".join(f"{k} {v:.2f} dB" for k, v in final.items()))
        loop.log.plot(("loss", "loss_rec", "loss_vq"))
    training.shutdown_runtime(runtime)
    return out_dir / "ckpt.pt"


def restart_codes(model: torch.nn.Module, usage: torch.Tensor, images: torch.Tensor, runtime: training.TrainingProcess,
                  log: training.RunLog, step: int) -> None:
    """Restart the codes no rank used since the last restart on this batch's latents; count afresh."""
    if runtime.distributed:  # a code is alive when any rank used it
        torch.distributed.all_reduce(usage)
    used = int((usage > 0).sum())
    restarted = restart_dead_codes(model, usage, model.encode(images[:16] * 2 - 1).latents)
    if runtime.distributed:  # every rank keeps rank 0's codebook
        torch.distributed.broadcast(model.quantize.embedding.weight.data, src=0)
    log.write({"kind": "codes", "step": step, "codes_used": used, "restarted": restarted})
    usage.zero_()


def initial_tokenizer(config: TrainTokenizerConfig, resumed: dict | None = None) -> torch.nn.Module:
    """The resumed run's tokenizer, the --init one (a checkpoint, or a bundle's graphs read back), or a new one."""
    if resumed is not None:
        return tokenizer_from_checkpoint(resumed).train()
    if not config.init:
        return build_tokenizer(config.tokenizer_config())
    initial = tokenizer_from_bundle(config.init) if Path(config.init).is_dir() else load_tokenizer(config.init)
    if initial.tokenizer_config != config.tokenizer_config():
        logger.info("--init %s sets the architecture: %s", config.init, initial.tokenizer_config)
    return initial.train()


def _average_gradients(model: torch.nn.Module, world_size: int) -> None:
    """All-reduce gradients by hand: the VQ forward calls several submodules, which DDP's hooks don't cover."""
    for parameter in model.parameters():
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad /= world_size


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = training.parse_config(TrainTokenizerConfig, __doc__.splitlines()[0], argv)
    if math.isnan(config.lr) or config.lr <= 0:
        raise SystemExit("--lr must be positive")
    train(config)


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.train_tokenizer")
