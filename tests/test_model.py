"""The LVM, the visual sentences and the tokenizer: shapes, cache equivalence, checkpoints, round trips."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.model import LVM, LVMConfig, deepen, load_model, panel_cells, save_model
from engine.serving.sentences import (
    Vocabulary,
    build_sentence,
    image_span,
    max_images,
    puzzle_code_rows,
    select_panels,
    sentence_length,
    split_sentence,
)
from engine.tokenizer import (
    build_tokenizer,
    decode,
    encode,
    load_tokenizer,
    save_tokenizer,
    vq_forward,
)
from tests.helpers import tiny_training_tokenizer

TINY = LVMConfig(vocab_size=24, context_length=64, n_layer=2, d_model=32, n_head=4, n_kv_head=2, ffn_hidden=48)
TINY_TOKENIZER = tiny_training_tokenizer()


@pytest.fixture
def tiny_model() -> LVM:
    torch.manual_seed(0)
    return LVM(TINY).eval()


def test_forward_shapes(tiny_model: LVM) -> None:
    ids = torch.randint(0, TINY.vocab_size, (3, 10))
    logits, cache = tiny_model(ids)
    assert logits.shape == (3, 10, TINY.vocab_size)
    assert len(cache) == TINY.n_layer
    assert cache[0][0].shape == (3, TINY.n_kv_head, 10, TINY.head_dim)


def test_default_config_size_is_about_15m() -> None:
    assert 12e6 <= LVM(LVMConfig()).num_parameters() <= 15.5e6


@pytest.mark.parametrize("split", [1, 5, 9])
def test_kv_cache_matches_full_forward(tiny_model: LVM, split: int) -> None:
    """Prefill `split` tokens, then feed the rest one at a time: logits agree with one full pass to 1e-5."""
    ids = torch.randint(0, TINY.vocab_size, (2, 12))
    with torch.no_grad():
        full, _ = tiny_model(ids)
        pieces, cache = tiny_model(ids[:, :split])
        steps = [pieces]
        for position in range(split, ids.shape[1]):
            step_logits, cache = tiny_model(ids[:, position : position + 1], cache)
            steps.append(step_logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache[-1][1].shape[2] == ids.shape[1]


def test_empty_cache_equals_no_cache(tiny_model: LVM) -> None:
    ids = torch.randint(0, TINY.vocab_size, (2, 7))
    with torch.no_grad():
        plain, _ = tiny_model(ids)
        cached, _ = tiny_model(ids, tiny_model.empty_cache(2))
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5)


def test_wrong_cache_depth_is_refused(tiny_model: LVM) -> None:
    ids = torch.randint(0, TINY.vocab_size, (1, 3))
    _, cache = tiny_model(ids)
    with pytest.raises(ValueError, match="cached layers"):
        tiny_model(ids, cache[:1])


def test_parameter_names_follow_llama(tiny_model: LVM) -> None:
    names = set(tiny_model.state_dict())
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
            "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
            "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight"} <= names
    assert not any(name.endswith(".bias") for name in names)


def test_save_load_gives_identical_outputs(tiny_model: LVM, tmp_path) -> None:
    path = tmp_path / "lvm.pt"
    save_model(tiny_model, path)
    loaded = load_model(path).eval()
    assert loaded.config == TINY
    ids = torch.randint(0, TINY.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(loaded(ids)[0], tiny_model(ids)[0])


def test_deepen_adds_identity_blocks_that_training_can_move(tiny_model: LVM) -> None:
    """The grown model computes what the original did; its new blocks copy a neighbour but add nothing yet."""
    grown = deepen(tiny_model, 2).eval()
    assert grown.config.n_layer == 4 and tiny_model.config.n_layer == 2
    ids = torch.randint(0, TINY.vocab_size, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(grown(ids)[0], tiny_model(ids)[0], atol=0, rtol=0)
    old, new = tiny_model.model.layers, grown.model.layers
    assert new[0] is old[0] and new[2] is old[1]  # the originals keep their order
    assert new[1].self_attn.o_proj.weight.abs().max() == 0 and new[1].mlp.down_proj.weight.abs().max() == 0
    torch.testing.assert_close(new[1].self_attn.q_proj.weight, old[0].self_attn.q_proj.weight)
    grown.train()
    loss = grown(ids)[0].logsumexp(-1).mean()
    loss.backward()
    assert new[1].mlp.down_proj.weight.grad.abs().max() > 0  # the zero projections get a gradient
    with pytest.raises(ValueError, match="0 or more"):
        deepen(tiny_model, -1)
    with pytest.raises(ValueError, match="cannot spread"):
        deepen(tiny_model, 3)  # at most one new block after each old one


def test_panel_cells_follow_the_sentence_layout() -> None:
    """BOS and each image's first code share cell 0; panels count from the first image and stop at the last."""
    config = replace(TINY, panel_tokens=4)  # context 64: (64 - 1) / 4 -> 16 panels
    assert config.max_panels == 16 and TINY.max_panels == 0
    cell, panel = panel_cells(torch.tensor([0, 1, 2, 4, 5, 8, 9, 63, 200]), config)
    assert cell.tolist() == [0, 0, 1, 3, 0, 3, 0, 2, 3]
    assert panel.tolist() == [0, 0, 0, 0, 1, 1, 2, 15, 15]
    with pytest.raises(ValueError, match="panel_tokens"):
        replace(TINY, panel_tokens=-1)


