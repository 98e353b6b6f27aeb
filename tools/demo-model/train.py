"""Trains imagegate-demo: a small Stable Diffusion (CLIP text encoder, VAE,
UNet, in diffusers' layout) on the procedural pictures of dataset.py.

    python tools/demo-model/train.py --out models/imagegate-demo

Stages, all from one seed:
1. render the training pictures in memory (held-out combinations excluded);
2. write a CLIP BPE tokenizer whose merges spell the caption vocabulary
   (any other text still tokenizes, byte by byte);
3. train the VAE (reconstruction + a small KL term), then encode every
   picture once and set `scaling_factor` so latents have unit variance;
4. train the UNet and the text encoder together on the latents with the
   v-prediction objective (`--prediction`; epsilon gave noise at 16 latent
   channels), the plain v loss at every timestep (`--loss-weighting`:
   min-SNR-5 starved the layout-deciding noisiest steps), 10% empty captions (for classifier-free
   guidance) and an EMA of both; `--resume DIR` trains a saved pipeline's
   UNet and text encoder further;
5. fine-tune the decoder with the encoder frozen (the UNet's latents stay
   valid; pictures come out sharper);
6. save the EMA weights as fp16 safetensors with configs, tokenizer and
   scheduler, and report held-out accuracy with analyse.py's rules.

Same seed, same thread count, same package versions: same weights.
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import analyse  # noqa: E402
import dataset  # noqa: E402
from clip_bpe import BOS, EOS, write_bpe  # noqa: E402
CONTEXT = 24  # tokens per caption row (the longest caption needs 15)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def caption_words() -> list[str]:
    words = set("a an two three of the on at in background".split())
    words |= set(dataset.SHAPES) | set(dataset.PLURALS.values()) | set(dataset.COLOURS) | set(dataset.SIZES)
    words |= set(dataset.POSITIONS)
    return sorted(words)


def write_tokenizer(dir: Path):
    """tools/clip_bpe.py's vocab.json + merges.txt spelling the caption
    words, then transformers' CLIPTokenizerFast saves tokenizer.json and its
    configs beside them."""
    from transformers import CLIPTokenizerFast

    vocab_size = write_bpe(dir, caption_words())
    tok = CLIPTokenizerFast(vocab_file=str(dir / "vocab.json"), merges_file=str(dir / "merges.txt"), bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS, model_max_length=CONTEXT)
    tok.save_pretrained(dir)
    return tok, vocab_size


def render_all(count: int, side: int, seed: int):
    combos = [c for c in dataset.combinations() if not dataset.is_held_out(*c)]
    rng = random.Random(seed)
    images = np.empty((count, side, side, 3), dtype=np.uint8)
    samples = []
    for i in range(count):
        s = dataset.draw_sample(rng, combos)
        images[i] = np.asarray(dataset.render(s, side))
        samples.append(vars(s))
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), samples


def to_unit(x_uint8: torch.Tensor) -> torch.Tensor:
    return x_uint8.float() / 127.5 - 1.0


def train_vae(images: torch.Tensor, samples: list[dict], args):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=args.latent_channels, sample_size=args.size,
        down_block_types=("DownEncoderBlock2D",) * len(args.vae_channels), up_block_types=("UpDecoderBlock2D",) * len(args.vae_channels),
        block_out_channels=tuple(args.vae_channels), layers_per_block=args.vae_layers, norm_num_groups=16,
    )
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed + 1)
    start = time.time()
    for step in range(1, args.vae_steps + 1):
        idx = torch.randint(0, len(images), (args.vae_batch,), generator=g)
        x = to_unit(images[idx])
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        rec = vae.decode(z).sample
        kl = post.kl().mean() / (x[0].numel())
        loss = F.mse_loss(rec, x) + 0.01 * F.l1_loss(rec, x) + args.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.vae_steps:
            log(f"vae step {step}/{args.vae_steps} loss {loss.item():.5f} ({time.time() - start:.0f}s)")
        if step % 500 == 0 and step < args.vae_steps:
            log(f"vae step {step}: reconstructions passing analyse.py: {reconstruction_pass_rate(vae, images, samples):.0%}")
    vae.eval()
    return vae


def finetune_decoder(vae, images: torch.Tensor, args) -> None:
    """Trains the decoder alone with the encoder frozen: the latents the
    UNet learned stay the same, and pictures come out sharper."""
    vae.requires_grad_(False)
    vae.decoder.requires_grad_(True)
    vae.post_quant_conv.requires_grad_(True)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.decoder_lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed + 3)
    start = time.time()
    for step in range(1, args.decoder_steps + 1):
        for group in opt.param_groups:
            group["lr"] = args.decoder_lr * (0.5 * (1 + math.cos(math.pi * step / args.decoder_steps)) * 0.9 + 0.1)
        idx = torch.randint(0, len(images), (args.vae_batch,), generator=g)
        x = to_unit(images[idx])
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        rec = vae.decode(z).sample
        loss = F.mse_loss(rec, x) + 0.1 * F.l1_loss(rec, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.decoder_steps:
            log(f"decoder step {step}/{args.decoder_steps} loss {loss.item():.5f} ({time.time() - start:.0f}s)")
    vae.requires_grad_(False)
    vae.eval()


@torch.no_grad()
def reconstruction_pass_rate(vae, images: torch.Tensor, samples: list[dict], n: int = 200) -> float:
    """analyse.py's checks on VAE round trips of training pictures: the
    ceiling for what the UNet can reach through this decoder."""
    rec = vae.decode(vae.encode(to_unit(images[:n])).latent_dist.mean).sample
    pixels = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return sum(analyse.passes(s, analyse.analyse(p, s["size"])) for s, p in zip(samples[:n], pixels)) / n


@torch.no_grad()
def encode_all(vae, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([vae.encode(to_unit(images[i : i + 256])).latent_dist.mean for i in range(0, len(images), 256)])


def latent_side(args) -> int:
    """The VAE halves the side once per block after the first."""
    return args.size // 2 ** (len(args.vae_channels) - 1)


def make_unet(args):
    from diffusers import UNet2DConditionModel

    side = latent_side(args)
    # Cross-attention only where a block's side is at most --attn-side:
    # attention at 16x16 cost 1.97 s a step instead of 1.05 s on this CPU.
    attn = [side // 2**i <= args.attn_side for i in range(len(args.unet_channels))]
    return UNet2DConditionModel(
        sample_size=side, in_channels=args.latent_channels, out_channels=args.latent_channels,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        block_out_channels=tuple(args.unet_channels), layers_per_block=1, attention_head_dim=4,
        cross_attention_dim=args.text_width, norm_num_groups=32,
    )


def make_text_encoder(vocab_size: int, args):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=args.text_width, intermediate_size=args.text_width * 4,
        num_hidden_layers=args.text_layers, num_attention_heads=4, max_position_embeddings=CONTEXT,
        hidden_act="quick_gelu", bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )
    return CLIPTextModel(cfg)


def ema_update(ema, model, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - decay)


def train_unet(latents, ids, empty_ids, vocab_size, args, start_from=None):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02, prediction_type=args.prediction)
    # start_from: (unet, text encoder) of a saved pipeline, to train on.
    unet, te = start_from or (make_unet(args), make_text_encoder(vocab_size, args))
    ema_unet, ema_te = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(te).requires_grad_(False)
    params = list(unet.parameters()) + list(te.parameters())
    log(f"unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M params, text encoder {sum(p.numel() for p in te.parameters()) / 1e6:.2f}M")
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    warmup = 200
    lr_at = lambda s: args.lr * min(1.0, s / warmup) * (0.5 * (1 + math.cos(math.pi * min(1.0, s / args.unet_steps))) * 0.9 + 0.1)
    abar = sched.alphas_cumprod
    snr = abar / (1 - abar)
    g = torch.Generator().manual_seed(args.seed + 2)
    start = time.time()
    for step in range(1, args.unet_steps + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        idx = torch.randint(0, len(latents), (args.batch,), generator=g)
        x0 = latents[idx]
        tokens = ids[idx].clone()
        drop = torch.rand(args.batch, generator=g) < 0.1
        tokens[drop] = empty_ids
        t = torch.randint(0, 1000, (args.batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        xt = sched.add_noise(x0, noise, t)
        # bf16 matmuls where the CPU has them (AVX512-BF16: 1.6x here); fp32 weights and loss.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            cond = te(tokens).last_hidden_state
            pred = unet(xt, t, encoder_hidden_states=cond).sample.float()
        # Min-SNR-5 weights, in the form for each target; "uniform" keeps the
        # plain loss on the target, which for v-prediction still weights the
        # noisiest steps (where the text alone must set the layout) about
        # 1, where min-SNR gives them about SNR, nearly 0.
        if args.prediction == "v_prediction":
            target, weight = sched.get_velocity(x0, noise, t), torch.clamp(snr[t], max=5.0) / (snr[t] + 1)
        else:
            target, weight = noise, torch.clamp(snr[t], max=5.0) / snr[t]
        if args.loss_weighting == "uniform":
            weight = torch.ones_like(weight)
        loss = (weight.view(-1, 1, 1, 1) * (pred - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_update(ema_unet, unet, min(args.ema, (1 + step) / (10 + step)))
        ema_update(ema_te, te, min(args.ema, (1 + step) / (10 + step)))
        if step % 100 == 0 or step == args.unet_steps:
            log(f"unet step {step}/{args.unet_steps} loss {loss.item():.4f} lr {lr_at(step):.2e} ({time.time() - start:.0f}s)")
        if step == args.unet_stop:
            break
        if args.eval_every and step % args.eval_every == 0:
            yield ema_unet, ema_te, step
    yield ema_unet, ema_te, step


def pipeline(vae, te, tok, unet, prediction: str):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    sched = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02, prediction_type=prediction, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def held_out_scenes(seed: int, count: int) -> list[dict]:
    """The held-out captions training is scored on (drawn from seed + 1)."""
    rng = random.Random(seed + 1)
    held = [c for c in dataset.combinations() if dataset.is_held_out(*c)]
    return [vars(dataset.draw_sample(rng, held)) for _ in range(count)]


@torch.no_grad()
def draw_and_check(pipe, scenes: list[dict], seed: int, steps: int, guidance: float, side: int):
    """Draws each scene's caption, ten at a time, and yields (scene, pixels,
    what analyse.py sees, whether it passes)."""
    for i in range(0, len(scenes), 10):
        chunk = scenes[i : i + 10]
        g = torch.Generator().manual_seed(seed + 100 + i)
        out = pipe([s["caption"] for s in chunk], num_inference_steps=steps, guidance_scale=guidance, generator=g, output_type="np", height=side, width=side).images
        for s, img in zip(chunk, out):
            pixels = (img * 255).round().astype(np.uint8)
            seen = analyse.analyse(pixels, s["size"])
            yield s, pixels, seen, analyse.passes(s, seen)


def evaluate(pipe, heldout: list[dict], args) -> float:
    return sum(ok for *_, ok in draw_and_check(pipe, heldout, args.seed, args.eval_steps, args.guidance, args.size)) / len(heldout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--images", type=int, default=30000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vae-steps", type=int, default=2400)
    ap.add_argument("--vae-channels", type=int, nargs="+", default=[16, 32, 64], help="one width per VAE block; the latent side is the picture side / 2^(blocks - 1)")
    ap.add_argument("--vae-layers", type=int, default=1)
    ap.add_argument("--latent-channels", type=int, default=16, help="VAE latent channels (the UNet's in and out channels follow)")
    ap.add_argument("--vae-only", action="store_true", help="stop after the VAE stage (to compare VAE settings)")
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--kl-weight", type=float, default=1e-4)
    ap.add_argument("--unet-steps", type=int, default=4000)
    ap.add_argument("--unet-stop", type=int, default=2000, help="stop the UNet stage here; the learning-rate schedule still spans --unet-steps")
    ap.add_argument("--decoder-steps", type=int, default=600)
    ap.add_argument("--decoder-lr", type=float, default=1e-3)
    ap.add_argument("--decoder-only", type=Path, help="only fine-tune the decoder of this saved pipeline, in place")
    ap.add_argument("--loss-weighting", choices=["min-snr5", "uniform"], default="uniform", help="per-timestep loss weights of the UNet stage (the shipped checkpoint's first two stages used min-snr5)")
    ap.add_argument("--resume", type=Path, help="train the UNet and text encoder of this saved pipeline further (its VAE and tokenizer are kept)")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast for the UNet stage")
    ap.add_argument("--unet-channels", type=int, nargs="+", default=[64, 128, 192], help="one width per UNet block, each block halving the side")
    ap.add_argument("--attn-side", type=int, default=8, help="cross-attention in the UNet blocks whose side is at most this")
    ap.add_argument("--text-width", type=int, default=128)
    ap.add_argument("--text-layers", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--prediction", choices=["epsilon", "v_prediction"], default="v_prediction", help="what the UNet predicts")
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--eval-steps", type=int, default=20)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-count", type=int, default=60)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    log(f"rendering {args.images} pictures at {args.size}px")
    images, samples = render_all(args.images, args.size, args.seed)
    captions = [s["caption"] for s in samples]
    if args.decoder_only:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(args.decoder_only, torch_dtype=torch.float32, safety_checker=None)
        log(f"reconstructions passing analyse.py: {reconstruction_pass_rate(pipe.vae, images, samples):.0%}")
        finetune_decoder(pipe.vae, images, args)
        log(f"reconstructions passing analyse.py: {reconstruction_pass_rate(pipe.vae, images, samples):.0%}")
        save(pipe, args.out)
        log(f"saved {args.out} (decoder fine-tuned)")
        return
    resumed = None
    if args.resume:
        from diffusers import StableDiffusionPipeline

        resumed = StableDiffusionPipeline.from_pretrained(args.resume, torch_dtype=torch.float32, safety_checker=None)
        tok, vocab_size = resumed.tokenizer, len(resumed.tokenizer)
        log(f"resuming from {args.resume}: its tokenizer, VAE, text encoder and UNet")
    else:
        tok, vocab_size = write_tokenizer(args.out / "tokenizer")
    ids = tok(captions, padding="max_length", max_length=CONTEXT, truncation=True, return_tensors="pt").input_ids
    empty_ids = tok([""], padding="max_length", max_length=CONTEXT, return_tensors="pt").input_ids[0]
    log(f"vocabulary {vocab_size}; e.g. {captions[0]!r} -> {ids[0].tolist()}")

    if resumed:
        vae = resumed.vae.requires_grad_(False).eval()
        latents = encode_all(vae, images) * vae.config.scaling_factor
    else:
        vae = train_vae(images, samples, args)
        log(f"reconstructions passing analyse.py: {reconstruction_pass_rate(vae, images, samples):.0%}")
        if args.vae_only:
            return
        raw = encode_all(vae, images)
        vae.register_to_config(scaling_factor=float(1.0 / raw.std()))
        latents = raw * vae.config.scaling_factor
    log(f"latents {tuple(latents.shape)}, scaling_factor {vae.config.scaling_factor:.5f}")

    heldout = held_out_scenes(args.seed, args.eval_count)
    start_from = (resumed.unet.train(), resumed.text_encoder.train()) if resumed else None
    for unet, te, step in train_unet(latents, ids, empty_ids, vocab_size, args, start_from):
        pipe = pipeline(vae, te, tok, unet, args.prediction)
        if step == args.unet_stop or step == args.unet_steps:
            finetune_decoder(vae, images, args)
            log(f"reconstructions passing analyse.py: {reconstruction_pass_rate(vae, images, samples):.0%}")
        log(f"step {step}: held-out pass rate {evaluate(pipe, heldout, args):.0%} ({len(heldout)} captions, {args.eval_steps} steps, guidance {args.guidance})")
        # Saved at every evaluation, so a run cut short still leaves its latest weights.
        save(pipe, args.out)
        log(f"saved {args.out} (step {step})")


def save(pipe, out: Path) -> None:
    half = copy.deepcopy(pipe).to(torch.float16)
    half.save_pretrained(out, safe_serialization=True)


if __name__ == "__main__":
    main()
