"""diffusers' side of the per-step benchmark (crates/engine/benches/unet_step.rs).

Times one `UNet2DConditionModel` call on a classifier-free-guidance batch of
2 for the same cases as the Rust bench: `sd15-512` (SD 1.5 config from
crates/engine/benches/sd15_unet_config.json, random weights, latent 64x64),
`sdxl-1024` (crates/engine/benches/sdxl_unet_config.json, random weights,
latent 128x128, with the pooled text and time ids), `demo`
(models/imagegate-demo, latent 16x16) and `tiny` (the parity fixture's UNet,
latent 8x8). float32 on the CPU by default; `--device cuda --dtype f16`
for a GPU (each timed call ends with `.item()`, which waits for the GPU).

    /work/venv-parity/bin/python tools/parity/bench_unet_step.py [--threads 2] [--steps 5]
    python3 tools/parity/bench_unet_step.py --device cuda --dtype f16 --steps 20 --cases sd15-512,sdxl-1024,demo,tiny
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

ROOT = Path(__file__).resolve().parents[2]


DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def random_unet(config_name: str) -> UNet2DConditionModel:
    config = json.loads((ROOT / "crates/engine/benches" / config_name).read_text())
    config.pop("_class_name", None)
    torch.manual_seed(0)
    return UNet2DConditionModel(**config)


def load(folder: Path) -> UNet2DConditionModel:
    return UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32)


def time_case(name: str, unet: UNet2DConditionModel, side: int, steps: int, device: str, dtype: torch.dtype) -> None:
    unet = unet.to(device=device, dtype=dtype).eval()
    cfg = unet.config
    x = torch.randn(2, cfg.in_channels, side, side, device=device, dtype=dtype)
    ctx = torch.randn(2, 77, cfg.cross_attention_dim, device=device, dtype=dtype)
    added = None
    if cfg.addition_embed_type == "text_time":
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        added = {
            "text_embeds": torch.randn(2, pooled, device=device, dtype=dtype),
            "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * 2, device=device, dtype=dtype),
        }
    with torch.inference_mode():
        unet(x, 999, encoder_hidden_states=ctx, added_cond_kwargs=added)
        times = []
        for i in range(steps):
            t = time.perf_counter()
            unet(x, 999 - 50 * i, encoder_hidden_states=ctx, added_cond_kwargs=added).sample.float().sum().item()
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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    if args.device == "cpu":
        print(f"torch {torch.__version__} on CPU, {torch.get_num_threads()} threads, {args.dtype}")
    else:
        print(f"torch {torch.__version__} on {torch.cuda.get_device_name(args.device)}, {args.dtype} (diffusers attends with torch SDPA)")
    run = lambda case, unet, side: time_case(case, unet, side, args.steps, args.device, dtype)  # noqa: E731
    for case in args.cases.split(","):
        if case == "sd15-512":
            run(case, random_unet("sd15_unet_config.json"), 64)
        elif case == "sdxl-1024":
            run(case, random_unet("sdxl_unet_config.json"), 128)
        elif case == "demo":
            run(case, load(ROOT / "models/imagegate-demo"), 16)
        elif case == "tiny":
            run(case, load(ROOT / "crates/engine/tests/fixtures/parity/tiny-sd15"), 8)
        else:
            raise SystemExit(f"unknown case {case}")


if __name__ == "__main__":
    main()
