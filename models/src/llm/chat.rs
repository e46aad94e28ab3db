//! Chat templates: how a [`ChatPrompt`] becomes the text an instruction-tuned model expects.
//!
//! GGUF files carry their chat template as a Jinja string (`tokenizer.chat_template`), which
//! [`super::JinjaTemplate`] renders. The built-in shapes here are the fallback for files
//! without a usable template and the operator's override. The template is also *recognised*
//! by its markers (`<|im_start|>`, `<|start_header_id|>`, `<start_of_turn>`, `[INST]`), with
//! the architecture and the vocabulary as a fallback: the recognised shape names the marker
//! tokens that must encode as single tokens and the end-of-turn tokens, which stop
//! generation.

use std::fmt;
use std::str::FromStr;

use crate::ChatPrompt;

use super::ParseOptionError;

/// A chat template the runtime can render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatTemplate {
    /// `<|im_start|>role\n...<|im_end|>` (SmolLM2, Qwen2, many others).
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>` (Llama 3.x).
    Llama3,
    /// `[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST]` (Llama 2, Mistral-style).
    Llama2,
    /// `<start_of_turn>user\n...<end_of_turn>` (Gemma; no system role: the system text is
    /// prepended to the user turn).
    Gemma,
}

impl ChatTemplate {
    /// All templates, for help texts.
    pub const ALL: [ChatTemplate; 4] =
        [ChatTemplate::ChatMl, ChatTemplate::Llama3, ChatTemplate::Llama2, ChatTemplate::Gemma];

    /// The name used in options and in [`crate::ModelInfo::chat_template`].
    pub fn name(self) -> &'static str {
        match self {
            ChatTemplate::ChatMl => "chatml",
            ChatTemplate::Llama3 => "llama3",
            ChatTemplate::Llama2 => "llama2",
            ChatTemplate::Gemma => "gemma",
        }
    }

    /// Recognises a GGUF `tokenizer.chat_template` string by its markers.
    pub fn from_jinja(template: &str) -> Option<Self> {
        if template.contains("<|im_start|>") {
            Some(ChatTemplate::ChatMl)
        } else if template.contains("<|start_header_id|>") {
            Some(ChatTemplate::Llama3)
        } else if template.contains("<start_of_turn>") {
            Some(ChatTemplate::Gemma)
        } else if template.contains("[INST]") {
            Some(ChatTemplate::Llama2)
        } else {
            None
        }
    }

    /// The fallback when the GGUF has no recognisable chat template: from the architecture,
    /// then from which markers the vocabulary contains.
    pub fn fallback(architecture: &str, has_token: impl Fn(&str) -> bool) -> Self {
        match architecture {
            "qwen2" => ChatTemplate::ChatMl,
            a if a.starts_with("gemma") => ChatTemplate::Gemma,
            _ if has_token("<|eot_id|>") && has_token("<|start_header_id|>") => ChatTemplate::Llama3,
            _ if has_token("<|im_start|>") && has_token("<|im_end|>") => ChatTemplate::ChatMl,
            _ if has_token("<start_of_turn>") => ChatTemplate::Gemma,
            _ => ChatTemplate::Llama2,
        }
    }

    /// Whether the prompt must start with the BOS token, whatever the GGUF's
    /// `add_bos_token` says (these formats were trained with it).
    pub fn requires_bos(self) -> bool {
        matches!(self, ChatTemplate::Llama3 | ChatTemplate::Llama2 | ChatTemplate::Gemma)
    }

    /// Marker strings that must encode as single (special) tokens.
    pub fn markers(self) -> &'static [&'static str] {
        match self {
            ChatTemplate::ChatMl => &["<|im_start|>", "<|im_end|>"],
            ChatTemplate::Llama3 => &["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
            ChatTemplate::Llama2 => &[],
            ChatTemplate::Gemma => &["<start_of_turn>", "<end_of_turn>"],
        }
    }

    /// Tokens that end the assistant's turn (looked up in the vocabulary; absent ones are
    /// skipped). The GGUF's EOS/EOT ids are added to these by the loader.
    pub fn end_of_turn_tokens(self) -> &'static [&'static str] {
        match self {
            ChatTemplate::ChatMl => &["<|im_end|>", "<|endoftext|>"],
            ChatTemplate::Llama3 => &["<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"],
            ChatTemplate::Llama2 => &["</s>"],
            ChatTemplate::Gemma => &["<end_of_turn>", "<eos>"],
        }
    }

    /// Renders the prompt up to the start of the assistant's turn. The BOS token is not part
    /// of the text (the generator prepends its id), except for Llama 3 where
    /// `<|begin_of_text|>` is the BOS token and is likewise prepended by id.
    pub fn render(self, prompt: &ChatPrompt) -> String {
        let system = prompt.system.trim();
        let user = prompt.user.trim();
        match self {
            ChatTemplate::ChatMl => {
                let mut s = String::with_capacity(system.len() + user.len() + 80);
                if !system.is_empty() {
                    s.push_str("<|im_start|>system\n");
                    s.push_str(system);
                    s.push_str("<|im_end|>\n");
                }
                s.push_str("<|im_start|>user\n");
                s.push_str(user);
                s.push_str("<|im_end|>\n<|im_start|>assistant\n");
                s
            }
            ChatTemplate::Llama3 => {
                let mut s = String::with_capacity(system.len() + user.len() + 160);
                if !system.is_empty() {
                    s.push_str("<|start_header_id|>system<|end_header_id|>\n\n");
                    s.push_str(system);
                    s.push_str("<|eot_id|>");
                }
                s.push_str("<|start_header_id|>user<|end_header_id|>\n\n");
                s.push_str(user);
                s.push_str("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
                s
            }
            ChatTemplate::Llama2 => {
                if system.is_empty() {
                    format!("[INST] {user} [/INST]")
                } else {
                    format!("[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]")
                }
            }
            ChatTemplate::Gemma => {
                let mut s = String::with_capacity(system.len() + user.len() + 80);
                s.push_str("<start_of_turn>user\n");
                if !system.is_empty() {
                    s.push_str(system);
                    s.push_str("\n\n");
                }
                s.push_str(user);
                s.push_str("<end_of_turn>\n<start_of_turn>model\n");
                s
            }
        }
    }
}

impl fmt::Display for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ChatTemplate {
    type Err = ParseOptionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "chatml" => Ok(ChatTemplate::ChatMl),
            "llama3" | "llama-3" => Ok(ChatTemplate::Llama3),
            "llama2" | "llama-2" | "mistral" => Ok(ChatTemplate::Llama2),
            "gemma" | "gemma3" => Ok(ChatTemplate::Gemma),
            other => Err(ParseOptionError(format!(
                "unknown chat template `{other}` (expected one of: chatml, llama3, llama2, gemma)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt() -> ChatPrompt {
        ChatPrompt { system: "Be brief.".into(), user: "Hi?".into() }
    }

    #[test]
    fn renders_chatml() {
        assert_eq!(
            ChatTemplate::ChatMl.render(&prompt()),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn renders_llama3() {
        assert_eq!(
            ChatTemplate::Llama3.render(&prompt()),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn renders_llama2_and_gemma() {
        assert_eq!(ChatTemplate::Llama2.render(&prompt()), "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi? [/INST]");
        assert_eq!(
            ChatTemplate::Gemma.render(&prompt()),
            "<start_of_turn>user\nBe brief.\n\nHi?<end_of_turn>\n<start_of_turn>model\n"
        );
        let no_system = ChatPrompt { system: String::new(), user: "Hi?".into() };
        assert_eq!(ChatTemplate::Llama2.render(&no_system), "[INST] Hi? [/INST]");
        assert_eq!(ChatTemplate::ChatMl.render(&no_system), "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn detects_from_jinja_and_fallback() {
        let smol = "{% for message in messages %}{{'<|im_start|>' + message['role'] }}{% endfor %}";
        assert_eq!(ChatTemplate::from_jinja(smol), Some(ChatTemplate::ChatMl));
        assert_eq!(ChatTemplate::from_jinja("{{ '<start_of_turn>' + role }}"), Some(ChatTemplate::Gemma));
        assert_eq!(ChatTemplate::from_jinja("<|start_header_id|>"), Some(ChatTemplate::Llama3));
        assert_eq!(ChatTemplate::from_jinja("[INST] x [/INST]"), Some(ChatTemplate::Llama2));
        assert_eq!(ChatTemplate::from_jinja("{{ messages }}"), None);
        assert_eq!(ChatTemplate::fallback("qwen2", |_| false), ChatTemplate::ChatMl);
        assert_eq!(ChatTemplate::fallback("gemma3", |_| false), ChatTemplate::Gemma);
        assert_eq!(ChatTemplate::fallback("llama", |t| t == "<|im_start|>" || t == "<|im_end|>"), ChatTemplate::ChatMl);
        assert_eq!(ChatTemplate::fallback("llama", |_| false), ChatTemplate::Llama2);
    }

    #[test]
    fn parses_names() {
        for t in ChatTemplate::ALL {
            assert_eq!(t.name().parse::<ChatTemplate>().ok(), Some(t));
        }
        assert!("jinja".parse::<ChatTemplate>().is_err());
    }
}
