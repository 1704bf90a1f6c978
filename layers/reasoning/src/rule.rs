//! Which models are OpenAI reasoning models (rule CC-7, and Open WebUI's later, wider rule).
//!
//! The reasoning layer decides with this rule (or one of yours) and records its decision in
//! [`ReasoningModel`](tower_openai_core::extensions::ReasoningModel), which the azure layer
//! below reads.

/// Whether `model` (the outgoing id, any `prefix_id` already stripped) is a reasoning model.
///
/// Lower-cased, after an optional provider prefix ending in `openai.` (Bedrock-style
/// `us.openai.o3`), the id is `o` followed by a digit (`o1`, `o3-mini`, `o4-mini`, …) or
/// `gpt-N` with N ≥ 5 (`gpt-5`, `gpt-5-mini`, `gpt-6`). This covers Open WebUI 0.6.43's
/// prefixes (`o1`, `o3`, `o4`, `gpt-5`) and its later rule.
///
/// ```
/// use tower_openai_reasoning::is_reasoning_model;
///
/// for yes in ["o1", "o1-mini", "O3-mini", "o4-mini-high", "gpt-5", "gpt-5-nano", "gpt-10", "us.openai.o3"] {
///     assert!(is_reasoning_model(yes), "{yes}");
/// }
/// for no in ["gpt-4o", "gpt-4.1", "omni-moderation", "o", "llama3", "gpt-", "my-o3", "gpt-4"] {
///     assert!(!is_reasoning_model(no), "{no}");
/// }
/// ```
pub fn is_reasoning_model(model: &str) -> bool {
    // ASCII case-insensitive throughout, without lower-casing a copy: this runs per request.
    const PROVIDER: &[u8] = b"openai.";
    let bytes = model.as_bytes();
    let start = (0..bytes.len().saturating_sub(PROVIDER.len() - 1))
        .rev()
        .find(|&i| bytes[i..i + PROVIDER.len()].eq_ignore_ascii_case(PROVIDER))
        .map_or(0, |i| i + PROVIDER.len());
    let id = &bytes[start..];
    if id.len() >= 2 && id[0].eq_ignore_ascii_case(&b'o') && id[1].is_ascii_digit() {
        return true;
    }
    if id.len() >= 4 && id[..4].eq_ignore_ascii_case(b"gpt-") {
        // The major version: its digits (a version like `4.5` stops at the dot: 4 < 5).
        let digits = id[4..].iter().take_while(|b| b.is_ascii_digit());
        let mut version: Option<u32> = None;
        for d in digits {
            let v = version.unwrap_or(0);
            version = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u32::from(d - b'0')));
            if version.is_none() {
                return false; // too many digits to be a version
            }
        }
        return version.is_some_and(|n| n >= 5);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::is_reasoning_model;

    #[test]
    fn case_provider_prefixes_and_odd_versions() {
        for yes in [
            "US.OpenAI.GPT-5",
            "openai.openai.o1",
            "GPT-05",
            "gpt-5.1",
            "Openai.O3",
        ] {
            assert!(is_reasoning_model(yes), "{yes}");
        }
        for no in [
            "",
            "openai.",
            "openai.gpt-4",
            "gpt-99999999999999999999",
            "o",
            "x.openai",
            "gpt-x5",
            "ö1",
        ] {
            assert!(!is_reasoning_model(no), "{no}");
        }
    }
}
