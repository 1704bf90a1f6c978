//! `--demo`: an in-process mock upstream as connection 0.

use std::time::Duration;

use serde_json::{Map, Value};
use tower_openai_settings::ApiKey;
use tower_openai_settings::SettingsSource;
use tower_openai_test_util::MockUpstream;

/// Start the mock upstream the tests use, streaming at a visible pace.
pub(crate) async fn start() -> MockUpstream {
    MockUpstream::builder()
        .stream_gap(Duration::from_millis(40))
        .start()
        .await
}

/// Make the mock connection 0. Configured connections follow it, keeping their keys and
/// index-keyed configs; with no configured URLs the mock is the only connection.
pub(crate) fn with_mock(mut source: SettingsSource, mock_url: &str) -> SettingsSource {
    let Some(urls) = source.base_urls.take() else {
        source.base_urls = Some(vec![mock_url.to_owned()]);
        source.keys = Some(vec![ApiKey::default()]);
        source.configs = None;
        return source;
    };
    let mut shifted_urls = vec![mock_url.to_owned()];
    shifted_urls.extend(urls);
    let mut keys = vec![ApiKey::default()];
    keys.extend(source.keys.take().unwrap_or_default());
    let configs = source.configs.take().map(|configs| {
        configs
            .into_iter()
            .map(|(k, v)| match k.parse::<usize>() {
                Ok(i) => ((i + 1).to_string(), v),
                Err(_) => (k, v),
            })
            .collect::<Map<String, Value>>()
    });
    source.base_urls = Some(shifted_urls);
    source.keys = Some(keys);
    source.configs = configs;
    source
}

/// What to tell a newcomer.
pub(crate) fn banner(listen: std::net::SocketAddr, mock_url: &str) -> String {
    format!(
        "openai-gateway --demo: connection 0 is an in-process mock upstream at {mock_url}\n\
         \n\
         Try it:\n\
         \x20 curl http://{listen}/v1/models\n\
         \x20 curl -N http://{listen}/v1/chat/completions -H 'content-type: application/json' \\\n\
         \x20      -d '{{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'\n\
         \n\
         Or with the OpenAI Python SDK:\n\
         \x20 OpenAI(base_url=\"http://{listen}/v1\", api_key=\"unused\")\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configured_connections_follow_the_mock_with_their_keys_and_configs() {
        let source = SettingsSource {
            base_urls: Some(vec!["http://a/v1".into(), "http://b/v1".into()]),
            keys: Some(vec![ApiKey::new("ka"), ApiKey::new("kb")]),
            configs: json!({"1": {"prefix_id": "b"}, "http://a/v1": {"prefix_id": "a"}})
                .as_object()
                .cloned(),
            ..Default::default()
        };
        let s = with_mock(source, "http://mock/v1").build().unwrap();
        assert_eq!(
            s.base_urls(),
            ["http://mock/v1", "http://a/v1", "http://b/v1"]
        );
        assert_eq!(s.connection(0).unwrap().key().expose(), "");
        assert_eq!(s.connection(2).unwrap().key().expose(), "kb");
        assert_eq!(
            s.connection(2).unwrap().config().prefix_id.as_deref(),
            Some("b")
        );
        assert_eq!(
            s.connection(1).unwrap().config().prefix_id.as_deref(),
            Some("a")
        );
    }

    #[test]
    fn with_nothing_configured_the_mock_is_the_only_connection() {
        let s = with_mock(SettingsSource::default(), "http://mock/v1")
            .build()
            .unwrap();
        assert_eq!(s.base_urls(), ["http://mock/v1"]);
    }
}
