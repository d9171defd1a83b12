"""Image normalisation shared by generators, packs, the bank, training and serving.

The rule, `to_rgb_array`: any input (a PIL image of any mode, size or aspect, encoded file bytes, a file path,
or a uint8 array (H, W) or (H, W, 1|3|4)) becomes uint8 RGB (H, W, 3): EXIF orientation applied, 16-bit
scaled down, palette/CMYK/LA/RGBA converted, transparency composited onto white, animated images take their
first frame. Arrays of any other dtype are refused, not cast: a float image in [0, 1] cast to uint8 is black.
Every reader of images (the app's slots and uploads, the runtime, packs, the bank) calls it; an array that
already follows the rule comes back as it is, so an image is normalised once on its way to the encoder.
Resizing to a model's size is `to_square`.
"""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps

ImageSource = Image.Image | np.ndarray | bytes | str | os.PathLike[str]
ARRAY_MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # channels -> PIL mode


def png_bytes(image: np.ndarray) -> bytes:
    """Canonical PNG encoding (fixed settings so equal pixels give equal bytes and hashes)."""
    buffer = io.BytesIO()
    pixels = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    pixels.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def to_rgb_array(image: ImageSource) -> np.ndarray:
    """Any image a user or a file gives -> uint8 RGB (H, W, 3), following the rule in the module docstring."""
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    if isinstance(image, bytes):
        with Image.open(io.BytesIO(image)) as opened:
            return _pil_to_rgb(opened)
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            return _pil_to_rgb(opened)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    raise TypeError(f"unsupported image type {type(image).__name__}: pass an array, a PIL image, bytes or a path")


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 3:
        return array.copy()  # already RGB: no second pass through Pillow
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in ARRAY_MODES:
        raise ValueError(f"image array shape {array.shape} is not (H, W) or (H, W, 1|3|4)")
    mode = ARRAY_MODES[array.shape[2]]
    return _pil_to_rgb(Image.fromarray(array[..., 0] if mode == "L" else array, mode))


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def to_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size: non-square images are padded with white to a square first (no cropping)."""
    height, width = image.shape[:2]
    if height != width:
        side = max(height, width)
        canvas = np.full((side, side, 3), 255, dtype=np.uint8)
        top, left = (side - height) // 2, (side - width) // 2
        canvas[top : top + height, left : left + width] = image
        image = canvas
    if image.shape[0] == size:
        return image
    # enlarging: bicubic; shrinking: box filter (an area average, no ringing on hard shape edges)
    resample = Image.Resampling.BICUBIC if image.shape[0] < size else Image.Resampling.BOX
    return np.asarray(Image.fromarray(image).resize((size, size), resample))
