//! CLIP's byte-level BPE tokenizer: loaded from `tokenizer/tokenizer.json`
//! when present, else rebuilt from `vocab.json` + `merges.txt` (what SD 1.x
//! and 2.x repos ship), with the same normaliser and pre-tokeniser as
//! transformers' `CLIPTokenizerFast`. Start/end tokens and padding to the
//! context length are added here, so both layouts give identical ids.
//! Also T5's fixed-length rows (FLUX, SD3) from a `tokenizer.json`.

use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormSeq};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSeq;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{EngineError, Result};

/// CLIP's start-of-text token.
pub const BOS: &str = "<|startoftext|>";
/// CLIP's end-of-text token (also the default pad).
pub const EOS: &str = "<|endoftext|>";
/// The word-splitting pattern of OpenAI's CLIP tokenizer.
const CLIP_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Builds CLIP's tokenizer from `vocab.json` and `merges.txt`.
pub fn build_clip_tokenizer(vocab: &Path, merges: &Path) -> Result<Tokenizer> {
    let tok_err = |e: Box<dyn std::error::Error + Send + Sync>| EngineError::Tokenizer(e.to_string());
    let (v, m) = (vocab.to_string_lossy(), merges.to_string_lossy());
    let bpe = BPE::from_file(&v, &m).unk_token(EOS.to_string()).end_of_word_suffix("</w>".to_string()).build().map_err(tok_err)?;
    let mut tok = Tokenizer::new(bpe);
    let normalizer = NormSeq::new(vec![NFC.into(), Replace::new(ReplacePattern::Regex(r"\s+".into()), " ").map_err(tok_err)?.into(), Lowercase.into()]);
    tok.with_normalizer(Some(normalizer)).map_err(tok_err)?;
    let split = Split::new(SplitPattern::Regex(CLIP_PATTERN.into()), SplitDelimiterBehavior::Removed, true).map_err(tok_err)?;
    tok.with_pre_tokenizer(Some(PreSeq::new(vec![split.into(), ByteLevel::new(false, false, false).into()])));
    tok.with_decoder(Some(ByteLevel::default()));
    tok.add_special_tokens([AddedToken::from(BOS, true), AddedToken::from(EOS, true)]).map_err(tok_err)?;
    Ok(tok)
}

/// A CLIP tokenizer producing fixed-length id rows.
pub struct ClipTokenizer {
    inner: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_len: usize,
}

impl ClipTokenizer {
    /// Loads from a `tokenizer/` folder; rows are `max_len` long (the text
    /// encoder's `max_position_embeddings`).
    pub fn load(dir: &Path, max_len: usize) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let inner = if json.is_file() {
            Tokenizer::from_file(&json).map_err(|e| EngineError::bad_model(&json, e))?
        } else {
            build_clip_tokenizer(&dir.join("vocab.json"), &dir.join("merges.txt"))?
        };
        let id = |t: &str| inner.token_to_id(t).ok_or_else(|| EngineError::bad_model(dir, format!("tokenizer has no `{t}`")));
        let (bos, eos) = (id(BOS)?, id(EOS)?);
        // SD 2.x pads with "!" (id 0), SD 1.x with end-of-text; the config says which.
        let pad = pad_token(dir).and_then(|t| inner.token_to_id(&t)).unwrap_or(eos);
        Ok(Self { inner, bos, eos, pad, max_len })
    }

    /// The end-of-text id.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// `[BOS, tokens…, EOS, PAD…]`, exactly `max_len` ids; long prompts are cut
    /// (keeping the final EOS), as diffusers does.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(self.bos);
        ids.extend(enc.get_ids().iter().copied().take(self.max_len.saturating_sub(2)));
        ids.push(self.eos);
        ids.resize(self.max_len, self.pad);
        Ok(ids)
    }
}

/// The pad token named in `tokenizer_config.json` or `special_tokens_map.json`.
fn pad_token(dir: &Path) -> Option<String> {
    ["tokenizer_config.json", "special_tokens_map.json"].iter().find_map(|f| {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(f)).ok()?).ok()?;
        match v.get("pad_token")? {
            serde_json::Value::String(s) => Some(s.clone()),
            other => other.get("content")?.as_str().map(str::to_string),
        }
    })
}

/// A T5 tokenizer (FLUX and SD3's `tokenizer_2`/`tokenizer_3`) producing
/// fixed-length rows: tokens, then `</s>`, then `<pad>` up to `max_len`,
/// as transformers' `T5TokenizerFast` with `padding="max_length"` does.
pub struct T5Tokenizer {
    inner: Tokenizer,
    eos: u32,
    pad: u32,
    max_len: usize,
}

impl T5Tokenizer {
    /// Loads `tokenizer.json` from `dir`; rows are `max_len` ids long.
    pub fn load(dir: &Path, max_len: usize) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let inner = Tokenizer::from_file(&json).map_err(|e| EngineError::bad_model(&json, e))?;
        let id = |t: &str| inner.token_to_id(t).ok_or_else(|| EngineError::bad_model(&json, format!("tokenizer has no `{t}`")));
        let (eos, pad) = (id("</s>")?, id("<pad>")?);
        Ok(Self { inner, eos, pad, max_len })
    }

    /// The configured `model_max_length` of a tokenizer folder, if any.
    pub fn model_max_length(dir: &Path) -> Option<usize> {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?).ok()?;
        v.get("model_max_length")?.as_u64().map(|n| n as usize)
    }

    /// `[tokens…, </s>, <pad>…]`, exactly `max_len` ids; long prompts are cut, keeping `</s>`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let mut ids: Vec<u32> = enc.get_ids().iter().copied().take(self.max_len.saturating_sub(1)).collect();
        ids.push(self.eos);
        ids.resize(self.max_len, self.pad);
        Ok(ids)
    }
}
