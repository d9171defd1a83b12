"""puzzles/images.to_rgb_array is the one rule from "anything a user or a file gives" to the model's RGB array;
every reader of images (the app's slots, the runtime, the bank, packs) answers as it does."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.prompts import as_image
from engine.serving.runtime import images_to_tensor
from puzzles.bank import store
from puzzles.images import png_bytes, to_rgb_array


def half_transparent() -> np.ndarray:
    """RGBA: opaque red on the left, fully transparent blue (which must become white) on the right."""
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[:, :3] = (255, 0, 0, 255)
    rgba[:, 3:] = (0, 0, 255, 0)
    return rgba


def as_png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


EXPECTED = np.concatenate([np.full((4, 3, 3), (255, 0, 0)), np.full((4, 3, 3), 255)], axis=1).astype(np.uint8)


def test_every_kind_of_source_gives_the_same_rgb(tmp_path: Path) -> None:
    rgba = half_transparent()
    (tmp_path / "a.png").write_bytes(as_png(rgba))
    sources = [rgba, Image.fromarray(rgba), as_png(rgba), tmp_path / "a.png", str(tmp_path / "a.png")]
    for source in sources:
        assert np.array_equal(to_rgb_array(source), EXPECTED), type(source)


def test_grey_arrays_become_rgb() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for array in (grey, grey[..., None]):
        assert np.array_equal(to_rgb_array(array), np.repeat(grey[..., None], 3, axis=2))


def test_an_rgb_array_passes_once_as_a_copy() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = to_rgb_array(rgb)
    assert np.array_equal(out, rgb) and out is not rgb and out.flags.c_contiguous


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 4, 3), dtype=np.float32), "must be uint8"),
    (np.full((4, 4, 3), 200, dtype=np.int64), "must be uint8"),
    (np.zeros((4, 4, 2), dtype=np.uint8), "is not"),
    (np.zeros(4, dtype=np.uint8), "is not"),
])
def test_bad_arrays_are_refused_not_cast(array: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_rgb_array(array)


def test_unknown_types_are_refused() -> None:
    with pytest.raises(TypeError, match="unsupported image type"):
        to_rgb_array(3.5)  # type: ignore[arg-type]


def test_the_app_refuses_what_the_runtime_refuses() -> None:
    floats = np.ones((8, 8, 3), dtype=np.float64)  # an image in [0, 1]: cast to uint8 it would be black
    with pytest.raises(ValueError, match="must be uint8"):
        images_to_tensor([floats], 8)
    with pytest.raises(ValueError, match="must be uint8"):
        as_image(floats)


def test_the_app_the_runtime_and_the_bank_agree_on_transparency() -> None:
    rgba = half_transparent()
    assert np.array_equal(as_image(rgba), EXPECTED)
    assert np.array_equal(store.decode(as_png(rgba)), EXPECTED)
    tensor = images_to_tensor([rgba], 6)  # padded to a white square, then (1, 3, 6, 6) in [0, 1]
    square = np.rint(tensor[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    assert np.array_equal(square[1:5], EXPECTED)


def test_bank_round_trip_is_exact() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (9, 5, 3), dtype=np.uint8)
    assert np.array_equal(store.decode(png_bytes(rgb)), rgb)
