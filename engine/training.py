"""Shared training machinery: device and precision, DDP under torchrun, LR schedule, budget, checkpoints, logs.

Used by `engine.train_tokenizer` and `engine.train_lvm`. A run launched with `torchrun` finds RANK and
WORLD_SIZE in the environment and joins a process group (gloo on CPU, NCCL on CUDA); only rank 0 writes.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

logger = logging.getLogger(__name__)


@dataclass
class TrainingProcess:
    """Where this process trains: device, rank and world size (1 without torchrun)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this runtime joined the process group, so it also leaves it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def setup_runtime(device_name: str) -> TrainingProcess:
    """Pick the device; join the process group when launched by torchrun (env RANK/WORLD_SIZE) unless joined."""
    device = pick_device(device_name)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    # a caller that already joined (one launch running several trainings) keeps its group
    owns_group = world_size > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return TrainingProcess(device=device, rank=rank, world_size=world_size, local_rank=local_rank,
                           owns_group=owns_group)


def describe_hardware(runtime: TrainingProcess) -> str:
    """What trained: e.g. '1 x NVIDIA H100 80GB HBM3' or '2 x cpu (16 threads)', for checkpoint provenance."""
    if runtime.device.type == "cuda":
        name = torch.cuda.get_device_name(runtime.device)
    else:
        name = f"cpu ({torch.get_num_threads()} threads)"
    return f"{runtime.world_size} x {name}"


def distribute(model: torch.nn.Module, runtime: TrainingProcess) -> torch.nn.Module:
    """The model wrapped in DistributedDataParallel under torchrun (its backward averages gradients over ranks)."""
    if not runtime.distributed:
        return model
    device_ids = None if runtime.device.type == "cpu" else [runtime.device.index]
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def mean_over_ranks(value: float, runtime: TrainingProcess) -> float:
    """The mean of a per-rank number (e.g. the loss) over all ranks; every rank must call it at the same step."""
    if not runtime.distributed:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=runtime.device)
    dist.all_reduce(total)
    return float(total.item()) / runtime.world_size


def shutdown_runtime(runtime: TrainingProcess) -> None:
    if runtime.owns_group and dist.is_initialized():
        # all ranks leave together: tearing down while rank 0 still saves or evaluates could hang it at exit
        dist.barrier()
        dist.destroy_process_group()


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU (AMX) and CUDA; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off for a while (setup_runtime turns it on for training speed): frozen encoders then pick the codes
    the exported fp32 graph picks."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def default_workers() -> int:
    return max(0, min(8, (os.cpu_count() or 1) - 1))


CLOCKS = {"wall": time.monotonic, "cpu": time.process_time}  # what a budget's minutes count


class Budget:
    """Training length by steps, wall-clock minutes, or both; `fraction` drives the LR schedule.

    With minutes set, the cosine follows the elapsed-time fraction (a GPU run has fixed minutes); with both
    set, whichever is further along wins, and training stops at the first limit reached. Minutes count wall-clock
    time, or with clock "cpu" this process's CPU time: two runs sharing a busy machine then get the same compute.
    """

    def __init__(self, steps: int | None, minutes: float | None, start_step: int = 0, elapsed: float = 0.0,
                 clock: str = "wall") -> None:
        if not steps and not minutes:
            raise ValueError("give --steps or --minutes (or both)")
        if clock not in CLOCKS:
            raise ValueError(f"unknown clock {clock!r}; choose from {', '.join(CLOCKS)}")
        self.steps, self.minutes = steps, minutes
        self.start_step = start_step
        self.elapsed_before = elapsed  # seconds spent in earlier runs of a resumed training
        self.now = CLOCKS[clock]
        self.started = self.now()

    def elapsed(self) -> float:
        return self.elapsed_before + self.now() - self.started

    def fraction(self, step: int) -> float:
        parts = []
        if self.steps:
            parts.append(step / self.steps)
        if self.minutes:
            parts.append(self.elapsed() / (60.0 * self.minutes))
        return min(1.0, max(parts))

    def done(self, step: int) -> bool:
        return self.fraction(step) >= 1.0

    def synced_fraction(self, step: int, runtime: TrainingProcess) -> float:
        """Rank 0's fraction on every rank, so all ranks use one LR and stop at the same step."""
        fraction = self.fraction(step)
        if not runtime.distributed:
            return fraction
        value = torch.tensor([fraction], dtype=torch.float64, device=runtime.device)
        dist.broadcast(value, src=0)
        return float(value.item())


def resumed_base_seed(seed: int, seen: int) -> int:
    """The first data seed of a run: a resumed one (seen > 0) starts past every seed the earlier run can have
    drawn, with a margin for what its loaders had prefetched."""
    return seed + (seen + 100_000 if seen else 0)


