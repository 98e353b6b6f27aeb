"""Plain image analysis of a generated picture against the caption's
attributes: background colour (most common colour on the border), shape
colour (most common colour off the background), position (centroid of the
shape pixels, nearest region centre) and count (4-connected components of
the shape mask, ignoring specks). Used by train.py to watch training; the
Rust test `crates/imagegate/tests/it/demo_model.rs` applies the same rules
to what the engine draws.
"""

from __future__ import annotations

import numpy as np

from dataset import COLOURS, REGION, SIZES

NAMES = list(COLOURS)
PALETTE = np.array([COLOURS[n] for n in NAMES], dtype=np.float32)
# A component smaller than this fraction of the expected shape area is a speck.
MIN_COMPONENT = 0.25
# RGB distance from the background colour a shape pixel must have, so soft
# halos around edges do not count (orange and yellow, the closest pair, are 87 apart).
SHAPE_DISTANCE = 60.0


def nearest_colour(pixels: np.ndarray) -> np.ndarray:
    """Index into NAMES of each pixel's nearest palette colour."""
    d = ((pixels[..., None, :].astype(np.float32) - PALETTE) ** 2).sum(-1)
    return d.argmin(-1)


def components(mask: np.ndarray) -> list[int]:
    """Sizes of the 4-connected components of a boolean mask."""
    seen = np.zeros_like(mask, dtype=bool)
    h, w = mask.shape
    sizes = []
    for y in range(h):
        for x in range(w):
            if mask[y, x] and not seen[y, x]:
                stack, n = [(y, x)], 0
                seen[y, x] = True
                while stack:
                    cy, cx = stack.pop()
                    n += 1
                    for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                        if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            stack.append((ny, nx))
                sizes.append(n)
    return sizes


def analyse(img: np.ndarray, size_word: str) -> dict:
    """What the picture shows: background, colour, position, count."""
    h, w, _ = img.shape
    labels = nearest_colour(img)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    background = np.bincount(border, minlength=len(NAMES)).argmax()
    mask = (labels != background) & (np.sqrt(((img.astype(np.float32) - PALETTE[background]) ** 2).sum(-1)) >= SHAPE_DISTANCE)
    out = {"background": NAMES[background], "colour": None, "position": None, "count": 0}
    if not mask.any():
        return out
    out["colour"] = NAMES[np.bincount(labels[mask], minlength=len(NAMES)).argmax()]
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h
    out["position"] = min(REGION, key=lambda r: (REGION[r][0] - cx) ** 2 + (REGION[r][1] - cy) ** 2)
    expected = np.pi * (SIZES[size_word] * w / 2) ** 2
    out["count"] = sum(1 for n in components(mask) if n >= MIN_COMPONENT * expected)
    return out


def passes(sample: dict, seen: dict) -> bool:
    return (
        seen["background"] == sample["background"]
        and seen["colour"] == sample["colour"]
        and seen["position"] == sample["position"]
        and seen["count"] == sample["count"]
    )
