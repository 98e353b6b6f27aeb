#!/usr/bin/env python3
"""Parity fixtures: the reference (diffusers) side of imagegate-engine's parity tests.

Builds a tiny SD 1.5-architecture pipeline with random weights (biases and
norm weights randomised too, fixed torch seed), saves it with
`save_pretrained` (fp32 safetensors, the diffusers layout the engine loads),
then for each diffusers scheduler that has an engine counterpart runs a few
guided steps from the *engine's own* seeded noise stream (written by the Rust
test `parity::write_noise`) and saves the final latents and decoded image,
plus per-stage intermediates (token ids, text embeddings, the first UNet
call). Everything goes to crates/engine/tests/fixtures/parity/.

Usage (from the repository root; see docs/parity.md):
    python tools/parity/make_fixtures.py
It needs `noise.safetensors` in the output folder first (the Rust test
`parity::write_noise`, run with `--ignored`, writes it).

Nothing is downloaded from a model hub: every model is built here.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from clip_bpe import BOS, EOS, write_bpe  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
OUT = REPO / "crates/engine/tests/fixtures/parity"

WEIGHT_SEED = 20251123
PROMPT = "a photo of a red cat in the sky"
NEGATIVE = "blue dog"
GUIDANCE = 5.0
STEPS = 5
WIDTH = HEIGHT = 64
LATENT = (4, 8, 8)


# Words the tiny vocabulary has merges for; anything else tokenises by byte.
WORDS = ["a", "photo", "of", "cat", "dog", "red", "blue", "the", "painting", "sky", "in", "night"]

# The SD 1.x training schedule (what every SD 1.5 scheduler_config.json holds).
BASE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    steps_offset=1,
)


def write_tokenizer_files(folder: pathlib.Path) -> pathlib.Path:
    """A small CLIP-style BPE (the same construction as the engine's own test fixture)."""
    write_bpe(folder, WORDS)
    return folder


def randomise(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Biases and norm parameters get small random values (defaults are 0 and 1,
    which would hide a missing bias or a swapped norm); constant tensors too."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            is_norm = any(k in name for k in ("norm", "layer_norm", "ln_")) and leaf in ("weight", "bias")
            if is_norm and leaf == "weight":
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif leaf == "bias":
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            elif p.numel() > 1 and float(p.std()) == 0.0:
                fan_in = max(1, p[0].numel())
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))


def build_pipeline(tmp: pathlib.Path):
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(WEIGHT_SEED)
    gen = torch.Generator().manual_seed(WEIGHT_SEED)
    tok_dir = write_tokenizer_files(tmp / "tokenizer-src")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), pad_token=EOS, model_max_length=77)
    vocab_size = len(tokenizer)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
            projection_dim=32,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=LATENT[1],
        in_channels=4,
        out_channels=4,
        # norm_num_groups must stay 32 (what every real SD UNet uses): candle
        # 0.11.1's DownBlock2D/UpBlock2D ignore resnet_groups and always build
        # 32-group ResNet norms (see docs/parity.md), so other values diverge.
        block_out_channels=(32, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        # diffusers' historical misnomer: this is the number of heads (2 heads of 8).
        attention_head_dim=2,
        cross_attention_dim=32,
        norm_num_groups=32,
        norm_eps=1e-5,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=WIDTH,
        scaling_factor=0.18215,
    )
    for m in (text_encoder, unet, vae):
        randomise(m, gen)
        m.eval()
    with torch.no_grad():
        # A random decoder's output range is arbitrary: scale its last conv so
        # decoded pixels spread over [-1, 1] (std ~0.4 around ~0) for latents
        # like the ones the runs end with, so the final clamp to [0, 1] hides
        # little and the image comparison is not blind.
        conv = vae.decoder.conv_out
        conv.bias.copy_(0.02 * torch.randn(conv.bias.shape, generator=gen))
        probe = 15.0 * torch.randn((1, *LATENT), generator=gen)
        raw = vae.decode(probe / vae.config.scaling_factor, return_dict=False)[0]
        k = 0.4 / float(raw.std())
        conv.weight.mul_(k)
        conv.bias.mul_(k)
    scheduler = PNDMScheduler(**BASE, set_alpha_to_one=False, skip_prk_steps=True)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class NoiseQueue:
    """Replaces diffusers' `randn_tensor` inside one scheduler module: hands out
    the engine's noise blocks in order (block 0 is the initial latent)."""

    def __init__(self, stream: np.ndarray, first: int = 1):
        self.stream = stream
        self.next = first
        self.drawn = 0

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None, **_):
        block = torch.from_numpy(self.stream[self.next].copy())
        self.next += 1
        self.drawn += 1
        assert tuple(shape)[1:] == tuple(block.shape), (shape, block.shape)
        return block.expand(tuple(shape)).to(dtype=dtype or torch.float32)


