"""Turning whatever pixels a file holds into the H x W x 3 uint8 RGB every stage expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kaleido.data.rows import BadRow

MIN_SIDE = 8  # smaller than this cannot be split into 5 x 5 patches of at least one pixel
GREY_16 = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})  # PIL's 16-bit unsigned grey modes


def read_image(path: str | Path, index: int) -> np.ndarray:
    """An image file's pixels, upright, as the uint8 array :func:`to_rgb` takes; a missing or
    undecodable file is a :class:`BadRow` with the reason.

    Upright: phone photos store the sensor's pixels plus an EXIF orientation; ignoring it would
    feed the model sideways products.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return pil_pixels(ImageOps.exif_transpose(img), index, is_png=img.format == "PNG")
    except BadRow:
        raise
    except FileNotFoundError:
        raise BadRow(index, f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadRow(index, f"unreadable image {path} ({type(exc).__name__}: {exc})") from None


def pil_pixels(img: Any, index: int, is_png: bool = False) -> np.ndarray:
    """A PIL image as uint8 RGB (RGBA where it has transparency, for :func:`to_rgb` to composite).

    Grey deeper than 8 bits is scaled, not clipped (``convert("RGB")`` clips 16-bit grey to white):
    16-bit modes keep their high byte. Mode ``"I"`` (32-bit) holds 16-bit grey for a PNG (PNG has no
    deeper grey; older PIL opens it so) and otherwise whatever the writer chose: values up to 255
    are read as 8-bit, up to 65535 as 16-bit, anything else is a BadRow. Mode ``"F"`` (float) does
    not record its range (0-1? 0-255?), so it is a BadRow rather than a guess.
    """
    mode = img.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        return np.asarray(img.convert("RGBA"))
    if mode in GREY_16:
        return (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
    if mode == "I":
        a = np.asarray(img)
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise BadRow(index, f"32-bit grey image with values {lo}..{hi}: its range is unknown, "
                                "save it as 8- or 16-bit")
        return (a >> 8 if is_png or hi > 255 else a).astype(np.uint8)
    if mode == "F":
        raise BadRow(index, "floating-point grey image (PIL mode F): its range is unknown, "
                            "save it as 8- or 16-bit")
    return np.asarray(img.convert("RGB"))


def to_rgb(array: np.ndarray, index: int) -> np.ndarray:
    """Grey (H, W) or (H, W, 1) is replicated, RGBA is composited on white; anything else is a BadRow.

    White, because product photos are shot on white: dropping alpha would turn a transparent
    background black and make it look like part of the product to saliency detection.
    """
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise BadRow(index, f"image dtype {a.dtype}, expected uint8")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise BadRow(index, f"image shape {tuple(a.shape)}, expected H x W x 3 (or grey / RGBA)")
    if min(a.shape[0], a.shape[1]) < MIN_SIDE:
        raise BadRow(index, f"image {a.shape[1]}x{a.shape[0]} is smaller than {MIN_SIDE} pixels")
    if a.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(a, 3, axis=2))
    if a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.uint16)
        rgb = (a[:, :, :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127) // 255
        return rgb.astype(np.uint8)
    return np.ascontiguousarray(a)
