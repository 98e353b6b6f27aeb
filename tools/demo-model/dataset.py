"""Procedural captioned dataset for the imagegate-demo model (issue: ship a
small real text-to-image model).

Every sample is drawn from a seed: one to three shapes of one kind, colour
and size, placed in one region of a plain background, with the caption that
describes exactly that, e.g. "two small red circles on the left of a blue
background". Some (shape, colour, background) combinations are held out of
training altogether, so a test can ask for pictures the model never saw and
check that it composes them from what it learned.

    python tools/demo-model/dataset.py --out /tmp/demo-data --count 20000 --size 64

writes `<out>/train/NNNNNN.png`, `<out>/train/metadata.jsonl` (one JSON
object per image: caption and every attribute drawn, shape centres
included), and `<out>/heldout.jsonl` (captions and attributes of held-out
combinations, without images: the evaluation renders nothing, it asks the
model). The same arguments write the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw

SHAPES = ["circle", "square", "triangle", "star", "ring"]
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars", "ring": "rings"}
# Colours far enough apart that a dominant-colour check can tell them apart.
COLOURS = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 50, 190),
    "pink": (245, 130, 200),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
}
SIZES = {"small": 0.15, "large": 0.24}  # shape diameter as a fraction of the image side
# Centre-to-centre distance of neighbouring shapes, in diameters: a clear gap,
# so shapes stay apart (countable) even in a small, slightly blurred picture.
SPACING = 1.45
POSITIONS = ["left", "right", "top", "bottom", "centre"]
COUNT_WORDS = {1: "a", 2: "two", 3: "three"}
# Region centre (x, y) in [0, 1] for each position word.
REGION = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75), "centre": (0.5, 0.5)}
SUPERSAMPLE = 4


@dataclass
class Sample:
    caption: str
    shape: str
    colour: str
    background: str
    size: str
    position: str
    count: int
    centres: list[tuple[float, float]]  # each shape's centre, in [0, 1] image coordinates


def caption_of(shape: str, colour: str, background: str, size: str, position: str, count: int) -> str:
    noun = shape if count == 1 else PLURALS[shape]
    where = "in the centre" if position == "centre" else f"on the {position}" if position in ("left", "right") else f"at the {position}"
    article = "an" if background[0] in "aeiou" else "a"
    return f"{COUNT_WORDS[count]} {size} {colour} {noun} {where} of {article} {background} background"


def is_held_out(shape: str, colour: str, background: str) -> bool:
    """About one combination in eight never appears in training. Decided by
    a hash, not by the sampler's seed, so the split is the same for every
    dataset size and seed."""
    digest = hashlib.sha256(f"{shape}|{colour}|{background}".encode()).digest()
    return digest[0] < 32


def combinations():
    for shape in SHAPES:
        for colour in COLOURS:
            for background in COLOURS:
                if colour != background:
                    yield shape, colour, background


def place(rng: random.Random, position: str, count: int, diameter: float) -> list[tuple[float, float]]:
    """Centres for `count` shapes around the region's centre, side by side
    along the region's long axis, jittered a little."""
    cx, cy = REGION[position]
    step = diameter * SPACING
    # Stacked along the region's long axis: vertically on the left and right.
    horizontal = position not in ("left", "right")
    centres = []
    for i in range(count):
        offset = (i - (count - 1) / 2) * step
        jx, jy = rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)
        x, y = (cx + offset + jx, cy + jy) if horizontal else (cx + jx, cy + offset + jy)
        r = diameter / 2
        centres.append((min(max(x, r), 1 - r), min(max(y, r), 1 - r)))
    return centres


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, centre: tuple[float, float], diameter: float, side: int, fill, background) -> None:
    cx, cy, r = centre[0] * side, centre[1] * side, diameter * side / 2
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, fill=fill)
        inner = r * 0.55
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=background)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r * math.sin(math.radians(120)), cy + r / 2), (cx - r * math.sin(math.radians(120)), cy + r / 2)], fill=fill)
    elif shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = math.radians(-90 + k * 36)
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        draw.polygon(points, fill=fill)
    else:
        raise ValueError(f"unknown shape {shape}")


def render(sample: Sample, side: int) -> Image.Image:
    big = side * SUPERSAMPLE
    background = COLOURS[sample.background]
    img = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(img)
    for centre in sample.centres:
        draw_shape(draw, sample.shape, centre, SIZES[sample.size], big, COLOURS[sample.colour], background)
    # Supersampled then reduced: smooth edges, like the pictures the model should learn.
    return img.resize((side, side), Image.Resampling.LANCZOS)


def draw_sample(rng: random.Random, allowed: list[tuple[str, str, str]]) -> Sample:
    shape, colour, background = rng.choice(allowed)
    size = rng.choice(list(SIZES))
    position = rng.choice(POSITIONS)
    count = rng.choice(list(COUNT_WORDS))
    centres = place(rng, position, count, SIZES[size])
    return Sample(caption_of(shape, colour, background, size, position, count), shape, colour, background, size, position, count, centres)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--count", type=int, default=20000, help="training images")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--heldout", type=int, default=200, help="held-out captions to list")
    args = ap.parse_args()

    combos = list(combinations())
    train = [c for c in combos if not is_held_out(*c)]
    held = [c for c in combos if is_held_out(*c)]
    rng = random.Random(args.seed)
    out = args.out / "train"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metadata.jsonl", "w") as meta:
        for n in range(args.count):
            sample = draw_sample(rng, train)
            name = f"{n:06d}.png"
            render(sample, args.size).save(out / name, optimize=False)
            meta.write(json.dumps({"file_name": name, **asdict(sample)}) + "\n")
    held_rng = random.Random(args.seed + 1)
    with open(args.out / "heldout.jsonl", "w") as f:
        for _ in range(args.heldout):
            f.write(json.dumps(asdict(draw_sample(held_rng, held))) + "\n")
    print(f"{args.count} training images ({len(train)} combinations), {len(held)} held-out combinations, in {args.out}")


if __name__ == "__main__":
    main()
