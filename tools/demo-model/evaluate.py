"""Scores a saved imagegate-demo pipeline on held-out captions with the rules
of analyse.py, and says which attribute failed how often.

    python tools/demo-model/evaluate.py models/imagegate-demo [--count 60]

The captions are the ones train.py evaluates on (same seed rule), drawn with
diffusers' DPM-Solver++ at 20 steps and guidance 4, as the engine does. The
Rust test `crates/engine/tests/it/demo_model.rs` is the acceptance check;
this is the quick look while training.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import train  # noqa: E402  (its held-out captions and checks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--save", type=Path, help="write the pictures here as PNG, named by caption")
    args = ap.parse_args()
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(args.model, torch_dtype=torch.float32, safety_checker=None)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    side = pipe.unet.config.sample_size * 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    scenes = train.held_out_scenes(args.seed, args.count)
    failed, passed = Counter(), 0
    for i, (s, pixels, seen, ok) in enumerate(train.draw_and_check(pipe, scenes, args.seed, args.steps, args.guidance, side)):
        passed += ok
        failed.update(k for k in ("background", "colour", "position", "count") if seen[k] != s[k])
        print(f"{'pass' if ok else 'FAIL'} {s['caption']!r}: {seen}")
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.fromarray(pixels).save(args.save / f"{i:02d} {s['caption']}.png")
    n = len(scenes)
    print(f"{passed}/{n} held-out captions pass ({passed / n:.0%}); wrong " + ", ".join(f"{k} {v}" for k, v in failed.most_common()))


if __name__ == "__main__":
    main()
