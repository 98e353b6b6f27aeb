"""A small CLIP-style byte-level BPE, laid out as OpenAI's CLIP vocabulary
is (the 256 byte symbols, the same with `</w>`, one merge per step that
spells each listed word, then the two special tokens), written as
`vocab.json` and `merges.txt`. Shared by tools/parity (the engine's test
fixture construction) and tools/demo-model (the shipped model's tokenizer).
Any text still tokenizes, byte by byte, where no merge applies.
"""

from __future__ import annotations

import json
from pathlib import Path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def byte_chars() -> list[str]:
    """GPT-2/CLIP's byte -> printable character table, printable bytes first."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_bpe(folder: Path, words: list[str]) -> int:
    """Writes `vocab.json` and `merges.txt` into `folder`; returns the vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = byte_chars()
    vocab = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    for word in words:
        parts = list(word)
        parts[-1] += "</w>"
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in merges:
                merges.append(pair)
                vocab.append(parts[0] + parts[1])
            parts[0:2] = [parts[0] + parts[1]]
    vocab += [BOS, EOS]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return len(vocab)
