//! Azure OpenAI's rules as pure functions (rule CC-12, P-4, V-3).

use std::cmp::Ordering;

use serde_json::Value;
use tower_openai_core::{ErrorResponse, Payload, PayloadError};

/// The `api-version` used when a connection names none, or an empty one (the same in every
/// path; Open WebUI's chat uses an empty version as it is).
pub const DEFAULT_API_VERSION: &str = tower_openai_settings::DEFAULT_AZURE_API_VERSION;

/// The first `api-version` that accepts `stream_options`.
pub const STREAM_OPTIONS_SINCE: &str = "2024-09-01-preview";

/// CC-12: the only top-level members a chat completion keeps on Azure.
pub const CHAT_ALLOWLIST: [&str; 28] = [
    "messages",
    "temperature",
    "role",
    "content",
    "contentPart",
    "contentPartImage",
    "enhancements",
    "dataSources",
    "n",
    "stream",
    "stop",
    "max_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "function_call",
    "functions",
    "tools",
    "tool_choice",
    "top_p",
    "log_probs",
    "top_logprobs",
    "response_format",
    "seed",
    "max_completion_tokens",
    "reasoning_effort",
    "stream_options",
];

/// An Azure `api-version` as a date plus whether it is a preview, for comparison.
/// `None` when it is not `YYYY-MM-DD` with an optional `-suffix`.
fn version_key(v: &str) -> Option<((u32, u32, u32), bool)> {
    let v = v.trim();
    let date = v.get(..10)?;
    let mut parts = date.split('-');
    let y = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let d = parts.next()?.parse().ok()?;
    let rest = &v[10..];
    if !(rest.is_empty() || rest.starts_with('-')) {
        return None;
    }
    // On the same date, the general-availability version comes after the preview.
    Some(((y, m, d), rest.is_empty()))
}

/// Compare two `api-version`s as dates (a preview before the GA version of the same day);
/// versions that are not dates compare as strings, as Open WebUI compares all of them.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (version_key(a), version_key(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => a.cmp(b),
    }
}

/// The connection's `api-version`: its own, or the default when absent or empty.
pub fn api_version(configured: Option<&str>) -> &str {
    configured
        .filter(|v| !v.trim().is_empty())
        .unwrap_or(DEFAULT_API_VERSION)
}

/// A deployment name as a path segment: `/` and `..` are refused, everything but the
/// unreserved characters is percent-encoded.
pub fn deployment_segment(name: &str) -> Result<String, ErrorResponse> {
    if name.is_empty() || name.contains('/') || name.contains("..") || name.contains('\\') {
        return Err(ErrorResponse::bad_request(format!(
            "{name:?} is not a valid Azure deployment name"
        ))
        .with_code("invalid_deployment"));
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(out)
}

/// CC-12 for a chat completion: reasoning deployments get `max_completion_tokens` and lose
/// `temperature` unless it is 1; then only the allowlisted members stay, `stream_options`
/// only from [`STREAM_OPTIONS_SINCE`] on.
pub fn chat_payload(
    payload: &mut Payload,
    reasoning: bool,
    version: &str,
) -> Result<(), PayloadError> {
    if reasoning {
        payload.rename("max_tokens", "max_completion_tokens")?;
        let temperature = payload.get::<Value>("temperature")?;
        if temperature.is_some_and(|t| t.as_f64() != Some(1.0)) {
            payload.remove("temperature")?;
        }
    }
    let keep_stream_options = compare_versions(version, STREAM_OPTIONS_SINCE) != Ordering::Less;
    // One pass over the members, however many there are.
    payload.retain(|k| {
        CHAT_ALLOWLIST.contains(&k) && (k != "stream_options" || keep_stream_options)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    #[test]
    fn cc12_versions_compare_as_dates() {
        use Ordering::*;
        for (a, b, expected) in [
            ("2024-09-01", "2024-09-01-preview", Greater), // a string compare says Less
            ("2024-09-01-preview", "2024-09-01-preview", Equal),
            ("2024-10-21", "2024-09-01-preview", Greater),
            ("2024-08-01-preview", "2024-09-01-preview", Less),
            ("2023-03-15-preview", "2024-09-01-preview", Less),
            ("2025-01-01-preview", "2024-12-01", Greater),
        ] {
            assert_eq!(compare_versions(a, b), expected, "{a} vs {b}");
        }
        assert_eq!(compare_versions("", STREAM_OPTIONS_SINCE), Less);
    }

    #[test]
    fn v3_an_empty_version_falls_back_everywhere() {
        assert_eq!(api_version(None), "2023-03-15-preview");
        assert_eq!(api_version(Some("")), "2023-03-15-preview");
        assert_eq!(api_version(Some("2024-10-21")), "2024-10-21");
    }

    #[test]
    fn deployment_names_are_sanitised() {
        assert_eq!(deployment_segment("gpt-4o").unwrap(), "gpt-4o");
        assert_eq!(deployment_segment("my dep:v1").unwrap(), "my%20dep%3Av1");
        for bad in ["a/b", "..", "a..b", "", "a\\b"] {
            assert_eq!(
                deployment_segment(bad).unwrap_err().status(),
                http::StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    fn chat(v: Value, reasoning: bool, version: &str) -> Value {
        let mut p = Payload::new(Bytes::from(v.to_string()));
        chat_payload(&mut p, reasoning, version).unwrap();
        serde_json::from_slice(&p.to_bytes()).unwrap()
    }

    #[test]
    fn cc12_only_allowlisted_members_are_kept() {
        let out = chat(
            json!({"model": "gpt-4o", "messages": [], "stream": true, "tools": [], "reasoning": {}, "parallel_tool_calls": true, "modalities": ["text"], "audio": {}, "store": true, "metadata": {}, "temperature": 0.2}),
            false,
            "2024-10-21",
        );
        assert_eq!(
            out,
            json!({"messages": [], "stream": true, "tools": [], "temperature": 0.2})
        );
    }

    #[test]
    fn cc12_stream_options_boundaries() {
        let body = json!({"messages": [], "stream_options": {"include_usage": true}});
        for (version, kept) in [
            ("2024-09-01", true),
            ("2024-09-01-preview", true),
            ("2024-10-21", true),
            ("2024-08-01-preview", false),
            ("", false),
            ("2023-03-15-preview", false),
        ] {
            let out = chat(body.clone(), false, version);
            assert_eq!(out.get("stream_options").is_some(), kept, "{version:?}");
        }
    }

    #[test]
    fn cc12_reasoning_deployments() {
        let out = chat(
            json!({"messages": [], "max_tokens": 9, "temperature": 0.7}),
            true,
            "2024-10-21",
        );
        assert_eq!(out, json!({"messages": [], "max_completion_tokens": 9}));
        let out = chat(
            json!({"messages": [], "temperature": 1}),
            true,
            "2024-10-21",
        );
        assert_eq!(out, json!({"messages": [], "temperature": 1}));
        let out = chat(
            json!({"messages": [], "max_tokens": 9, "temperature": 0.7}),
            false,
            "2024-10-21",
        );
        assert_eq!(
            out,
            json!({"messages": [], "max_tokens": 9, "temperature": 0.7})
        );
    }
}
