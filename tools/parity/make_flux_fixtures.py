"""Reference outputs of diffusers' FluxPipeline for the engine's FLUX parity test.

The engine writes the tiny pipelines and its seeded initial latent first
(`cargo test -p imagegate-engine --features fixtures --test it
parity_flux::write_flux_fixtures -- --ignored --exact`); this script loads
each folder with `FluxPipeline.from_pretrained`, runs it from that latent
with the settings in the folder's `parity_case.json`, and writes
`reference.safetensors` (T5 states, CLIP pooled text, decoded image in
[0, 1]) and `meta.json` (versions and the sigmas the scheduler walked)
beside it. See docs/parity.md.
"""

import json
import sys
from pathlib import Path

import diffusers
import torch
import transformers
from diffusers import FluxPipeline
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates/engine/tests/fixtures/parity-flux"
CASES = ["tiny-flux-schnell", "tiny-flux-dev"]


def engine_latent(fixtures: Path) -> torch.Tensor:
    """The engine's seeded initial latent `[1, C, h, w]` the Rust side wrote."""
    return load_file(fixtures / "noise.safetensors")["latent"]


def t5_length(folder: Path, sub: str = "tokenizer_2") -> int:
    config = json.loads((folder / sub / "tokenizer_config.json").read_text())
    return int(config["model_max_length"])


def t5_tokenizer(folder: Path, sub: str = "tokenizer_2") -> PreTrainedTokenizerFast:
    # The fixture's T5 vocabulary is word-level (a sentencepiece Unigram
    # cannot be built offline), which transformers' T5 tokenizer class
    # refuses; wrap it as a fast tokenizer that appends `</s>` as real T5
    # tokenizers do.
    tok = Tokenizer.from_file(str(folder / sub / "tokenizer.json"))
    tok.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", model_max_length=t5_length(folder, sub))


def render(pipe: FluxPipeline, case: dict, packed: torch.Tensor, max_len: int) -> torch.Tensor:
    """The parity case's image (`[1, 3, H, W]`, 0..1) from the packed latent."""
    return pipe(
        prompt=case["prompt"],
        height=case["height"],
        width=case["width"],
        num_inference_steps=case["steps"],
        guidance_scale=case["guidance"],
        latents=packed,
        max_sequence_length=max_len,
        output_type="pt",
    ).images


def run(name: str, latent: torch.Tensor) -> None:
    folder = FIXTURES / name
    case = json.loads((folder / "parity_case.json").read_text())
    pipe = FluxPipeline.from_pretrained(folder, tokenizer_2=t5_tokenizer(folder), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    max_len = t5_length(folder)
    with torch.no_grad():
        prompt_embeds, pooled, _ = pipe.encode_prompt(prompt=case["prompt"], prompt_2=None, max_sequence_length=max_len)
        _, c, h, w = latent.shape
        packed = FluxPipeline._pack_latents(latent.clone(), 1, c, h, w)
        walked = []
        step = pipe.scheduler.step

        def recording_step(model_output, timestep, sample, *args, **kwargs):
            walked.append(float(pipe.scheduler.sigmas[pipe.scheduler.step_index or 0]))
            return step(model_output, timestep, sample, *args, **kwargs)

        pipe.scheduler.step = recording_step
        image = render(pipe, case, packed, max_len).float().contiguous()
    save_file(
        {"prompt_embeds": prompt_embeds.float().contiguous(), "pooled_prompt_embeds": pooled.float().contiguous(), "image": image},
        folder / "reference.safetensors",
    )
    meta = {
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "case": case,
        "max_sequence_length": max_len,
        "sigmas": [float(s) for s in pipe.scheduler.sigmas],
        "sigmas_stepped": walked,
        "clipped_fraction": float(((image <= 0) | (image >= 1)).float().mean()),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{name}: image {tuple(image.shape)}, sigmas {meta['sigmas']}", file=sys.stderr)


def main() -> None:
    torch.manual_seed(0)
    latent = engine_latent(FIXTURES)
    for name in CASES:
        run(name, latent)


if __name__ == "__main__":
    main()
