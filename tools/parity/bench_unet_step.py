"""diffusers' side of the per-step benchmark (crates/engine/benches/unet_step.rs).

Times one `UNet2DConditionModel` call on a classifier-free-guidance batch of
2, float32 on the CPU, for the same three cases as the Rust bench:
`sd15-512` (SD 1.5 config from crates/engine/benches/sd15_unet_config.json,
random weights, latent 64x64), `demo` (models/imagegate-demo, latent 16x16)
and `tiny` (the parity fixture's UNet, latent 8x8).

    /work/venv-parity/bin/python tools/parity/bench_unet_step.py [--threads 2] [--steps 5]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

ROOT = Path(__file__).resolve().parents[2]


def sd15() -> UNet2DConditionModel:
    config = json.loads((ROOT / "crates/engine/benches/sd15_unet_config.json").read_text())
    config.pop("_class_name", None)
    torch.manual_seed(0)
    return UNet2DConditionModel(**config)


def load(folder: Path) -> UNet2DConditionModel:
    return UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32)


def time_case(name: str, unet: UNet2DConditionModel, side: int, steps: int) -> None:
    unet = unet.float().eval()
    cfg = unet.config
    x = torch.randn(2, cfg.in_channels, side, side)
    ctx = torch.randn(2, 77, cfg.cross_attention_dim)
    with torch.inference_mode():
        unet(x, 999, encoder_hidden_states=ctx)
        times = []
        for i in range(steps):
            t = time.perf_counter()
            unet(x, 999 - 50 * i, encoder_hidden_states=ctx).sample.sum().item()
            times.append(time.perf_counter() - t)
    times.sort()
    print(
        f"{name:<9} latent {side}x{side}x{cfg.in_channels} batch 2: median {times[steps // 2] * 1e3:9.2f} ms, "
        f"mean {statistics.mean(times) * 1e3:9.2f} ms, min {times[0] * 1e3:9.2f} ms over {steps} calls"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--cases", default="sd15-512,demo,tiny")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} on CPU, {torch.get_num_threads()} threads")
    for case in args.cases.split(","):
        if case == "sd15-512":
            time_case(case, sd15(), 64, args.steps)
        elif case == "demo":
            time_case(case, load(ROOT / "models/imagegate-demo"), 16, args.steps)
        elif case == "tiny":
            time_case(case, load(ROOT / "crates/engine/tests/fixtures/parity/tiny-sd15"), 8, args.steps)
        else:
            raise SystemExit(f"unknown case {case}")


if __name__ == "__main__":
    main()
