"""Reference output of diffusers' StableDiffusionInpaintPipeline for the engine's inpainting parity test.

The engine writes the tiny inpaint pipeline (a 9-input UNet), the init
image, the mask, the settings and its seeded noise first (`cargo test -p
imagegate-engine --features fixtures --test it
parity_inpaint::write_inpaint_fixtures -- --ignored --exact`); this script
loads the folder with `StableDiffusionInpaintPipeline.from_pretrained` and
inpaints at full strength, starting from the engine's latent and giving the
pipeline the masked image's latents sampled with the engine's posterior
noise (the pipeline would otherwise draw that noise from torch's generator),
then writes `reference.safetensors` (the image in [0, 1], the masked-image
latents) and `meta.json`. See docs/parity.md.
"""

import json
from pathlib import Path

import diffusers
import torch
import transformers
from diffusers import EulerDiscreteScheduler, StableDiffusionInpaintPipeline
from PIL import Image
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates/engine/tests/fixtures/parity-inpaint"


def main() -> None:
    settings = json.loads((FIXTURES / "parity_cases.json").read_text())
    noise = load_file(FIXTURES / "noise.safetensors")
    pipe = StableDiffusionInpaintPipeline.from_pretrained(
        FIXTURES / "tiny-sd-inpaint", torch_dtype=torch.float32, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    # k-diffusion's grid, as the engine's K_EULER walks (the SD cases do the same).
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace")
    init = Image.open(FIXTURES / "init.png").convert("RGB")
    mask = Image.open(FIXTURES / "mask.png").convert("L")
    height, width = settings["height"], settings["width"]
    with torch.no_grad():
        # What the pipeline does to make the masked image, with the engine's
        # posterior noise in place of torch's generator.
        image = pipe.image_processor.preprocess(init, height=height, width=width).float()
        mask_t = pipe.mask_processor.preprocess(mask, height=height, width=width).float()
        masked = image * (mask_t < 0.5)
        dist = pipe.vae.encode(masked).latent_dist
        masked_latents = (dist.mean + dist.std * noise["posterior"]) * pipe.vae.config.scaling_factor
        out = pipe(
            prompt=settings["prompt"],
            negative_prompt=settings["negative"],
            image=init,
            mask_image=mask,
            masked_image_latents=masked_latents.clone(),
            latents=noise["latent"].clone(),
            strength=1.0,
            height=height,
            width=width,
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance"],
            output_type="pt",
        )
    image_out = out.images.float().contiguous()
    save_file({"image": image_out, "masked_image_latents": masked_latents.contiguous()}, FIXTURES / "reference.safetensors")
    meta = {
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "settings": settings,
        "timesteps": [float(t) for t in pipe.scheduler.timesteps],
        "sigmas": [float(s) for s in pipe.scheduler.sigmas],
        "masked_fraction": float((mask_t >= 0.5).float().mean()),
        "clipped_fraction": float(((image_out <= 0) | (image_out >= 1)).float().mean()),
    }
    print(meta)
    (FIXTURES / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
