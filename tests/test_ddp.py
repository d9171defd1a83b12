"""Training on two processes: torchrun + DistributedDataParallel (gloo on CPU) with the real training scripts.

Checks: both CLIs run under `python -m torch.distributed.run --nproc-per-node 2`, only rank 0 writes, resume
works; on a fixed global batch the ranks hold identical weights after every step, and the loss equals a
one-process run on the same batch (LOSS_TOLERANCE). The fixed-batch check runs this module under torchrun:

    OMP_NUM_THREADS=1 python -m torch.distributed.run --nproc-per-node 2 -m tests.test_ddp OUT_DIR
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist

from engine import train_lvm, train_tokenizer, training
from engine.data import sentence_images
from engine.model import LVM
from engine.serving.sentences import max_images
from engine.tokenizer import build_tokenizer, load_frozen_tokenizer
from puzzles.generators import generate
from puzzles.images import to_square
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 16
GLOBAL_BATCH = 4  # sentences (LVM) per step over all ranks; the tokenizer gets 2 images per sentence
FIXED_STEPS = 2
TORCHRUN_TIMEOUT_S = 300  # one launch takes 10-25 s here; a rank whose peer died waits 30 min in gloo
# fp32 on both sides; only the order of the gradient sums differs (all-reduce vs one batch)
LOSS_TOLERANCE = 1e-5  # relative; measured about 1e-6
WEIGHT_TOLERANCE = 1e-5  # mean |difference| of the weights after FIXED_STEPS steps (1% of one step at lr 1e-3)
TOKENIZER_FLAGS = ["--image-size", str(IMAGE_SIZE), "--block-out-channels", "32", "32", "32", "--latent-channels",
                   "32", "--vq-embed-dim", "4", "--codebook-size", "16"]
LVM_FLAGS = ["--n-layer", "1", "--d-model", "32", "--n-head", "2", "--n-kv-head", "2", "--ffn-hidden", "64",
             "--context-length", "160"]
COMMON_FLAGS = ["--workers", "0", "--log-every", "1", "--device", "cpu", "--eval-n", "1"]


def torchrun(*args: str, timeout: float = TORCHRUN_TIMEOUT_S) -> None:
    """Two CPU processes through torch.distributed.run on a free port; fails with the processes' output."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("DATABASE_URL", None)
    what = " ".join(args[:2])
    # a file, not a pipe: a rank left running can never block the read of the output
    with tempfile.TemporaryFile("w+") as output:
        launcher = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
        try:
            launcher.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_launch(launcher)
            output.seek(0)
            raise AssertionError(f"torchrun {what} ran past {timeout} s:\n{output.read()[-4000:]}") from None
        output.seek(0)
        text = output.read()
    assert launcher.returncode == 0, f"torchrun {what} failed:\n{text[-6000:]}"


