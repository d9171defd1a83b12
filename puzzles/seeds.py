"""Seed ranges: training and evaluation never see the same generated puzzle.

This is the only place the held-out range is defined; training code calls `check_training_seed`.
"""

HELD_OUT_START = 1_000_000_000  # evaluation seeds are HELD_OUT_START, HELD_OUT_START + 1, ...
HELD_OUT_END = 2_000_000_000


def is_held_out(seed: int) -> bool:
    return HELD_OUT_START <= seed < HELD_OUT_END


def check_training_seed(seed: int) -> int:
    """Return the seed, or raise if it lies in the held-out evaluation range."""
    if is_held_out(seed):
        raise ValueError(f"seed {seed} is in the held-out evaluation range [{HELD_OUT_START}, {HELD_OUT_END})")
    return seed


def eval_seed(index: int) -> int:
    """The index-th held-out seed."""
    seed = HELD_OUT_START + index
    if not is_held_out(seed):
        raise ValueError(f"evaluation index {index} is out of range")
    return seed
