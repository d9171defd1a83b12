"""What a visitor sees on Play: the shipped bundle, at the sampling defaults its manifest names, answers the seeded
bank's matrix and analogy examples with panels in the puzzle's own colours, not with the multicoloured noise that
random codes decode to (and that plain sampling at temperature 1 gave)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app import bank_views, solving
from engine.serving.runtime import Bundle
from puzzles.images import to_square

BUNDLE = Path(__file__).resolve().parent.parent / "engine" / "bundles" / "default"
PALETTE_SHARE = 0.005  # a colour bin belongs to the puzzle's palette when this share of its panel pixels fall in it


def colour_bins(image: np.ndarray) -> np.ndarray:
    """Each pixel's bin of a 4 x 4 x 4 grid over RGB."""
    return (image.reshape(-1, 3) // 64).astype(np.int64) @ np.array([16, 4, 1])


def palette(images: list[np.ndarray]) -> np.ndarray:
    """The colour bins the puzzle's panels use (a boolean mask over the 64 bins)."""
    counts = np.bincount(np.concatenate([colour_bins(image) for image in images]), minlength=64)
    return counts / counts.sum() >= PALETTE_SHARE


def in_palette(image: np.ndarray, mask: np.ndarray) -> float:
    """The share of an image's pixels whose colour the puzzle's panels use."""
    return float(mask[colour_bins(image)].mean())


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return Bundle.load(BUNDLE)


@pytest.fixture(scope="module")
def bank_examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The first example of each family that Play's examples list offers on a freshly seeded bank."""
    from puzzles.bank import connect
    from puzzles.bank.repository import seed_bank

    bank = connect(None, tmp_path_factory.mktemp("bank"))
    seed_bank(bank)
    examples = {}
    for label in bank_views.example_choices(bank):
        puzzle = bank_views.fetch_puzzle(bank, bank_views.id_from_choice(label))
        examples.setdefault(puzzle["family"], puzzle)
    bank.close()
    return examples


def test_the_shipped_defaults_sample(bundle: Bundle) -> None:
    chosen = bundle.sampling
    # plain sampling (temperature 1, no cut) gives noise; a lower temperature or a top-k / top-p cut does not
    assert chosen.temperature > 0 and (chosen.temperature < 1.0 or chosen.top_k > 0 or chosen.top_p < 1.0), \
        "the manifest names no sampling defaults: plain sampling gives noise (engine.sampling_sweep)"


# A sample must beat random codes by this share of its pixels: a verdict float rounding cannot flip. (The font
# analogy's guided sample sits inside it: 0.933 against 0.928 with this CPU's int8 graph at seeds 0-3, 0.912 at
# seed 4 and with the fp32 graph at seed 0.)
MARGIN = 0.01

# The bank's analogy examples start with fonts, and the shipped bundle answers them with blobs in the letter's
# colours (guided or not, docs/model-experiments.md section 26): a known gap of the model, measured and kept
# visible here; strict, so the day a bundle passes it, the mark must go.
ANALOGY_GAP = pytest.mark.xfail(strict=True, reason="the shipped bundle answers font analogies with blobs")


@pytest.mark.parametrize("family", ["matrix", pytest.param("analogy", marks=ANALOGY_GAP)])
def test_a_default_solve_answers_with_panels_not_noise(bundle: Bundle, bank_examples: dict[str, dict],
                                                       family: str) -> None:
    puzzle = bank_examples[family]
    panels = [to_square(panel, bundle.image_size) for panel in puzzle["panels"]]
    settings = solving.SampleSettings(n_samples=1, temperature=bundle.sampling.temperature,
                                    top_k=bundle.sampling.top_k, top_p=bundle.sampling.top_p, seed=0)
    sample = solving.solve(bundle, puzzle["panels"], settings, family=family).samples[0]  # as Play: guided or not
    noise = bundle.decode(np.random.default_rng(0).integers(0, bundle.manifest["codebook_size"],
                                                            (4, bundle.tokens_per_image)))
    mask = palette(panels)
    share = in_palette(to_square(sample, bundle.image_size), mask)
    noise_shares = [in_palette(image, mask) for image in noise]
    assert share > max(noise_shares) + MARGIN, (
        f"{family} example {puzzle['id']}: {share:.3f} of the sample's pixels are in the puzzle's colours, "
        f"random codes reach {max(noise_shares):.3f}")
