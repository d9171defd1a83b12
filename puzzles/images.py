"""Image normalisation shared by generators, packs, the bank, training and serving.

The rule: any input (file bytes or PIL image of any mode, size or aspect) becomes uint8 RGB (H, W, 3):
EXIF orientation applied, 16-bit scaled down, palette/CMYK/LA/RGBA converted, transparency composited
onto white, animated images take their first frame. Resizing to a model's size is `to_square`.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps


def png_bytes(image: np.ndarray) -> bytes:
    """Canonical PNG encoding (fixed settings so equal pixels give equal bytes and hashes)."""
    buffer = io.BytesIO()
    pixels = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    pixels.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any PIL image -> uint8 RGB array, following the rule in the module docstring."""
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
