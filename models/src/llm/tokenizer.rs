//! Building a `tokenizers::Tokenizer` from the GGUF's own tokenizer metadata.
//!
//! A GGUF file is self-contained: the vocabulary, the merges or scores and the special-token
//! ids travel with the weights, so no separate `tokenizer.json` has to be found or trusted.
//! candle 0.11.1 ships `TokenizerFromGguf`, but it only knows `gpt2` vocabularies and a few
//! `tokenizer.ggml.pre` values; anything else (SmolLM2's `smollm`, for instance) falls back to
//! GPT-2's ByteLevel with `add_prefix_space = true`, which puts a space in front of every
//! prompt and glues digits together, so the model sees token sequences it was never trained
//! on. This module mirrors llama.cpp's choices instead (`llama-vocab.cpp`):
//!
//! * `gpt2` (byte-level BPE, tokens + merges), with the pre-tokenizer chosen by
//!   `tokenizer.ggml.pre`: `smollm`/`starcoder`/... split every digit, then the GPT-2 regex;
//!   `qwen2` and `llama3` use their own regexes; everything else the GPT-2 regex, never with a
//!   prefix space.
//! * `llama` (SentencePiece BPE as in Llama 2 and Gemma: tokens + scores + `<0xNN>` byte
//!   tokens). llama.cpp merges the adjacent pair whose concatenation has the highest score;
//!   a BPE whose merge ranks are ordered by the merged token's score does the same (this is
//!   how Hugging Face converts SentencePiece models), with byte fallback for characters not in
//!   the vocabulary and llama.cpp's space prefix after every special token when
//!   `add_space_prefix` is set.
//!
//! Control and user-defined tokens (`tokenizer.ggml.token_type` 3 and 4) and the BOS/EOS/EOT
//! ids become added tokens, so the chat template's markers encode as single tokens.

use std::collections::HashSet;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, SplitDelimiterBehavior, Tokenizer};

use super::gguf::{get_f32_array, get_int_array, get_str, get_str_array, get_token_id, Metadata};

/// Keys of special-token ids in GGUF metadata (llama.cpp spells `seperator` that way).
pub(crate) const SPECIAL_ID_KEYS: [&str; 7] = [
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.seperator_token_id",
];

// llama.cpp token types.
const TYPE_NORMAL: u64 = 1;
const TYPE_UNKNOWN: u64 = 2;
const TYPE_CONTROL: u64 = 3;
const TYPE_USER_DEFINED: u64 = 4;