def stop_launch(launcher: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM to torchrun, which stops its ranks; SIGKILL to whatever is left after `grace_s`.

    The ranks run in sessions of their own, so they are found as the launcher's children, not by group.
    """
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    ranks = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    launcher.send_signal(signal.SIGTERM)
    try:
        launcher.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        launcher.kill()
        launcher.wait()
    for pid in ranks:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def read_log(out_dir: Path, kind: str = "train") -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    return [record for record in records if record["kind"] == kind]


# --- the fixed-batch run, shared by the torchrun worker and the one-process reference ------------------------

def lvm_config(tokenizer_path: str) -> train_lvm.TrainLVMConfig:
    return train_lvm.TrainLVMConfig(tokenizer=tokenizer_path, n_layer=1, d_model=32, n_head=2, n_kv_head=2,
                                    ffn_hidden=64, context_length=160, bf16=False, mix="matrix=1", device="cpu")


def rank_share(items: list[Any], runtime: training.TrainingProcess) -> list[Any]:
    """This rank's contiguous slice of the global batch."""
    per_rank = len(items) // runtime.world_size
    return items[runtime.rank * per_rank : (runtime.rank + 1) * per_rank]


def flat_parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([parameter.detach().flatten() for parameter in model.parameters()])


def fixed_lvm_run(tokenizer_path: str, runtime: training.TrainingProcess) -> dict[str, Any]:
    """FIXED_STEPS LVM steps on the same GLOBAL_BATCH matrix sentences, split over the ranks."""
    config = lvm_config(tokenizer_path)
    tokenizer = load_frozen_tokenizer(tokenizer_path)
    vocab = train_lvm.tokenizer_vocabulary(tokenizer)
    limit = max_images(config.context_length, vocab)
    torch.manual_seed(0)
    model = LVM(config.lvm_config(vocab))
    optimizer = training.make_optimizer(model, config.lr, config.weight_decay, runtime.device)
    trained = training.distribute(model, runtime)
    # matrix sentences all have 9 images: equal loss-weight sums per rank, so DDP's mean gradient is the global one
    samples = [{"images": sentence_images(generate("matrix", seed, size=IMAGE_SIZE), limit, IMAGE_SIZE)}
               for seed in range(GLOBAL_BATCH)]
    batch = train_lvm.make_batch(rank_share(samples, runtime), tokenizer, vocab, config, runtime.device)
    losses = []
    for _ in range(FIXED_STEPS):
        step = train_lvm.train_step(trained, optimizer, batch, config, config.lr, runtime.device, vocab.codebook_size)
        losses.append(training.mean_over_ranks(float(step["loss"]), runtime))
    stream_seeds = [sample["seed"] for _, sample in zip(range(3), train_lvm.make_stream(config, runtime, IMAGE_SIZE,
                                                                                         limit), strict=False)]
    return {"losses": losses, "parameters": flat_parameters(model), "stream_seeds": stream_seeds}


def fixed_tokenizer_run(runtime: training.TrainingProcess) -> dict[str, Any]:
    """FIXED_STEPS tokenizer steps on the same images (panels of sequence puzzles), split over the ranks."""
    config = train_tokenizer.TrainTokenizerConfig(image_size=IMAGE_SIZE, block_out_channels=(32, 32, 32),
                                                  latent_channels=32, vq_embed_dim=4, codebook_size=16, bf16=False)
    torch.manual_seed(0)
    model = build_tokenizer(config.tokenizer_config())
    optimizer = training.make_optimizer(model, config.lr, config.weight_decay, runtime.device)
    panels = [panel for seed in range(GLOBAL_BATCH) for panel in generate("sequence", seed, size=IMAGE_SIZE).panels[:2]]
    images = torch.from_numpy(np.stack([to_square(panel, IMAGE_SIZE) for panel in panels]))
    images = images.permute(0, 3, 1, 2).float() / 255.0
    share = images[rank_share(list(range(len(images))), runtime)]
    losses = []
    for _ in range(FIXED_STEPS):
        step_losses, _ = train_tokenizer.train_step(model, optimizer, share, config, config.lr, runtime)
        losses.append(training.mean_over_ranks(float(step_losses["loss"]), runtime))
    return {"losses": losses, "parameters": flat_parameters(model)}


def _largest_rank_difference(parameters: torch.Tensor) -> float:
    """max |rank r's weights - rank 0's weights| over all ranks (0.0 when they are bit-identical)."""
    gathered = [torch.empty_like(parameters) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, parameters)
    return max(float((other - gathered[0]).abs().max()) for other in gathered)


def tokenizer_cli_args(out: Path) -> list[str]:
    return ["--out", str(out), "--steps", "2", "--batch-size", "4", *TOKENIZER_FLAGS, *COMMON_FLAGS,
            "--restart-every", "1", "--mix", "sequence=1"]


def worker(out_dir: Path) -> None:
    """Entry point under torchrun: the tokenizer CLI (2 steps), then both fixed-batch runs on its tokenizer;
    rank 0 writes report.json and the final weights (weights.pt) for the test to compare."""
    runtime = training.setup_runtime("cpu")
    train_tokenizer.main(tokenizer_cli_args(out_dir / "tokenizer"))  # keeps the group joined above
    dist.barrier()  # rank 0 saves the tokenizer after the other ranks have finished
    lvm = fixed_lvm_run(str(out_dir / "tokenizer" / "ckpt.pt"), runtime)
    tokenizer = fixed_tokenizer_run(runtime)
    seeds: list[list[int]] = [[] for _ in range(runtime.world_size)]
    dist.all_gather_object(seeds, lvm["stream_seeds"])
    report = {"world_size": runtime.world_size, "stream_seeds": seeds,
              "lvm_losses": lvm["losses"], "lvm_rank_difference": _largest_rank_difference(lvm["parameters"]),
              "tokenizer_losses": tokenizer["losses"],
              "tokenizer_rank_difference": _largest_rank_difference(tokenizer["parameters"])}
    if runtime.is_main:
        torch.save({"lvm": lvm["parameters"], "tokenizer": tokenizer["parameters"]}, out_dir / "weights.pt")
        (out_dir / "report.json").write_text(json.dumps(report))
    training.shutdown_runtime(runtime)


# --- the tests --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One torchrun of `worker`: the directory with tokenizer/ (the CLI's output), report.json, weights.pt."""
    out_dir = tmp_path_factory.mktemp("two_ranks")
    torchrun("-m", "tests.test_ddp", str(out_dir))
    return out_dir


def test_tokenizer_cli_on_two_ranks_writes_once(two_rank_run: Path) -> None:
    state = torch.load(two_rank_run / "tokenizer" / "ckpt.pt", weights_only=False)
    assert state["step"] == 2 and state["hardware"].startswith("2 x cpu")
    assert state["images_seen"] == 2 * 4 * 2  # steps x batch x ranks
    assert [r["step"] for r in read_log(two_rank_run / "tokenizer")] == [1, 2]  # one writer: no duplicate records
    assert len(read_log(two_rank_run / "tokenizer", "eval")) == 1


def test_lvm_cli_on_two_ranks_writes_once_and_resumes(two_rank_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "lvm"
    common = ["-m", "engine.train_lvm", "--tokenizer", str(two_rank_run / "tokenizer" / "ckpt.pt"), "--out",
              str(out), *LVM_FLAGS, *COMMON_FLAGS, "--batch-size", "2", "--mix", "matrix=1,sequence=1"]
    torchrun(*common, "--steps", "2")
    first = torch.load(out / "ckpt.pt", weights_only=False)
    assert first["step"] == 2 and first["sentences_seen"] == 2 * 2 * 2 and first["hardware"].startswith("2 x cpu")
    torchrun(*common, "--steps", "3", "--resume")
    second = torch.load(out / "ckpt.pt", weights_only=False)
    assert second["step"] == 3 and second["sentences_seen"] == 3 * 2 * 2
    assert second["tokens_seen"] > first["tokens_seen"]
    assert [r["step"] for r in read_log(out)] == [1, 2, 3]
    assert len(read_log(out, "eval")) == 2  # rank 0 evaluates at the end of each run, no other rank
    assert sorted(path.name for path in out.iterdir()) == ["ckpt.pt", "log.jsonl", "loss_curve.png"]


def test_two_ranks_agree_with_one_process(two_rank_run: Path) -> None:
    report = json.loads((two_rank_run / "report.json").read_text())
    two_ranks = torch.load(two_rank_run / "weights.pt")
    assert report["world_size"] == 2
    assert report["lvm_rank_difference"] == 0.0 and report["tokenizer_rank_difference"] == 0.0  # bit-identical
    rank0_seeds, rank1_seeds = report["stream_seeds"]
    assert len(rank0_seeds) == 3 and not set(rank0_seeds) & set(rank1_seeds)

    one_process = training.TrainingProcess(device=torch.device("cpu"))
    lvm = fixed_lvm_run(str(two_rank_run / "tokenizer" / "ckpt.pt"), one_process)
    tokenizer = fixed_tokenizer_run(one_process)
    np.testing.assert_allclose(report["lvm_losses"], lvm["losses"], rtol=LOSS_TOLERANCE)
    np.testing.assert_allclose(report["tokenizer_losses"], tokenizer["losses"], rtol=LOSS_TOLERANCE)
    assert report["lvm_losses"][1] != report["lvm_losses"][0]  # the second loss saw the first step's update
    # Adam's first steps are about lr * sign(gradient): an element whose gradient is ~0 may flip, so compare means
    for name, weights in (("lvm", lvm["parameters"]), ("tokenizer", tokenizer["parameters"])):
        assert float((two_ranks[name] - weights).abs().mean()) < WEIGHT_TOLERANCE, name


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
