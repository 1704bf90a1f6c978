//! Which models are OpenAI reasoning models (SPEC CC-7, and §13's later rule).
//!
//! The reasoning and azure layers both rewrite payloads for reasoning models; this is the
//! rule they share by default.

/// Whether `model` (the outgoing id, any `prefix_id` already stripped) is a reasoning model.
///
/// Lower-cased, after an optional provider prefix ending in `openai.` (Bedrock-style
/// `us.openai.o3`), the id is `o` followed by a digit (`o1`, `o3-mini`, `o4-mini`, …) or
/// `gpt-N` with N ≥ 5 (`gpt-5`, `gpt-5-mini`, `gpt-6`). This covers Open WebUI 0.6.43's
/// prefixes (`o1`, `o3`, `o4`, `gpt-5`) and its later rule.
///
/// ```
/// use tower_openai_core::reasoning::is_reasoning_model;
///
/// for yes in ["o1", "o1-mini", "O3-mini", "o4-mini-high", "gpt-5", "gpt-5-nano", "gpt-10", "us.openai.o3"] {
///     assert!(is_reasoning_model(yes), "{yes}");
/// }
/// for no in ["gpt-4o", "gpt-4.1", "omni-moderation", "o", "llama3", "gpt-", "my-o3", "gpt-4"] {
///     assert!(!is_reasoning_model(no), "{no}");
/// }
/// ```
pub fn is_reasoning_model(model: &str) -> bool {
    let lower = model.to_ascii_lowercase();
    let id = match lower.rfind("openai.") {
        Some(i) => &lower[i + "openai.".len()..],
        None => lower.as_str(),
    };
    let bytes = id.as_bytes();
    if bytes.len() >= 2 && bytes[0] == b'o' && bytes[1].is_ascii_digit() {
        return true;
    }
    if let Some(rest) = id.strip_prefix("gpt-") {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        // A version like `4.5` stops at the dot: 4 < 5.
        return digits.parse::<u32>().is_ok_and(|n| n >= 5);
    }
    false
}
