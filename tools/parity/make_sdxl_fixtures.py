"""Reference outputs of diffusers' StableDiffusionXLPipeline for the engine's SDXL parity test.

The engine writes the tiny pipeline, the cases and its seeded initial latent
first (`cargo test -p imagegate-engine --features fixtures --test it
parity_sdxl::write_sdxl_fixtures -- --ignored --exact`); this script loads
the folder with `StableDiffusionXLPipeline.from_pretrained` and, per case of
`parity_cases.json`, writes `<case>.safetensors` (text embeddings and pooled
text as the UNet receives them, unconditional rows first; the decoded image
in [0, 1]) and `meta.json`. See docs/parity.md.
"""

import json
from pathlib import Path

import diffusers
import torch
import transformers
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
from safetensors.torch import save_file

from make_flux_fixtures import engine_latent

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates/engine/tests/fixtures/parity-sdxl"


def main() -> None:
    settings = json.loads((FIXTURES / "parity_cases.json").read_text())
    latent = engine_latent(FIXTURES)
    pipe = StableDiffusionXLPipeline.from_pretrained(FIXTURES / "tiny-sdxl", torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    # The engine's K_EULER walks k-diffusion's grid: timesteps evenly spaced
    # from 999 to 0, which is diffusers' "linspace" spacing (the folder ships
    # SDXL's "leading"; docs/parity.md lists that as a known convention gap).
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace")
    meta = {"diffusers": diffusers.__version__, "transformers": transformers.__version__, "torch": torch.__version__, "settings": settings, "cases": {}}
    for case in settings["cases"]:
        kwargs = dict(
            prompt=settings["prompt"],
            negative_prompt=case["negative"],
            height=settings["height"],
            width=settings["width"],
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance"],
        )
        with torch.no_grad():
            pos, neg, pooled, neg_pooled = pipe.encode_prompt(
                prompt=settings["prompt"], negative_prompt=case["negative"], do_classifier_free_guidance=True, device="cpu"
            )
            out = pipe(**kwargs, latents=latent.clone(), output_type="pt")
        image = out.images.float().contiguous()
        save_file(
            {
                "prompt_embeds": torch.cat([neg, pos]).float().contiguous(),
                "pooled_prompt_embeds": torch.cat([neg_pooled, pooled]).float().contiguous(),
                "image": image,
            },
            FIXTURES / f"{case['name']}.safetensors",
        )
        meta["cases"][case["name"]] = {
            "timesteps": [float(t) for t in pipe.scheduler.timesteps],
            "sigmas": [float(s) for s in pipe.scheduler.sigmas],
            "clipped_fraction": float(((image <= 0) | (image >= 1)).float().mean()),
            "negative_is_zero": bool((neg == 0).all()),
        }
        print(case["name"], meta["cases"][case["name"]])
    (FIXTURES / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