class TrainingLoop:
    """The skeleton both trainers share: steps under a step/time budget, what a checkpoint needs to resume (step,
    units seen, elapsed time), a log window with its rate, periodic checkpoints and a progress bar.

    A trainer asks `running()` for the next budget fraction, calls `advance(units)` after each step, writes a
    record when `log_due()` (with `rate()`, units per second over the window) and calls `save` when `save_due()`.
    """

    def __init__(self, out_dir: Path, runtime: TrainingProcess, steps: int | None, minutes: float | None,
                 log_every: int, save_every_min: float, desc: str, resumed: dict[str, Any] | None = None,
                 seen_key: str = "tokens_seen", clock: str = "wall") -> None:
        self.runtime, self.log_every, self.save_every_s = runtime, log_every, 60.0 * save_every_min
        self.seen_key = seen_key
        self.step = int(resumed["step"]) if resumed else 0
        self.seen = int(resumed[seen_key]) if resumed else 0
        self.budget = Budget(steps, minutes, self.step, float(resumed["elapsed"]) if resumed else 0.0, clock)
        self.log = RunLog(out_dir, enabled=runtime.is_main, resume_step=self.step if resumed else None)
        self.progress = tqdm(total=steps, initial=self.step, disable=not runtime.is_main, desc=desc)
        self._last_save = self._window_start = time.monotonic()
        self._window_units = 0

    def running(self) -> Iterator[float]:
        """The budget fraction before each step, until the budget is spent (the same on every rank)."""
        while (fraction := self.budget.synced_fraction(self.step, self.runtime)) < 1.0:
            yield fraction
        self.progress.close()

    def advance(self, units: int) -> None:
        """One step done on `units` tokens or images (all ranks together)."""
        self.step += 1
        self.seen += units
        self._window_units += units
        self.progress.update(1)

    def log_due(self) -> bool:
        return self.step % self.log_every == 0

    def rate(self) -> float:
        """Units per second since the last call (the log window), then a new window starts."""
        now = time.monotonic()
        rate = self._window_units / max(1e-9, now - self._window_start)
        self._window_start, self._window_units = now, 0
        return rate

    def save_due(self) -> bool:
        if time.monotonic() - self._last_save <= self.save_every_s:
            return False
        self._last_save = time.monotonic()
        return True

    def facts(self) -> dict[str, Any]:
        """What a checkpoint records to resume from."""
        return {"step": self.step, self.seen_key: self.seen, "elapsed": self.budget.elapsed()}


def learning_rate(step: int, fraction: float, peak: float, warmup_steps: int, min_ratio: float = 0.1) -> float:
    """Linear warmup over steps, then cosine from peak to peak * min_ratio over the budget fraction."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, fraction)))
    return peak * (min_ratio + (1.0 - min_ratio) * cosine)


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW with decay on matrices only (not norms, embeddings' biases or the codebook's 1-D params)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=device.type == "cuda")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write atomically (temp file + rename) so an interrupted save never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to resume not found: {path}")
    return torch.load(path, map_location=device, weights_only=False)


class RunLog:
    """JSON Lines log (one record per line) plus a loss-curve PNG, both rewritten as training goes."""

    def __init__(self, out_dir: Path, enabled: bool = True, resume_step: int | None = None) -> None:
        """resume_step: the step of the checkpoint a resumed run starts from; records past it are dropped, as the
        earlier run wrote them after its last save and this run does those steps again."""
        self.path = out_dir / "log.jsonl"
        self.plot_path = out_dir / "loss_curve.png"
        self.enabled = enabled
        self.records: list[dict[str, Any]] = []
        if enabled:
            out_dir.mkdir(parents=True, exist_ok=True)
            if resume_step is not None and self.path.is_file():
                records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
                self.records = [r for r in records if r.get("step", 0) <= resume_step]
                self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))
            elif self.path.exists():
                self.path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.records.append(record)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def plot(self, y_keys: tuple[str, ...] = ("loss",), x_key: str = "tokens") -> None:
        if not self.enabled or not self.records:
            return
        plot_curves(self.records, self.plot_path, y_keys, x_key)


def plot_curves(records: list[dict[str, Any]], path: Path, y_keys: tuple[str, ...], x_key: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # per-family accuracy only (acc/<family>); per-configuration curves stay in the JSON log
    eval_keys = sorted({k for r in records if r.get("kind") == "eval" for k in r
                        if k.startswith("acc/") and k.count("/") == 1})
    figure, axes = plt.subplots(1, 2 if eval_keys else 1, figsize=(11 if eval_keys else 6, 4), squeeze=False)
    train = [r for r in records if r.get("kind", "train") == "train"]
    for key in y_keys:
        points = [(r[x_key], r[key]) for r in train if key in r and x_key in r]
        if points:
            axes[0][0].plot(*zip(*points, strict=True), label=key)
    axes[0][0].set_xlabel(x_key)
    axes[0][0].set_yscale("log")
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend()
    for key in eval_keys:
        points = [(r[x_key], r[key]) for r in records if r.get("kind") == "eval" and key in r]
        axes[0][1].plot(*zip(*points, strict=True), marker="o", label=key.removeprefix("acc/"))
    if eval_keys:
        axes[0][1].set_xlabel(x_key)
        axes[0][1].set_ylabel("multiple-choice accuracy")
        axes[0][1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def infinite(loader: torch.utils.data.DataLoader) -> Iterator[Any]:
    while True:
        yield from loader


def parse_config(config_class: type, description: str, argv: list[str] | None = None) -> Any:
    """argparse built from a dataclass: one --flag per field (underscores become dashes), help from metadata."""
    import argparse
    import dataclasses

    parser = argparse.ArgumentParser(description=description)
    for spec in dataclasses.fields(config_class):
        flag = "--" + spec.name.replace("_", "-")
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
        help_text = spec.metadata.get("help", "")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=int, nargs="+", default=default, help=help_text)
        else:
            kind = spec.metadata.get("type", type(default) if default is not None else str)
            parser.add_argument(flag, type=kind, default=default, help=f"{help_text} (default: {default})")
    values = vars(parser.parse_args(argv))
    return config_class(**{key: tuple(v) if isinstance(v, list) else v for key, v in values.items()})
