"""Training machinery: data streams and seeds, schedule, loss weights, scoring, and short CPU runs with resume."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import train_lvm, train_tokenizer, training
from engine.data import ImageStream, PuzzleStream, StreamConfig, mix_families, parse_mix
from engine.model import LVM, LVMConfig, load_model
from engine.serving.sentences import Vocabulary
from engine.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer
from puzzles.seeds import HELD_OUT_START
from tests.helpers import TINY_LVM_FLAGS, tiny_training_tokenizer

TINY_TOKENIZER = tiny_training_tokenizer()


@pytest.fixture(scope="module")
def tiny_tokenizer_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.pt"
    save_tokenizer(build_tokenizer(TINY_TOKENIZER), path)
    return path


def test_parse_mix() -> None:
    assert parse_mix("matrix=4, analogy=2,grid=0") == {"matrix": 4.0, "analogy": 2.0}
    for bad, message in [("matrix", "family=weight"), ("chess=1", "unknown family"), ("matrix=x", "not a number"),
                         ("matrix=0", "no family"), ("matrix=-1", ">= 0"),
                         ("matrix:spiral=1", "unknown matrix layout 'spiral'"), ("grid:x=1", "no variants")]:
        with pytest.raises(ValueError, match=message):
            parse_mix(bad)


def test_a_mixture_entry_can_name_one_variant_of_a_family() -> None:
    mix = parse_mix("matrix:center=1,analogy:hflip=1")
    assert mix == {"matrix:center": 1.0, "analogy:hflip": 1.0} and mix_families(mix) == ["matrix", "analogy"]
    stream = PuzzleStream(StreamConfig(mix=mix, image_size=16, base_seed=1000))
    puzzles = [stream.puzzle_for(seed) for seed in range(1000, 1012)]
    assert {p.family for p in puzzles} == {"matrix", "analogy"}
    assert {p.layout["kind"] for p in puzzles if p.family == "matrix"} == {"center"}
    assert {p.meta["transform"] for p in puzzles if p.family == "analogy"} == {"hflip"}


def test_streams_use_distinct_training_seeds() -> None:
    def first_seeds(rank: int) -> list[int]:
        stream = PuzzleStream(StreamConfig(mix={"matrix": 1.0}, rank=rank, world_size=2, base_seed=100))
        seeds = stream.seeds()
        return [next(seeds) for _ in range(5)]

    rank0, rank1 = first_seeds(0), first_seeds(1)
    assert rank0 == [100, 102, 104, 106, 108] and rank1 == [101, 103, 105, 107, 109]


def test_training_refuses_held_out_seeds() -> None:
    with pytest.raises(ValueError, match="held-out"):
        PuzzleStream(StreamConfig(mix={"matrix": 1.0}, base_seed=HELD_OUT_START))
    stream = PuzzleStream(StreamConfig(mix={"matrix": 1.0}, base_seed=HELD_OUT_START - 1))
    seeds = stream.seeds()
    assert next(seeds) == HELD_OUT_START - 1
    with pytest.raises(ValueError, match="held-out"):
        next(seeds)


def test_puzzle_stream_yields_sentence_images() -> None:
    sample = next(iter(PuzzleStream(StreamConfig(mix={"matrix": 1.0}, image_size=16))))
    assert sample["images"].shape == (9, 16, 16, 3) and sample["images"].dtype == np.uint8
    assert sample["family"] == "matrix" and sample["config"]


def test_puzzle_stream_yields_candidates_only_when_asked() -> None:
    sample = next(iter(PuzzleStream(StreamConfig(mix={"matrix": 1.0}, image_size=16, candidates=True))))
    assert sample["candidates"].shape == (8, 16, 16, 3) and 0 <= sample["answer_index"] < 8
    assert "candidates" not in next(iter(PuzzleStream(StreamConfig(mix={"matrix": 1.0}, image_size=16))))


def test_image_stream_yields_float_images() -> None:
    image = next(iter(ImageStream(StreamConfig(mix={"sequence": 1.0}, image_size=16))))
    assert image.shape == (3, 16, 16) and 0.0 <= image.min() and image.max() <= 1.0


def test_learning_rate_schedule_and_budget() -> None:
    assert training.learning_rate(0, 0.0, 1.0, warmup_steps=10) == pytest.approx(0.1)
    assert training.learning_rate(10, 0.0, 1.0, warmup_steps=10) == pytest.approx(1.0)
    assert training.learning_rate(50, 0.5, 1.0, warmup_steps=10) == pytest.approx(0.55)
    assert training.learning_rate(99, 1.0, 1.0, warmup_steps=10) == pytest.approx(0.1)
    budget = training.Budget(steps=100, minutes=1.0, elapsed=45.0)  # time is further along than steps
    assert budget.fraction(10) == pytest.approx(0.75, abs=0.01)
    assert training.Budget(steps=None, minutes=1.0, elapsed=60.0).done(0)
    with pytest.raises(ValueError, match="--steps or --minutes"):
        training.Budget(steps=None, minutes=None)
    with pytest.raises(ValueError, match="unknown clock 'sundial'"):
        training.Budget(steps=None, minutes=1.0, clock="sundial")


def test_a_cpu_clock_budget_counts_the_compute_a_run_got_not_the_time_it_waited() -> None:
    wall, cpu = training.Budget(None, minutes=1.0), training.Budget(None, minutes=1.0, clock="cpu")
    time.sleep(0.3)  # waiting for a core another job holds
    assert wall.elapsed() >= 0.3 and cpu.elapsed() < 0.1
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # computing
        pass
    assert cpu.elapsed() >= 0.3


def test_batch_weights_answer_tokens(tiny_tokenizer_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_tokenizer_path)
    vocab = train_lvm.tokenizer_vocabulary(tokenizer)
    config = train_lvm.TrainLVMConfig(answer_weight=1.0, context_weight=0.3)
    samples = [{"images": np.zeros((3, 16, 16, 3), np.uint8)}, {"images": np.zeros((2, 16, 16, 3), np.uint8)}]
    batch = train_lvm.make_batch(samples, tokenizer, vocab, config, torch.device("cpu"))
    inputs, targets, weights, tokens = batch.inputs, batch.targets, batch.weights, batch.tokens
    assert inputs.shape == targets.shape == weights.shape == (2, 49) and tokens == 50 + 34
    assert torch.all(inputs[:, 0] == vocab.bos) and targets[0, -1] == vocab.eos
    np.testing.assert_allclose(weights[0].numpy(), [0.3] * 32 + [1.0] * 17)
    np.testing.assert_allclose(weights[1].numpy(), [0.3] * 16 + [1.0] * 17 + [0.0] * 16)  # padding ignored


def test_score_candidates_matches_per_candidate_likelihood() -> None:
    torch.manual_seed(0)
    model = LVM(LVMConfig(vocab_size=24, n_layer=1, d_model=32, n_head=2, n_kv_head=2, ffn_hidden=32)).eval()
    context = torch.randint(0, 16, (2, 5))
    candidates = torch.randint(0, 16, (2, 3, 4))
    scores = train_lvm.score_candidates(model, context, candidates, codebook_size=16)
    sentence = torch.cat([context[1], candidates[1, 2]])
    log_probs = torch.log_softmax(model(sentence[None])[0][0, :, :16], dim=-1)
    expected = sum(log_probs[4 + i, candidates[1, 2, i]] for i in range(4))
    assert scores.shape == (2, 3)
    assert scores[1, 2].item() == pytest.approx(expected.item(), abs=1e-4)


def test_held_out_checks_also_score_by_the_last_panel_rule() -> None:
    torch.manual_seed(0)
    model = LVM(LVMConfig(vocab_size=24, n_layer=1, d_model=32, n_head=2, n_kv_head=2, ffn_hidden=32)).eval()
    vocab = Vocabulary(codebook_size=16, tokens_per_image=4)
    rng = np.random.default_rng(0)
    items = [train_lvm.EvalItem("analogy", "x", np.concatenate([[vocab.bos], rng.integers(0, 16, 12)]),
                                rng.integers(0, 16, (5, 4)), int(rng.integers(0, 5))) for _ in range(6)]
    results = train_lvm.evaluate(model, items, vocab, torch.device("cpu"), bf16=False, group=4)
    assert model.training  # evaluation hands the model back in training mode
    model.eval()
    right = []
    for item in items:
        candidates = torch.from_numpy(item.candidates)[None]
        full = train_lvm.score_candidates(model, torch.from_numpy(item.context)[None], candidates, 16)
        alone = train_lvm.score_candidates(model, torch.from_numpy(item.context[[0, *range(9, 13)]])[None],
                                           candidates, 16)
        right.append(int((full - alone).argmax()) == item.answer_index)
    assert results["acc_pmi/analogy"] == pytest.approx(np.mean(right))
    assert results["n/analogy"] == 6 and "acc/analogy" in results


def test_train_lvm_runs_and_resumes(tiny_tokenizer_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "lvm"
    common = ["--tokenizer", str(tiny_tokenizer_path), "--out", str(out), *TINY_LVM_FLAGS]
    train_lvm.main([*common, "--steps", "2", "--half-weights-out", str(tmp_path / "half.pt")])
    first = torch.load(out / "ckpt.pt", weights_only=False)
    assert first["step"] == 2 and first["tokens_seen"] > 0
    train_lvm.main([*common, "--steps", "3", "--resume"])
    second = torch.load(out / "ckpt.pt", weights_only=False)
    assert second["step"] == 3 and second["tokens_seen"] > first["tokens_seen"]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    assert {"acc/matrix", "acc/sequence", "acc_pmi/matrix", "tokens"} <= set(
        next(r for r in records if r["kind"] == "eval"))
    assert (out / "loss_curve.png").stat().st_size > 0
    half = load_model(tmp_path / "half.pt")
    assert half.config.vocab_size == Vocabulary(16, 16).vocab_size


def test_train_tokenizer_runs(tmp_path: Path) -> None:
    out = tmp_path / "tokenizer"
    train_tokenizer.main(["--out", str(out), "--steps", "2", "--batch-size", "8", "--image-size", "16",
                          "--block-out-channels", "32", "32", "32", "--latent-channels", "32", "--vq-embed-dim", "4",
                          "--codebook-size", "16", "--workers", "0", "--eval-n", "1", "--log-every", "1",
                          "--restart-every", "1", "--device", "cpu", "--mix", "sequence=1"])
    checkpoint = torch.load(out / "ckpt.pt", weights_only=False)
    assert checkpoint["step"] == 2 and checkpoint["tokenizer_config"]["codebook_size"] == 16
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("psnr/matrix" in r for r in records)


@pytest.mark.parametrize("module", [train_lvm, train_tokenizer])
def test_cli_help(module, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0 and "--minutes" in capsys.readouterr().out


def test_train_lvm_needs_a_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--tokenizer"):
        train_lvm.main(["--out", str(tmp_path), "--steps", "1"])


def test_choice_loss_is_cross_entropy_of_candidate_likelihoods() -> None:
    """The cached candidate pass scores each candidate as scoring the whole sentence would."""
    torch.manual_seed(0)
    model = LVM(LVMConfig(vocab_size=24, n_layer=2, d_model=32, n_head=2, n_kv_head=1, ffn_hidden=32)).eval()
    sentences = torch.randint(0, 16, (3, 12))  # rows 0 and 2: a context of 7 tokens; row 1 is not a choice row
    candidates = torch.randint(0, 16, (2, 4, 5))
    answers = torch.tensor([3, 1])
    group = train_lvm.ChoiceGroup(torch.tensor([0, 2]), 7, candidates, answers)
    logits, cache = model(sentences)
    loss = train_lvm.choice_loss(model, logits, cache, [group], codebook_size=16)
    scores = train_lvm.score_candidates(model, sentences[[0, 2], :7], candidates, codebook_size=16)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(scores, answers).item(), abs=1e-4)
    loss.backward()
    assert model.model.embed_tokens.weight.grad.abs().sum() > 0
    per_code = train_lvm.choice_loss(model, logits, cache, [group], codebook_size=16, per_code=True)
    assert per_code.item() == pytest.approx(
        torch.nn.functional.cross_entropy(scores / candidates.shape[2], answers).item(), abs=1e-4)


def test_detached_choice_loss_reaches_the_context_only_through_the_first_code() -> None:
    """--choice-detach: the same loss value; the context's tokens get the gradient of the first code's
    prediction alone (made at the context's last position), none through the candidates' passes."""
    torch.manual_seed(0)
    model = LVM(LVMConfig(vocab_size=24, n_layer=2, d_model=32, n_head=2, n_kv_head=1, ffn_hidden=32)).eval()
    sentences = torch.randint(0, 16, (1, 12))
    sentences[0, 2] = 20  # a token only the context holds: candidates use codes < 16
    candidates = torch.randint(0, 16, (1, 4, 5))
    answer = torch.tensor([2])
    group = train_lvm.ChoiceGroup(torch.tensor([0]), 7, candidates, answer)

    def context_grad(loss_of) -> tuple[float, torch.Tensor]:
        model.zero_grad()
        logits, cache = model(sentences)
        loss = loss_of(logits, cache)
        loss.backward()
        return loss.item(), model.model.embed_tokens.weight.grad[20].clone()

    full, full_grad = context_grad(lambda logits, cache: train_lvm.choice_loss(model, logits, cache, [group], 16))
    detached, detached_grad = context_grad(
        lambda logits, cache: train_lvm.choice_loss(model, logits, cache, [group], 16, detach_context=True))
    with torch.no_grad():
        weights = train_lvm.score_candidates(model, sentences[:, :7], candidates, 16).softmax(-1)[0]
    weights[answer] -= 1.0  # d(cross-entropy)/d(score) = softmax - one-hot

    def first_code_only(logits, cache):
        return (weights * logits[0, 6, :16].log_softmax(-1)[candidates[0, :, 0]]).sum()

    _, expected = context_grad(first_code_only)
    assert detached == pytest.approx(full, abs=1e-6)
    assert torch.allclose(detached_grad, expected, atol=1e-6)
    assert not torch.allclose(full_grad, expected, atol=1e-4)


def test_make_batch_groups_candidates_by_context_length(tiny_tokenizer_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_tokenizer_path)
    vocab = train_lvm.tokenizer_vocabulary(tokenizer)
    config = train_lvm.TrainLVMConfig(choice_weight=0.5)
    blank = np.zeros((16, 16, 3), np.uint8)
    samples = [{"images": np.stack([blank] * 3), "candidates": np.stack([blank] * 4), "answer_index": 2},
               {"images": np.stack([blank] * 2)},
               {"images": np.stack([blank] * 2), "candidates": np.stack([blank] * 4), "answer_index": 0},
               {"images": np.stack([blank] * 3), "candidates": np.stack([blank] * 4), "answer_index": 1}]
    batch = train_lvm.make_batch(samples, tokenizer, vocab, config, torch.device("cpu"))
    groups = {group.context_length: group for group in batch.choices}
    assert set(groups) == {33, 17}  # BOS + 2 images, BOS + 1 image
    assert groups[33].rows.tolist() == [0, 3] and groups[33].answer_index.tolist() == [2, 1]
    assert groups[17].rows.tolist() == [2] and groups[17].candidates.shape == (1, 4, 16)
    without = train_lvm.make_batch(samples, tokenizer, vocab, train_lvm.TrainLVMConfig(), torch.device("cpu"))
    assert without.choices == []


def test_prompt_dropout_trains_some_sentences_on_the_last_prompt_image_alone(tiny_tokenizer_path: Path) -> None:
    """A dropped sample keeps its last prompt image and its answer, as the guided weak prompt reads them, and no
    candidates (nothing to choose among); the share follows --prompt-dropout."""
    codes = np.random.default_rng(0).integers(0, 16, (5, 16))  # the tiny tokenizer's 16 codes
    samples = [{"codes": codes, "candidate_codes": np.zeros((8, 16), np.int64), "answer_index": 3}] * 2000
    kept = train_lvm.drop_prompts(samples, 0.0, np.random.default_rng(0))
    assert kept is samples
    mixed = train_lvm.drop_prompts(samples, 0.25, np.random.default_rng(0))
    dropped = [sample for sample in mixed if "candidate_codes" not in sample]
    assert 0.22 < len(dropped) / len(samples) < 0.28
    np.testing.assert_array_equal(dropped[0]["codes"], codes[-2:])
    tokenizer = load_tokenizer(tiny_tokenizer_path)
    vocab = train_lvm.tokenizer_vocabulary(tokenizer)
    config = train_lvm.TrainLVMConfig(choice_weight=0.5)
    batch = train_lvm.make_batch([dropped[0], samples[0]], tokenizer, vocab, config, torch.device("cpu"))
    assert batch.inputs[0, :33].tolist() == [vocab.bos, *codes[-2].tolist(), *codes[-1].tolist()]
    assert [group.rows.tolist() for group in batch.choices] == [[1]]
    streamed = train_lvm.weak_prompt_sample({"images": np.zeros((4, 16, 16, 3), np.uint8), "candidates": None})
    assert set(streamed) == {"images"} and streamed["images"].shape == (2, 16, 16, 3)


def test_prompt_dropout_must_be_a_share(tiny_tokenizer_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--prompt-dropout must be in"):
        train_lvm.main(["--tokenizer", str(tiny_tokenizer_path), "--out", str(tmp_path), *TINY_LVM_FLAGS,
                        "--steps", "1", "--prompt-dropout", "1"])


def test_train_lvm_continues_a_bundle_and_exports_on_its_tokenizer(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """Tokenizer and starting weights come from an exported bundle; the export reuses its tokenizer graphs."""
    from engine import export
    from engine.serving.runtime import Bundle
    from engine.tokenizer import BundleTokenizer
    from tests.helpers import build_tiny_bundle

    _, tokenizer_path, lvm_path = build_tiny_bundle()
    start = train_lvm.model_from_bundle(tiny_bundle_dir, Vocabulary(32, 16))
    for name, tensor in load_model(lvm_path).state_dict().items():
        torch.testing.assert_close(start.state_dict()[name], tensor, atol=1e-6, rtol=0)
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    torch_tokenizer = load_tokenizer(tokenizer_path)
    np.testing.assert_array_equal(BundleTokenizer(tiny_bundle_dir).encode_uint8(images),
                                  train_lvm.encode_uint8(torch_tokenizer, images, torch.device("cpu")))

    out = tmp_path / "lvm"
    train_lvm.main(["--tokenizer", str(tiny_bundle_dir), "--init-bundle", str(tiny_bundle_dir), "--out", str(out),
                    "--steps", "2", "--choice-weight", "0.1", "--batch-size", "3", "--workers", "0",
                    "--log-every", "1", "--eval-n", "1", "--device", "cpu", "--mix", "sequence=1"])
    trained = torch.load(out / "ckpt.pt", weights_only=False)
    assert trained["step"] == 2 and trained["lvm_config"] == load_model(lvm_path).config.to_dict()
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    for record in (r for r in logged if r["kind"] == "train"):  # the loss and its parts, each logged
        assert record["loss"] == pytest.approx(record["loss/next_token"] + 0.1 * record["loss/choice"], rel=1e-5)
    sizes = train_lvm.MODEL_SIZE_KEYS  # the bundle's sizes are recorded, not the size flags' defaults
    assert {key: trained["train_config"][key] for key in sizes} == {key: trained["lvm_config"][key] for key in sizes}
    assert trained["tokens_seen"] > 1234  # counted on from the bundle's provenance (tests/test_export.py)
    export.main(["--tokenizer", str(tiny_bundle_dir), "--lvm", str(out / "ckpt.pt"), "--out", str(tmp_path / "b")])
    for graph in ("encoder.onnx", "decoder.onnx"):
        assert (tmp_path / "b" / graph).read_bytes() == (tiny_bundle_dir / graph).read_bytes()
    bundle = Bundle.load(tmp_path / "b")
    assert bundle.manifest["provenance"]["tokenizer"]["from_bundle"] == "tiny-test"
    assert bundle.encode(list(images)).shape == (5, 16)


def test_panel_positions_are_added_to_a_bundle_at_zero_and_trained(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """--panel-positions on a bundle without them: the start computes what the bundle does, training moves them."""
    plain = train_lvm.model_from_bundle(tiny_bundle_dir, Vocabulary(32, 16)).eval()
    extended = train_lvm.model_from_bundle(tiny_bundle_dir, Vocabulary(32, 16), panel_positions=True).eval()
    assert extended.config.panel_tokens == 16 and not plain.config.panel_tokens
    ids = torch.randint(0, 32, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(extended(ids)[0], plain(ids)[0], atol=0, rtol=0)

    out = tmp_path / "lvm"
    train_lvm.main(["--tokenizer", str(tiny_bundle_dir), "--init-bundle", str(tiny_bundle_dir), "--panel-positions",
                    "--out", str(out), "--steps", "2", "--lr", "1e-2", "--batch-size", "3", "--workers", "0",
                    "--log-every", "1", "--eval-n", "1", "--device", "cpu", "--mix", "sequence=1"])
    trained = load_model(out / "ckpt.pt")
    assert trained.config.panel_tokens == 16
    assert trained.model.panel_cell_embed.weight.abs().max() > 0


def test_grow_layers_deepens_a_bundle_and_resumes_at_its_new_depth(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """--grow-layers starts a deeper model from a bundle; the checkpoint and a resume keep the new depth."""
    depth = train_lvm.model_from_bundle(tiny_bundle_dir, Vocabulary(32, 16)).config.n_layer
    out = tmp_path / "lvm"
    args = ["--tokenizer", str(tiny_bundle_dir), "--init-bundle", str(tiny_bundle_dir), "--grow-layers", "1",
            "--out", str(out), "--batch-size", "3", "--workers", "0", "--log-every", "1", "--eval-n", "1",
            "--device", "cpu", "--mix", "sequence=1"]
    train_lvm.main([*args, "--steps", "1"])
    assert load_model(out / "ckpt.pt").config.n_layer == depth + 1
    train_lvm.main([*args, "--steps", "2", "--resume"])
    trained = torch.load(out / "ckpt.pt", weights_only=False)
    assert trained["step"] == 2 and trained["lvm_config"]["n_layer"] == depth + 1
    with pytest.raises(ValueError, match="--init-bundle"):
        train_lvm.main(["--tokenizer", str(tiny_bundle_dir), "--grow-layers", "1", "--out", str(tmp_path / "x"),
                        "--steps", "1", "--workers", "0", "--device", "cpu"])


def _randomized_tokenizer_bundle(directory: Path) -> torch.nn.Module:
    """The tiny test tokenizer with every weight random (norms too) and fp16-exact, exported with fp16 storage."""
    from engine import export
    from tests.test_export import LVM_CONFIG, TOKENIZER_CONFIG

    torch.manual_seed(1)
    tokenizer = build_tokenizer(TOKENIZER_CONFIG)
    with torch.no_grad():
        for parameter in tokenizer.parameters():
            parameter.copy_((parameter + 0.1 * torch.randn_like(parameter)).half().float())
    export.export_bundle(tokenizer, LVM(LVM_CONFIG), directory, fp16_storage=True)
    return tokenizer


def test_tokenizer_from_bundle_reads_back_the_exported_weights(tmp_path: Path) -> None:
    """Named, folded (GroupNorm scale and shift) and renamed (attention, transposed) weights all come back."""
    from engine.tokenizer import tokenizer_from_bundle

    original = _randomized_tokenizer_bundle(tmp_path).state_dict()
    restored = tokenizer_from_bundle(tmp_path).state_dict()
    assert restored.keys() == original.keys()
    for name, tensor in original.items():
        torch.testing.assert_close(restored[name], tensor, atol=0, rtol=0, msg=name)


def test_decoder_only_fine_tune_keeps_the_codes(tmp_path: Path) -> None:
    original = _randomized_tokenizer_bundle(tmp_path / "bundle").state_dict()
    out = tmp_path / "decoder"
    train_tokenizer.main(["--init", str(tmp_path / "bundle"), "--decoder-only", "--out", str(out), "--steps", "2",
                          "--batch-size", "4", "--lr", "1e-2", "--warmup-steps", "0", "--workers", "0",
                          "--eval-n", "1", "--log-every", "1", "--device", "cpu", "--mix", "sequence=1"])
    tuned = load_tokenizer(out / "ckpt.pt").state_dict()
    changed = {name for name, tensor in tuned.items() if not torch.equal(tensor, original[name])}
    assert changed and all(name.startswith(("decoder.", "post_quant_conv.")) for name in changed)
    assert "decoder.conv_out.weight" in changed
    with pytest.raises(ValueError, match="--init"):
        train_tokenizer.main(["--decoder-only", "--out", str(tmp_path / "none"), "--steps", "1"])


def test_resumed_log_drops_records_written_after_the_last_checkpoint(tmp_path: Path) -> None:
    first = training.RunLog(tmp_path)
    for step in (20, 40, 60):
        first.write({"kind": "train", "step": step, "loss": 1.0})
    first.write({"kind": "eval", "step": 60, "acc/matrix": 0.5})
    resumed = training.RunLog(tmp_path, resume_step=40)  # the checkpoint was saved at step 40
    resumed.write({"kind": "train", "step": 60, "loss": 0.9})
    on_disk = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert on_disk == resumed.records
    assert [(r["step"], r["loss"]) for r in on_disk] == [(20, 1.0), (40, 1.0), (60, 0.9)]
    assert training.RunLog(tmp_path).records == [] and not (tmp_path / "log.jsonl").exists()  # a fresh run starts over