def test_panel_positions_start_at_zero_and_then_tell_cells_apart(tiny_model: LVM) -> None:
    """A fresh model with panel positions computes what the rotary-only one does; non-zero tables change the
    logits, and the cached path still agrees with one full pass."""
    torch.manual_seed(0)
    with_panels = LVM(replace(TINY, panel_tokens=4)).eval()
    with_panels.load_state_dict(tiny_model.state_dict(), strict=False)
    ids = torch.randint(0, TINY.vocab_size, (2, 13))
    with torch.no_grad():
        torch.testing.assert_close(with_panels(ids)[0], tiny_model(ids)[0], atol=0, rtol=0)
        torch.nn.init.normal_(with_panels.model.panel_cell_embed.weight)
        full, _ = with_panels(ids)
        assert not torch.allclose(full, tiny_model(ids)[0], atol=1e-3)
        head, cache = with_panels(ids[:, :6])
        tail, _ = with_panels(ids[:, 6:], cache)
    torch.testing.assert_close(torch.cat([head, tail], dim=1), full, atol=1e-5, rtol=1e-5)


def test_panel_embedding_looks_up_the_context_and_computes_past_it() -> None:
    """The table lookup (which torch.compile can bound) gives panel_cells' ids, also for a cached decode that runs
    past the context, where it computes them instead."""
    config = replace(TINY, panel_tokens=4)
    backbone = LVM(config).model
    torch.nn.init.normal_(backbone.panel_cell_embed.weight)
    torch.nn.init.normal_(backbone.panel_index_embed.weight)
    for start, length in ((0, 64), (5, 7), (60, 10), (70, 3)):
        cell, panel = panel_cells(torch.arange(start, start + length), config)
        expected = backbone.panel_cell_embed(cell) + backbone.panel_index_embed(panel)
        torch.testing.assert_close(backbone.panel_embedding(start, length, config), expected, atol=0, rtol=0)


def test_panel_positions_compile_with_dynamic_lengths() -> None:
    """torch.compile(dynamic=True) of a model with panel positions runs and matches eager at two lengths (it
    failed in Inductor while the ids were computed with % and // on the symbolic length)."""
    torch.manual_seed(0)
    model = LVM(replace(TINY, panel_tokens=4, n_layer=1)).eval()
    torch.nn.init.normal_(model.model.panel_cell_embed.weight)
    compiled = torch.compile(model, dynamic=True)
    with torch.no_grad():
        for length in (11, 23):
            ids = torch.randint(0, TINY.vocab_size, (2, length))
            torch.testing.assert_close(compiled(ids)[0], model(ids)[0], atol=1e-4, rtol=1e-4)


