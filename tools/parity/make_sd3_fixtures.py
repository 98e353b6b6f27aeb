"""Reference outputs of diffusers' StableDiffusion3Pipeline for the engine's SD3 parity test.

The engine writes the tiny pipeline, its settings and its seeded initial
latent first (`cargo test -p imagegate-engine --features fixtures --test it
parity_sd3::write_sd3_fixtures -- --ignored --exact`); this script loads the
folder with `StableDiffusion3Pipeline.from_pretrained`, runs it from that
latent and writes `reference.safetensors` (text states and pooled text as
the transformer receives them, negative rows first; the decoded image in
[0, 1]) and `meta.json`. See docs/parity.md.
"""

import json
from pathlib import Path

import diffusers
import torch
import transformers
from diffusers import StableDiffusion3Pipeline
from safetensors.torch import save_file

from make_flux_fixtures import engine_latent, t5_tokenizer

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates/engine/tests/fixtures/parity-sd3"


def main() -> None:
    case = json.loads((FIXTURES / "parity_case.json").read_text())
    latent = engine_latent(FIXTURES)
    folder = FIXTURES / "tiny-sd3"
    tok = t5_tokenizer(folder, "tokenizer_3")
    pipe = StableDiffusion3Pipeline.from_pretrained(folder, tokenizer_3=tok, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    max_len = tok.model_max_length
    with torch.no_grad():
        pos, neg, pooled, neg_pooled = pipe.encode_prompt(
            prompt=case["prompt"], prompt_2=None, prompt_3=None, negative_prompt=case["negative"],
            do_classifier_free_guidance=True, device="cpu", max_sequence_length=max_len,
        )
        out = pipe(
            prompt=case["prompt"], negative_prompt=case["negative"], height=case["height"], width=case["width"],
            num_inference_steps=case["steps"], guidance_scale=case["guidance"], latents=latent.clone(),
            max_sequence_length=max_len, output_type="pt",
        )
        # Stages: the first transformer call on both rows (t = 1000), and
        # the VAE's decode of the initial latent.
        rows = torch.cat([latent, latent])
        first_call = pipe.transformer(
            hidden_states=rows, timestep=torch.tensor([1000.0, 1000.0]), encoder_hidden_states=torch.cat([neg, pos]),
            pooled_projections=torch.cat([neg_pooled, pooled]), return_dict=False,
        )[0]
        vae = pipe.vae
        decoded = vae.decode(latent / vae.config.scaling_factor + vae.config.shift_factor, return_dict=False)[0]
        decoded = (decoded / 2 + 0.5).clamp(0, 1)
    image = out.images.float().contiguous()
    save_file(
        {
            "prompt_embeds": torch.cat([neg, pos]).float().contiguous(), "pooled_prompt_embeds": torch.cat([neg_pooled, pooled]).float().contiguous(),
            "image": image, "first_call": first_call.float().contiguous(), "decoded_latent": decoded.float().contiguous(),
        },
        FIXTURES / "reference.safetensors",
    )
    meta = {
        "diffusers": diffusers.__version__, "transformers": transformers.__version__, "torch": torch.__version__, "case": case,
        "max_sequence_length": max_len, "sigmas": [float(s) for s in pipe.scheduler.sigmas],
        "clipped_fraction": float(((image <= 0) | (image >= 1)).float().mean()),
    }
    (FIXTURES / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(meta["sigmas"], meta["clipped_fraction"])


if __name__ == "__main__":
    main()