def cases():
    """(name, engine sampler, scheduler class, kwargs, steps, set_timesteps kwargs, notes, engine-equivalent)."""
    import diffusers as d

    k = dict(BASE, timestep_spacing="linspace")
    lead = dict(BASE, timestep_spacing="leading")
    k_grid_4 = [999, 666, 333, 0]  # linspace(999, 0, 4): the k-diffusion grid, integral at 4 steps
    return [
        ("ddim", "DDIM", d.DDIMScheduler, dict(lead, clip_sample=False, set_alpha_to_one=True), STEPS, {}, "eta 0, leading timesteps, final alpha-bar 1", True),
        ("ddpm", "DDPM", d.DDPMScheduler, dict(lead, clip_sample=False, variance_type="fixed_small"), STEPS, {}, "leading timesteps, engine noise injected", True),
        ("k_euler", "K_EULER", d.EulerDiscreteScheduler, k, STEPS, {}, "linspace (k-diffusion) sigmas", True),
        ("k_euler_ancestral", "K_EULER_ANCESTRAL", d.EulerAncestralDiscreteScheduler, k, STEPS, {}, "engine noise injected", True),
        ("k_heun", "K_HEUN", d.HeunDiscreteScheduler, k, STEPS, {}, "", True),
        ("k_lms", "K_LMS", d.LMSDiscreteScheduler, k, STEPS, {}, "order 4", True),
        ("k_dpm_2", "K_DPM_2", d.KDPM2DiscreteScheduler, k, STEPS, {}, "", True),
        ("k_dpm_2_ancestral", "K_DPM_2_ANCESTRAL", d.KDPM2AncestralDiscreteScheduler, k, STEPS, {}, "engine noise injected", True),
        (
            "k_dpmpp_2m",
            "K_DPMPP_2M",
            d.DPMSolverMultistepScheduler,
            dict(k, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero", lower_order_final=True),
            4,
            dict(timesteps=k_grid_4),
            "4 steps on the k-diffusion grid (custom timesteps 999/666/333/0); initial latent pre-scaled, see docs",
            True,
        ),
        # Known divergences, kept as fixtures so the difference stays measured.
        ("ddim_sd15_config", "DDIM", d.DDIMScheduler, dict(lead, clip_sample=False, set_alpha_to_one=False), STEPS, {}, "SD 1.5's shipped set_alpha_to_one=false", False),
        (
            "k_dpmpp_2m_diffusers_grid",
            "K_DPMPP_2M",
            d.DPMSolverMultistepScheduler,
            dict(k, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero", lower_order_final=True),
            STEPS,
            {},
            "diffusers' own linspace grid (rounded) and init_noise_sigma 1",
            False,
        ),
    ]


def flow_cases(stream: np.ndarray, out: pathlib.Path) -> list[dict]:
    """FLOW_EULER against FlowMatchEulerDiscreteScheduler, scheduler only: the
    engine has no FLUX/SD3 pipeline yet, so the "model" is a fixed analytic
    velocity field v(x, sigma) = tanh(x) + sigma * c (c = noise block 1),
    started from noise block 0 at sigma 1."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    steps, shift = 4, 3.0
    specs = [
        # FluxPipeline: sigmas linspace(1, 1/N, N), exponential time shift with mu (exp(mu) = shift).
        ("flow_flux", FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True), dict(sigmas=np.linspace(1.0, 1 / steps, steps), mu=math.log(shift)), True,
         "FluxPipeline's sigmas and dynamic (exponential) shift, exp(mu) = 3"),
        # StableDiffusion3Pipeline: the scheduler's own grid, static shift 3.
        ("flow_sd3", FlowMatchEulerDiscreteScheduler(shift=shift), dict(num_inference_steps=steps), False,
         "StableDiffusion3Pipeline's default grid (shift 3): linspace between the shifted training extremes, shifted again"),
    ]
    x0 = torch.from_numpy(stream[0].copy())[None]
    c = torch.from_numpy(stream[1].copy())[None]
    cases = []
    for name, sched, kwargs, equivalent, notes in specs:
        sched.set_timesteps(**kwargs)
        x = x0.clone()
        for i, t in enumerate(sched.timesteps):
            v = torch.tanh(x) + sched.sigmas[i] * c
            x = sched.step(v, t, x, return_dict=False)[0]
        save_file({"x": to_np(x)}, str(out / "cases" / f"{name}.safetensors"))
        cases.append({"name": name, "steps": steps, "shift": shift, "sigmas": [float(s) for s in sched.sigmas], "engine_equivalent": equivalent, "notes": notes})
        print(f"{name:28s} sigmas {[round(float(s), 4) for s in sched.sigmas]}")
    return cases


def to_np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    args = ap.parse_args()
    out: pathlib.Path = args.out
    noise_path = out / "noise.safetensors"
    if not noise_path.is_file():
        print(f"{noise_path} is missing: run the Rust test `parity::write_noise` first (docs/parity.md)", file=sys.stderr)
        return 2
    stream = load_file(str(noise_path))["stream"]  # [K, 4, 8, 8]: the engine's seeded draws, in order
    assert stream.shape[1:] == LATENT, stream.shape

    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)
    import shutil
    import tempfile

    import diffusers
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        pipe = build_pipeline(pathlib.Path(tmp))
    model_dir = out / "tiny-sd15"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    pipe.save_pretrained(str(model_dir), safe_serialization=True)
    # transformers 5 writes only tokenizer.json; real SD repos also ship the
    # BPE files the engine can rebuild the tokenizer from.
    write_tokenizer_files(model_dir / "tokenizer")

    # Per-stage references: token ids and text embeddings (negative first, as CFG batches them).
    tok = pipe.tokenizer
    ids = [
        tok(t, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids[0]
        for t in (NEGATIVE, PROMPT)
    ]
    ids = torch.stack(ids)
    emb = pipe.text_encoder(ids)[0]
    pos, neg = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
    assert torch.equal(torch.cat([neg, pos]), emb), "encode_prompt differs from the plain text encoder"
    reference = {"ids": ids.numpy().astype(np.int64), "text_embeddings": to_np(emb)}

    meta = {
        "generated_by": "tools/parity/make_fixtures.py",
        "versions": {"diffusers": diffusers.__version__, "transformers": transformers.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "prompt": PROMPT,
        "negative": NEGATIVE,
        "guidance": GUIDANCE,
        "width": WIDTH,
        "height": HEIGHT,
        "weight_seed": WEIGHT_SEED,
        "cases": [],
    }
    init = torch.from_numpy(stream[0].copy())[None]
    (out / "cases").mkdir(exist_ok=True)
    first_unet_done = False
    for name, sampler, cls, kwargs, steps, ts_kwargs, notes, equivalent in cases():
        sched = cls(**kwargs)
        pipe.scheduler = sched
        module = sys.modules[cls.__module__]
        queue = NoiseQueue(stream)
        patched = hasattr(module, "randn_tensor")
        saved = getattr(module, "randn_tensor", None)
        if patched:
            module.randn_tensor = queue
        latents_in = init.clone()
        if name == "k_dpmpp_2m":
            # diffusers' DPM-Solver scales unit noise by init_noise_sigma = 1 in
            # the VP form; the engine (as k-diffusion) starts at sigma_max * noise
            # in the VE form, i.e. sigma_max / sqrt(1 + sigma_max^2) * noise in VP.
            s = float(((1 - sched.alphas_cumprod[-1]) / sched.alphas_cumprod[-1]) ** 0.5)
            latents_in = latents_in * (s / math.sqrt(1 + s * s))
        # Capture the first UNet call (input, timestep, output) of the first case.
        calls = []

        def hook(_m, a, kw, o, calls=calls):
            if not calls:
                sample = a[0] if a else kw["sample"]
                t = a[1] if len(a) > 1 else kw["timestep"]
                calls.append((sample.clone(), torch.as_tensor(t, dtype=torch.float32).reshape(1).clone(), o[0].clone()))

        h = pipe.unet.register_forward_hook(hook, with_kwargs=True)
        try:
            lat = pipe(
                PROMPT,
                negative_prompt=NEGATIVE,
                num_inference_steps=steps if not ts_kwargs else None,
                guidance_scale=GUIDANCE,
                height=HEIGHT,
                width=WIDTH,
                latents=latents_in,
                output_type="latent",
                **ts_kwargs,
            ).images
        finally:
            h.remove()
            if patched:
                module.randn_tensor = saved
        img = pipe.vae.decode(lat / pipe.vae.config.scaling_factor, return_dict=False)[0]
        raw = img[0]
        image = (img / 2 + 0.5).clamp(0, 1)
        clamped = float(((raw < -1) | (raw > 1)).float().mean())
        save_file({"latents": to_np(lat), "image": to_np(image)}, str(out / "cases" / f"{name}.safetensors"))
        if not first_unet_done and name == "k_euler":
            x, t, o = calls[0]
            reference.update({"unet_in": to_np(x), "unet_t": to_np(t), "unet_out": to_np(o)})
            # The same weights in a UNet with norm_num_groups = 8 (group counts
            # do not change tensor shapes): documents the candle group bug.
            from diffusers import UNet2DConditionModel

            g8 = UNet2DConditionModel.from_config({**pipe.unet.config, "norm_num_groups": 8})
            g8.load_state_dict(pipe.unet.state_dict())
            g8.eval()
            reference["unet_out_groups8"] = to_np(g8(x, t, encoder_hidden_states=emb, return_dict=False)[0])
            first_unet_done = True
        timesteps = [float(t) for t in sched.timesteps]
        sigmas = [float(s) for s in getattr(sched, "sigmas", [])]
        meta["cases"].append(
            {
                "name": name,
                "sampler": sampler,
                "scheduler": cls.__name__,
                "scheduler_kwargs": {k: v for k, v in kwargs.items() if k not in BASE},
                "steps": steps,
                "timesteps": timesteps,
                "sigmas": sigmas,
                "noise_blocks_drawn": queue.drawn,
                "engine_equivalent": equivalent,
                "notes": notes,
                "clamped_fraction": clamped,
            }
        )
        print(f"{name:28s} steps {steps} draws {queue.drawn} clamped {clamped:.3f} |lat| {float(lat.abs().max()):.3f}")
    meta["flow_cases"] = flow_cases(stream, out)
    save_file(reference, str(out / "reference.safetensors"))
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