const REGEX_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a `gpt2` vocabulary is pre-tokenized (from `tokenizer.ggml.pre`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreKind {
    /// GPT-2's regex (ByteLevel with `use_regex`), no prefix space.
    Gpt2,
    /// Every digit on its own, then GPT-2's regex.
    Digits,
    Qwen2,
    Llama3,
}

fn pre_kind(pre: &str) -> PreKind {
    match pre {
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => PreKind::Digits,
        "qwen2" | "deepseek-r1-qwen" | "megrez" => PreKind::Qwen2,
        "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" | "falcon3" | "pixtral" | "lfm2" => PreKind::Llama3,
        _ => PreKind::Gpt2,
    }
}

/// Builds the tokenizer from GGUF metadata. `Err` is a message for the user.
pub(crate) fn from_gguf(md: &Metadata) -> Result<Tokenizer, String> {
    let model = get_str(md, "tokenizer.ggml.model")
        .ok_or("metadata `tokenizer.ggml.model` is missing (pass a tokenizer.json)")?;
    let tokens = get_str_array(md, "tokenizer.ggml.tokens")?;
    if tokens.is_empty() {
        return Err("metadata `tokenizer.ggml.tokens` is empty".into());
    }
    let types = get_int_array(md, "tokenizer.ggml.token_type").filter(|t| t.len() == tokens.len());
    let mut tokenizer = match model {
        "gpt2" => byte_level_bpe(md, &tokens)?,
        "llama" => sentencepiece_bpe(md, &tokens, types.as_deref())?,
        other => {
            return Err(format!(
                "tokenizer model `{other}` is not supported (gpt2 and llama are); pass a \
                 tokenizer.json"
            ))
        }
    };
    add_special_tokens(&mut tokenizer, md, &tokens, types.as_deref())?;
    Ok(tokenizer)
}

fn vocab_of(tokens: &[&str]) -> Vocab {
    tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect()
}

fn byte_level_bpe(md: &Metadata, tokens: &[&str]) -> Result<Tokenizer, String> {
    let merges = get_str_array(md, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format!("invalid merge `{m}` in `tokenizer.ggml.merges`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pre = get_str(md, "tokenizer.ggml.pre").unwrap_or("default");
    let kind = pre_kind(pre);
    let ignore_merges = super::gguf::get_bool(md, "tokenizer.ggml.ignore_merges")
        .unwrap_or(matches!(pre, "llama3" | "llama-v3" | "llama-bpe"));
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_of(tokens), merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| format!("byte-level BPE: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let regex_split = |re: &str| -> Result<Split, String> {
        Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| format!("pre-tokenizer regex: {e}"))
    };
    match kind {
        PreKind::Gpt2 => {
            tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        }
        PreKind::Digits => {
            tokenizer.with_pre_tokenizer(Some(PreSequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])));
        }
        PreKind::Qwen2 => {
            tokenizer.with_normalizer(Some(NFC)).map_err(|e| format!("normalizer: {e}"))?;
            tokenizer.with_pre_tokenizer(Some(PreSequence::new(vec![
                regex_split(REGEX_QWEN2)?.into(),
                ByteLevel::new(false, false, false).into(),
            ])));
        }
        PreKind::Llama3 => {
            tokenizer.with_pre_tokenizer(Some(PreSequence::new(vec![
                regex_split(REGEX_LLAMA3)?.into(),
                ByteLevel::new(false, true, false).into(),
            ])));
        }
    }
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

fn sentencepiece_bpe(md: &Metadata, tokens: &[&str], types: Option<&[u64]>) -> Result<Tokenizer, String> {
    let scores = get_f32_array(md, "tokenizer.ggml.scores").filter(|s| s.len() == tokens.len());
    let score = |i: usize| scores.as_ref().map_or(0.0, |s| s[i]);
    let ty = |i: usize| types.map_or(TYPE_NORMAL, |t| t[i]);
    let vocab = vocab_of(tokens);
    // Merges: every split of a normal token into two tokens of the vocabulary, ranked by the
    // merged token's score (highest first), as llama.cpp's SPM tokenizer merges.
    let mergeable: HashSet<&str> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(ty(*i), TYPE_NORMAL | TYPE_USER_DEFINED))
        .map(|(_, t)| *t)
        .collect();
    let mut ranked: Vec<(f32, u32, String, String)> = Vec::new();
    for (i, tok) in tokens.iter().enumerate() {
        if ty(i) != TYPE_NORMAL || tok.chars().nth(1).is_none() {
            continue;
        }
        for (pos, _) in tok.char_indices().skip(1) {
            let (l, r) = tok.split_at(pos);
            if mergeable.contains(l) && mergeable.contains(r) {
                ranked.push((score(i), i as u32, l.to_string(), r.to_string()));
            }
        }
    }
    // Highest score first; ties by token id, then by split position (stable sort).
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let merges: Vec<(String, String)> = ranked.into_iter().map(|(_, _, l, r)| (l, r)).collect();
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true);
    if let Some(unk) = get_token_id(md, "tokenizer.ggml.unknown_token_id", tokens.len()) {
        builder = builder.unk_token(tokens[unk as usize].to_string()).fuse_unk(true);
    }
    let bpe = builder.build().map_err(|e| format!("SentencePiece BPE: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let add_space_prefix = super::gguf::get_bool(md, "tokenizer.ggml.add_space_prefix").unwrap_or(true);
    let replace = Replace::new(" ", "\u{2581}").map_err(|e| format!("normalizer: {e}"))?;
    if add_space_prefix {
        tokenizer
            .with_normalizer(Some(NormalizerSequence::new(vec![
                Prepend::new("\u{2581}".to_string()).into(),
                replace.into(),
            ])))
            .map_err(|e| format!("normalizer: {e}"))?;
    } else {
        tokenizer.with_normalizer(Some(replace)).map_err(|e| format!("normalizer: {e}"))?;
    }
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("\u{2581}", " ").map_err(|e| format!("decoder: {e}"))?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// Control and user-defined tokens, and the ids named by the special-token keys, become added
/// tokens (control ones special, i.e. skipped when decoding).
fn add_special_tokens(
    tokenizer: &mut Tokenizer,
    md: &Metadata,
    tokens: &[&str],
    types: Option<&[u64]>,
) -> Result<(), String> {
    let mut special: Vec<AddedToken> = Vec::new();
    let mut plain: Vec<AddedToken> = Vec::new();
    let mut seen: HashSet<u32> = HashSet::new();
    if let Some(types) = types {
        for (i, t) in types.iter().enumerate() {
            match *t {
                TYPE_CONTROL | TYPE_UNKNOWN => {
                    seen.insert(i as u32);
                    special.push(AddedToken::from(tokens[i], true));
                }
                // Byte tokens and unused ones stay out; user-defined tokens are matched whole
                // but are text when decoding.
                TYPE_USER_DEFINED if !tokens[i].is_empty() => {
                    plain.push(AddedToken::from(tokens[i], false).normalized(false));
                }
                _ => {}
            }
        }
    }
    for key in SPECIAL_ID_KEYS {
        if let Some(id) = get_token_id(md, key, tokens.len()) {
            if seen.insert(id) && !tokens[id as usize].is_empty() {
                special.push(AddedToken::from(tokens[id as usize], true));
            }
        }
    }
    special.retain(|t| !t.content.is_empty());
    tokenizer.add_special_tokens(special).map_err(|e| format!("special tokens: {e}"))?;
    tokenizer.add_tokens(plain).map_err(|e| format!("user-defined tokens: {e}"))?;
    Ok(())
}

/// Makes sure the template's markers encode as single special tokens (a `tokenizer.json` or a
/// GGUF without token types may not declare them). Markers absent from the vocabulary are
/// skipped.
pub(crate) fn ensure_markers(tokenizer: &mut Tokenizer, markers: &[&str]) -> Result<(), String> {
    let add: Vec<AddedToken> = markers
        .iter()
        .filter(|m| tokenizer.token_to_id(m).is_some())
        .filter(|m| tokenizer.encode(**m, false).map(|enc| enc.get_ids().len() != 1).unwrap_or(true))
        .map(|m| AddedToken::from(*m, true))
        .collect();
    if !add.is_empty() {
        tokenizer.add_special_tokens(add).map_err(|e| format!("special tokens: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::Value;

    fn strings(v: &[&str]) -> Value {
        Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect())
    }

    /// A tiny SentencePiece vocabulary in llama.cpp's layout.
    fn spm_metadata(add_space_prefix: bool) -> Metadata {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types: Vec<u32> = vec![2, 3, 3];
        let mut scores: Vec<f32> = vec![0.0, 0.0, 0.0];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
            scores.push(0.0);
        }
        let pieces = [
            ("\u{2581}", -1.0),
            ("h", -2.0),
            ("e", -2.0),
            ("l", -2.0),
            ("o", -2.0),
            ("w", -2.0),
            ("r", -2.0),
            ("d", -2.0),
            ("ll", -3.0),
            ("ld", -3.5),
            ("he", -4.0),
            ("hell", -5.0),
            ("hello", -6.0),
            ("\u{2581}hello", -7.0),
            ("\u{2581}w", -8.0),
            ("or", -9.0),
            ("\u{2581}wor", -10.0),
            ("\u{2581}world", -11.0),
            ("<start_of_turn>", 0.0),
        ];
        for (p, s) in pieces {
            tokens.push(p.to_string());
            types.push(if p.starts_with('<') { 3 } else { 1 });
            scores.push(s);
        }
        let mut md = Metadata::new();
        md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        let refs: Vec<&str> = tokens.iter().map(|s| s.as_str()).collect();
        md.insert("tokenizer.ggml.tokens".into(), strings(&refs));
        md.insert(
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(|x| Value::I32(x as i32)).collect()),
        );
        md.insert("tokenizer.ggml.scores".into(), Value::Array(scores.into_iter().map(Value::F32).collect()));
        md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1));
        md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(2));
        md.insert("tokenizer.ggml.unknown_token_id".into(), Value::U32(0));
        md.insert("tokenizer.ggml.add_space_prefix".into(), Value::Bool(add_space_prefix));
        md
    }

    fn pieces(t: &Tokenizer, s: &str) -> Vec<String> {
        let enc = t.encode(s, false).expect("encode");
        enc.get_tokens().to_vec()
    }

    #[test]
    fn sentencepiece_merges_by_score_with_byte_fallback() {
        let t = from_gguf(&spm_metadata(true)).expect("tokenizer");
        assert_eq!(pieces(&t, "hello world"), vec!["\u{2581}hello", "\u{2581}world"]);
        // `!` and `é` are not in the vocabulary: UTF-8 bytes.
        assert_eq!(pieces(&t, "hello!é"), vec!["\u{2581}hello", "<0x21>", "<0xC3>", "<0xA9>"]);
        let ids = t.encode("hello world!é", false).expect("encode").get_ids().to_vec();
        assert_eq!(t.decode(&ids, true).expect("decode"), "hello world!é");
        // The control token is one token; llama.cpp adds the space prefix after it.
        assert_eq!(pieces(&t, "<start_of_turn>hello"), vec!["<start_of_turn>", "\u{2581}hello"]);
    }

    #[test]
    fn sentencepiece_without_space_prefix() {
        let t = from_gguf(&spm_metadata(false)).expect("tokenizer");
        assert_eq!(pieces(&t, "hello world"), vec!["hello", "\u{2581}world"]);
        let ids = t.encode("hello world", false).expect("encode").get_ids().to_vec();
        assert_eq!(t.decode(&ids, true).expect("decode"), "hello world");
    }

    #[test]
    fn unsupported_model_is_an_error() {
        let mut md = spm_metadata(true);
        md.insert("tokenizer.ggml.model".into(), Value::String("bert".into()));
        let err = from_gguf(&md).err().unwrap_or_default();
        assert!(err.contains("`bert`"), "{err}");
        md.remove("tokenizer.ggml.model");
        assert!(from_gguf(&md).is_err());
    }

    #[test]
    fn pre_kinds() {
        assert_eq!(pre_kind("smollm"), PreKind::Digits);
        assert_eq!(pre_kind("qwen2"), PreKind::Qwen2);
        assert_eq!(pre_kind("llama-bpe"), PreKind::Llama3);
        assert_eq!(pre_kind("gpt-2"), PreKind::Gpt2);
        assert_eq!(pre_kind("something-new"), PreKind::Gpt2);
    }
}
