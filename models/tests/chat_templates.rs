//! The GGUF chat templates of real model families, rendered with the Jinja engine: the text
//! must be exactly what Hugging Face's `apply_chat_template` produces for the same messages.
//! The templates are copies of those the families ship (fixtures/chat_templates).

use warden_models::llm::{JinjaTemplate, Message};
use warden_models::ChatPrompt;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_templates").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn template(name: &str, bos: &str, eos: &str) -> JinjaTemplate {
    JinjaTemplate::new(&fixture(name), bos, eos).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn prompt() -> ChatPrompt {
    ChatPrompt { system: "Be brief.".into(), user: "Hi?".into() }
}

fn no_system() -> ChatPrompt {
    ChatPrompt { system: String::new(), user: "  Hi?\n".into() }
}

fn render(t: &JinjaTemplate, p: &ChatPrompt) -> String {
    t.render_prompt(p).unwrap_or_else(|e| panic!("render: {e}"))
}

#[test]
fn smollm2_chatml_with_its_default_system_prompt() {
    let t = template("smollm2.jinja", "<|im_start|>", "<|im_end|>");
    assert_eq!(
        render(&t, &prompt()),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        render(&t, &no_system()),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(t.prefix("Be brief.").as_deref(), Some("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"));
}

#[test]
fn llama3_puts_the_bos_token_in_the_text() {
    let t = template("llama3.jinja", "<|begin_of_text|>", "<|eot_id|>");
    assert_eq!(
        render(&t, &prompt()),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(t.bos_token(), "<|begin_of_text|>");
}

#[test]
fn qwen2_5_with_and_without_a_system_prompt() {
    let t = template("qwen2_5.jinja", "", "<|im_end|>");
    assert_eq!(
        render(&t, &prompt()),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        render(&t, &no_system()),
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn qwen3_without_thinking_and_with_a_reasoning_history() {
    let t = template("qwen3.jinja", "", "<|im_end|>");
    assert_eq!(
        render(&t, &prompt()),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n\
         <think>\n\n</think>\n\n"
    );
    // Python string methods, reversed slices and namespaces (pycompat) on a longer chat.
    let chat = vec![
        Message { role: "user".into(), content: "Hi?".into() },
        Message { role: "assistant".into(), content: "<think>\nplan\n</think>\n\nHello.".into() },
        Message { role: "user".into(), content: "More?".into() },
    ];
    let text = t.render(&chat, false).unwrap_or_else(|e| panic!("render: {e}"));
    assert_eq!(
        text,
        "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nMore?<|im_end|>\n"
    );
}

#[test]
fn gemma3_folds_the_system_text_into_the_first_user_turn() {
    let t = template("gemma3.jinja", "<bos>", "<eos>");
    assert_eq!(
        render(&t, &prompt()),
        "<bos><start_of_turn>user\nBe brief.\n\nHi?<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(render(&t, &no_system()), "<bos><start_of_turn>user\nHi?<end_of_turn>\n<start_of_turn>model\n");
    assert_eq!(t.prefix("Be brief.").as_deref(), Some("<bos><start_of_turn>user\nBe brief.\n\n"));
    // Its role check raises.
    let bad = vec![Message { role: "assistant".into(), content: "x".into() }];
    let err = t.render(&bad, true).expect_err("roles must alternate");
    assert!(err.contains("Conversation roles must alternate"), "{err}");
}