def test_config_rejects_bad_heads() -> None:
    with pytest.raises(ValueError, match="divisible by n_head"):
        LVMConfig(d_model=30, n_head=4)
    with pytest.raises(ValueError, match="unknown LVMConfig fields"):
        LVMConfig.from_dict({"d_modle": 3})


# --- sentences ---------------------------------------------------------------------------------------------

VOCAB = Vocabulary(codebook_size=10, tokens_per_image=4)


def test_vocabulary_specials_and_padding() -> None:
    assert (VOCAB.bos, VOCAB.eos, VOCAB.vocab_size) == (10, 11, 16)
    assert Vocabulary().vocab_size == 1032
    assert Vocabulary.from_dict(VOCAB.to_dict()) == VOCAB


def test_build_and_split_sentence() -> None:
    rows = [np.arange(4), np.array([9, 8, 7, 6]), np.zeros((2, 2), dtype=np.int64)]
    sentence = build_sentence(rows, VOCAB, complete=True)
    assert sentence.dtype == np.int64
    assert len(sentence) == sentence_length(3, VOCAB, complete=True) == 14
    assert sentence[0] == VOCAB.bos and sentence[-1] == VOCAB.eos
    np.testing.assert_array_equal(sentence[image_span(1, VOCAB)], [9, 8, 7, 6])
    back = split_sentence(sentence, VOCAB)
    assert len(back) == 3 and all(np.array_equal(a, b.reshape(-1)) for a, b in zip(back, rows, strict=True))
    assert len(split_sentence(build_sentence(rows[:2], VOCAB), VOCAB)) == 2


@pytest.mark.parametrize("rows, message", [([np.arange(3)], "expected 4"), ([np.array([1, 2, 3, 10])], "outside")])
def test_build_sentence_rejects_bad_rows(rows, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_sentence(rows, VOCAB)


def test_split_sentence_rejects_partial_image() -> None:
    with pytest.raises(ValueError, match="whole images"):
        split_sentence(np.array([VOCAB.bos, 1, 2]), VOCAB)


def test_context_limits() -> None:
    assert max_images(640, Vocabulary()) == 9
    assert select_panels("matrix", 8, 9) == list(range(8))
    assert select_panels("sequence", 12, 9) == list(range(4, 12))  # the latest frames
    assert select_panels("analogy", 9, 20) == [2, 3, 4, 5, 6, 7, 8]  # at most 8 images with the answer
    assert select_panels("grid", 11, 9) == [4, 5, 6, 7, 8, 9, 10]  # 3 whole pairs + query
    rows = puzzle_code_rows("grid", [np.full(4, i) for i in range(5)], 4, answer_codes=np.full(4, 9))
    assert [int(r[0]) for r in rows] == [2, 3, 4, 9]


# --- tokenizer ----------------------------------------------------------------------------------------------

def test_tokenizer_encode_decode_shapes_and_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_tokenizer(TINY_TOKENIZER).eval()
    images = torch.rand(3, 3, 16, 16)
    codes = encode(model, images)
    assert codes.shape == (3, TINY_TOKENIZER.tokens_per_image) == (3, 16) and codes.dtype == torch.long
    pixels = decode(model, codes)
    assert pixels.shape == images.shape and 0.0 <= pixels.min() and pixels.max() <= 1.0
    save_tokenizer(model, tmp_path / "tok.pt")
    loaded = load_tokenizer(tmp_path / "tok.pt")
    assert torch.equal(encode(loaded, images), codes)
    with pytest.raises(ValueError, match="16x16"):
        encode(model, torch.rand(1, 3, 8, 8))


def test_tokenizer_training_reduces_loss() -> None:
    """A few Adam steps on a fixed batch lower reconstruction + VQ loss; the decoded codes round trip."""
    torch.manual_seed(0)
    model = build_tokenizer(TINY_TOKENIZER)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    images = torch.rand(4, 3, 16, 16).round()
    losses = []
    for _ in range(12):
        reconstruction, vq_loss, _ = vq_forward(model, images)
        loss = (reconstruction - images).abs().mean() + vq_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    model.eval()
    codes = encode(model, images)
    assert decode(model, codes).shape == images.shape
