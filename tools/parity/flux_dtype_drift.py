"""How far diffusers' FluxPipeline moves from its own float32 image when it
runs in bfloat16 or float16, on the tiny FLUX parity fixtures: the yardstick
for the engine's GPU test `gpu::flux_half_precision_drift_on_the_parity_fixtures`,
which measures the same for imagegate on the same folders, prompt, latent
and steps. Needs a CUDA GPU.

    python3 tools/parity/flux_dtype_drift.py
"""

import json

import torch
from diffusers import FluxPipeline
from make_flux_fixtures import CASES, FIXTURES, engine_latent, render, t5_length, t5_tokenizer


def image(name: str, latent: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    folder = FIXTURES / name
    case = json.loads((folder / "parity_case.json").read_text())
    pipe = FluxPipeline.from_pretrained(folder, tokenizer_2=t5_tokenizer(folder), torch_dtype=dtype).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    _, c, h, w = latent.shape
    packed = FluxPipeline._pack_latents(latent.clone(), 1, c, h, w).to("cuda", dtype)
    with torch.no_grad():
        return render(pipe, case, packed, t5_length(folder)).float().cpu()


def main() -> None:
    latent = engine_latent(FIXTURES)
    for name in CASES:
        full = image(name, latent, torch.float32)
        for label, dtype in (("BF16", torch.bfloat16), ("F16", torch.float16)):
            d = (image(name, latent, dtype) - full).abs()
            print(f"diffusers {name} in {label}: pixels differ from its f32 by {d.mean().item():.2e} on average, {d.max().item():.2e} at most")


if __name__ == "__main__":
    main()
