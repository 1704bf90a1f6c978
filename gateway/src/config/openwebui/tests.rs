//! Open WebUI rules (docs/rules.md) (C-1 … C-8), rule by rule.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use tower_openai_settings::*;
use tower_openai_settings::{Settings, SettingsSource};

use super::*;

fn env(vars: &[(&str, &str)]) -> Result<SettingsSource, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    settings_from_env(move |k| map.get(k).cloned())
}

fn build(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    crate::stack::settings(env(vars)?)
}

fn keys(settings: &Settings) -> Vec<&str> {
    settings.keys().iter().map(ApiKey::expose).collect()
}

#[test]
fn c1_defaults_with_nothing_set() {
    let s = build(&[]).unwrap();
    assert!(s.enable());
    assert_eq!(s.base_urls(), ["https://api.openai.com/v1"]);
    assert_eq!(keys(&s), [""]);
    assert!(s.configs().is_empty());
    assert_eq!(s.timeout(), Some(DEFAULT_TIMEOUT));
    assert_eq!(s.timeout_model_list(), Some(Duration::from_secs(10)));
    assert_eq!(s.models_cache_ttl(), Some(Duration::from_secs(1)));
    assert!(s.ssl_verify());
    assert!(!s.bypass_model_access_control());
    assert!(!s.forward_user_info_headers());
}

#[test]
fn c1_enable_is_true_only_for_the_word_true() {
    for (value, expected) in [
        ("true", true),
        ("TRUE", true),
        ("True", true),
        ("1", false),
        ("yes", false),
        ("", false),
        ("false", false),
    ] {
        assert_eq!(
            build(&[("ENABLE_OPENAI_API", value)]).unwrap().enable(),
            expected,
            "{value:?}"
        );
    }
}

#[test]
fn c1_single_base_url_loses_one_trailing_slash() {
    assert_eq!(
        base_urls_from_env(None, Some("http://a/v1/")),
        ["http://a/v1"]
    );
    assert_eq!(
        base_urls_from_env(None, Some("http://a/v1//")),
        ["http://a/v1/"]
    );
    assert_eq!(base_urls_from_env(None, Some("")), [DEFAULT_BASE_URL]);
    assert_eq!(base_urls_from_env(None, None), [DEFAULT_BASE_URL]);
}

#[test]
fn c1_list_falls_back_to_the_single_url() {
    assert_eq!(
        base_urls_from_env(Some(""), Some("http://a/v1/")),
        ["http://a/v1"]
    );
    let s = build(&[("OPENAI_API_BASE_URL", "http://127.0.0.1:1/v1")]).unwrap();
    assert_eq!(s.base_urls(), ["http://127.0.0.1:1/v1"]);
}

#[test]
fn c2_list_is_split_on_semicolons_with_empty_and_blank_pieces() {
    assert_eq!(
        base_urls_from_env(Some("http://a/v1; http://b/v1/ ;;  ;http://c"), None),
        [
            "http://a/v1",
            "http://b/v1/",
            DEFAULT_BASE_URL,
            "",
            "http://c"
        ]
    );
    // A trailing `;` yields a default entry.
    assert_eq!(
        base_urls_from_env(Some("http://a;"), None),
        ["http://a", DEFAULT_BASE_URL]
    );
}

#[test]
fn c2_a_blank_piece_is_not_a_url_and_stops_start_up_naming_the_variable() {
    let err = build(&[("OPENAI_API_BASE_URLS", "http://a/v1; ")]).unwrap_err();
    assert!(err.field().starts_with("OPENAI_API_BASE_URLS[1]"), "{err}");
    let err = build(&[("OPENAI_API_BASE_URLS", "ftp://a")]).unwrap_err();
    assert!(err.to_string().contains("http:// or https://"), "{err}");
    let err = build(&[("OPENAI_API_BASE_URLS", "not a url")]).unwrap_err();
    assert!(err.field().starts_with("OPENAI_API_BASE_URLS[0]"), "{err}");
}

#[test]
fn c2_trailing_slash_of_list_entries_is_kept_but_joins_cleanly() {
    let s = build(&[("OPENAI_API_BASE_URLS", "http://127.0.0.1:9/v1/")]).unwrap();
    assert_eq!(s.base_urls(), ["http://127.0.0.1:9/v1/"]);
    let uri = s
        .connection(0)
        .unwrap()
        .base()
        .join("/chat/completions?x=1")
        .unwrap();
    assert_eq!(
        uri.to_string(),
        "http://127.0.0.1:9/v1/chat/completions?x=1"
    );
    let root = BaseUrl::parse("http://h:1").unwrap();
    assert_eq!(
        root.join("/models").unwrap().to_string(),
        "http://h:1/models"
    );
}

#[test]
fn c3_keys_split_trimmed_and_single_key_falls_back() {
    assert_eq!(
        keys_from_env(Some(" a ;b;; c"), Some("ignored"))
            .iter()
            .map(ApiKey::expose)
            .collect::<Vec<_>>(),
        ["a", "b", "", "c"]
    );
    // A single key containing `;` becomes several keys.
    assert_eq!(
        keys_from_env(None, Some("sk-1;sk-2"))
            .iter()
            .map(ApiKey::expose)
            .collect::<Vec<_>>(),
        ["sk-1", "sk-2"]
    );
    assert_eq!(
        keys_from_env(None, None)
            .iter()
            .map(ApiKey::expose)
            .collect::<Vec<_>>(),
        [""]
    );
}

#[test]
fn c5_keys_are_padded_and_truncated_to_the_urls() {
    let s = build(&[
        ("OPENAI_API_BASE_URLS", "http://a;http://b;http://c"),
        ("OPENAI_API_KEYS", "k1"),
    ])
    .unwrap();
    assert_eq!(keys(&s), ["k1", "", ""]);
    let s = build(&[
        ("OPENAI_API_BASE_URLS", "http://a"),
        ("OPENAI_API_KEYS", "k1;k2;k3"),
    ])
    .unwrap();
    assert_eq!(keys(&s), ["k1"]);
    assert_eq!(s.connection(0).unwrap().key().expose(), "k1");
}

#[test]
fn c6_config_keys_and_their_defaults() {
    let absent = ConnectionConfig::from_json(&json!({})).unwrap();
    assert!(absent.enable);
    assert!(absent.model_ids.is_empty());
    assert_eq!(absent.prefix_id, None);
    assert!(absent.tags.is_empty());
    assert_eq!(absent.connection_type, "external");
    assert!(!absent.azure);

    let full = ConnectionConfig::from_json(&json!({
        "enable": false,
        "model_ids": ["gpt-4o", "dep-1"],
        "prefix_id": "az",
        "tags": [{"name": "cloud"}],
        "connection_type": "local",
        "auth_type": "microsoft_entra_id",
        "headers": {"X-Team": "ml", "X-User": "{{USER_ID}}"},
        "azure": true,
        "api_version": "2024-10-21",
        "extra_thing": 3
    }))
    .unwrap();
    assert!(!full.enable);
    assert_eq!(full.model_ids, ["gpt-4o", "dep-1"]);
    assert_eq!(full.prefix_id.as_deref(), Some("az"));
    assert_eq!(full.tags, [json!({"name": "cloud"})]);
    assert_eq!(full.connection_type, "local");
    assert!(full.azure);

    // An empty prefix is no prefix; null members count as absent.
    let c = ConnectionConfig::from_json(&json!({"prefix_id": "", "tags": null})).unwrap();
    assert_eq!(c.prefix_id, None);
}

#[test]
fn c6_wrong_types_name_the_connection_and_member() {
    for (config, member) in [
        (json!({"0": {"enable": "yes"}}), "enable"),
        (json!({"0": {"model_ids": "gpt-4o"}}), "model_ids"),
        (json!({"0": {"model_ids": [1]}}), "model_ids"),
        (json!({"0": {"prefix_id": 3}}), "prefix_id"),
        (json!({"0": {"tags": ["x"]}}), "tags"),
        (json!({"0": {"auth_type": "kerberos"}}), "auth_type"),
        (json!({"0": {"headers": ["X-A"]}}), "headers"),
        (
            json!({"0": {"headers": {"bad header": "v"}}}),
            "headers.bad header",
        ),
        (
            json!({"0": {"headers": {"X-A": "line\nbreak"}}}),
            "headers.X-A",
        ),
        (json!({"0": {"azure": 1}}), "azure"),
        (json!({"0": {"api_version": 2024}}), "api_version"),
        (json!({"0": {"entra_scope": false}}), "entra_scope"),
        (json!({"0": {"weight": 0}}), "weight"),
        (json!({"0": {"priority": "high"}}), "priority"),
    ] {
        let err = env(&[("OPENAI_API_BASE_URLS", "http://a")])
            .unwrap()
            .or(SettingsSource {
                configs: config.as_object().cloned(),
                ..Default::default()
            })
            .build()
            .and_then(|s| crate::stack::settings(s.to_source()))
            .unwrap_err();
        assert!(
            err.field()
                .starts_with(&format!("OPENAI_API_CONFIGS[\"0\"].{member} ")),
            "{member}: {err}"
        );
    }
    let err = build(&[("OPENAI_API_CONFIGS", r#"{"0": 5}"#)]).unwrap_err();
    assert!(err.to_string().contains("must be a JSON object"), "{err}");
}

#[test]
fn c6_configs_from_the_environment_as_json() {
    let s = build(&[
        ("OPENAI_API_BASE_URLS", "http://a/v1;http://b/v1"),
        (
            "OPENAI_API_CONFIGS",
            r#"{"1": {"prefix_id": "b", "connection_type": "local"}}"#,
        ),
    ])
    .unwrap();
    assert_eq!(s.connection(0).unwrap().config().prefix_id, None);
    assert_eq!(
        s.connection(1).unwrap().config().prefix_id.as_deref(),
        Some("b")
    );
    assert_eq!(s.connection(1).unwrap().config().connection_type, "local");
}

#[test]
fn bad_json_in_configs_names_the_variable() {
    for raw in ["{not json", "[1,2]", "\"x\""] {
        let err = env(&[("OPENAI_API_CONFIGS", raw)]).unwrap_err();
        assert_eq!(err.field(), "OPENAI_API_CONFIGS", "{raw}");
    }
}

#[test]
fn c8_lookup_by_index_first_then_by_url() {
    let configs = json!({
        "http://a/v1": {"prefix_id": "by-url"},
        "1": {"prefix_id": "by-index"},
        "http://b/v1": {"prefix_id": "ignored"}
    });
    let s = SettingsSource {
        base_urls: Some(vec!["http://a/v1".into(), "http://b/v1".into()]),
        configs: configs.as_object().cloned(),
        ..Default::default()
    }
    .build()
    .unwrap();
    assert_eq!(
        s.connection(0).unwrap().config().prefix_id.as_deref(),
        Some("by-url")
    );
    assert_eq!(
        s.connection(1).unwrap().config().prefix_id.as_deref(),
        Some("by-index")
    );
    // The configs are kept as given (URL-keyed entries too) for the admin endpoints.
    assert_eq!(s.configs().len(), 3);
}

#[test]
fn x1_timeouts_ttl_and_flags() {
    let s = build(&[
        ("AIOHTTP_CLIENT_TIMEOUT", "30"),
        ("AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST", "3"),
        ("MODELS_CACHE_TTL", "60"),
        ("AIOHTTP_CLIENT_SESSION_SSL", "False"),
        ("BYPASS_MODEL_ACCESS_CONTROL", "true"),
        ("ENABLE_FORWARD_USER_INFO_HEADERS", "True"),
    ])
    .unwrap();
    assert_eq!(s.timeout(), Some(Duration::from_secs(30)));
    assert_eq!(s.timeout_model_list(), Some(Duration::from_secs(3)));
    assert_eq!(s.models_cache_ttl(), Some(Duration::from_secs(60)));
    assert!(!s.ssl_verify());
    assert!(!s.connection(0).unwrap().ssl_verify());
    assert!(s.bypass_model_access_control());
    assert!(s.forward_user_info_headers());

    // Empty means none / no expiry; 0 TTL means expire at once.
    let s = build(&[
        ("AIOHTTP_CLIENT_TIMEOUT", ""),
        ("AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST", ""),
        ("MODELS_CACHE_TTL", ""),
    ])
    .unwrap();
    assert_eq!(
        (s.timeout(), s.timeout_model_list(), s.models_cache_ttl()),
        (None, None, None)
    );
    assert_eq!(
        build(&[("MODELS_CACHE_TTL", "0")])
            .unwrap()
            .models_cache_ttl(),
        Some(Duration::ZERO)
    );
    // The older name of the model-list timeout still works.
    let s = build(&[("AIOHTTP_CLIENT_TIMEOUT_OPENAI_MODEL_LIST", "7")]).unwrap();
    assert_eq!(s.timeout_model_list(), Some(Duration::from_secs(7)));
    // Open WebUI 0.10+: only "false" turns verification off (0.6 turned it off for any
    // value but "true", X-2); another value is a CA bundle's path (`ca_bundles`).
    assert!(
        build(&[("AIOHTTP_CLIENT_SESSION_SSL", "TRUE")])
            .unwrap()
            .ssl_verify()
    );
    assert!(
        !build(&[("AIOHTTP_CLIENT_SESSION_SSL", "False")])
            .unwrap()
            .ssl_verify()
    );
    assert!(
        build(&[("AIOHTTP_CLIENT_SESSION_SSL", "/etc/ssl/corp.pem")])
            .unwrap()
            .ssl_verify()
    );
}

#[test]
fn values_that_do_not_parse_name_their_variable() {
    for var in [
        "AIOHTTP_CLIENT_TIMEOUT",
        "AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST",
        "MODELS_CACHE_TTL",
    ] {
        assert_eq!(env(&[(var, "ten")]).unwrap_err().field(), var);
    }
}

#[test]
fn sources_layer_field_by_field() {
    let file = SettingsSource {
        base_urls: Some(vec!["http://file/v1".into()]),
        keys: Some(vec![ApiKey::new("file-key")]),
        ssl_verify: Some(false),
        ..Default::default()
    };
    let from_env = env(&[("OPENAI_API_KEY", "env-key")]).unwrap();
    let s = from_env.or(file).build().unwrap();
    assert_eq!(s.base_urls(), ["http://file/v1"]);
    assert_eq!(keys(&s), ["env-key"]);
    assert!(!s.ssl_verify());
    // An empty URL variable does not override the file.
    let s = env(&[("OPENAI_API_BASE_URLS", "")])
        .unwrap()
        .or(SettingsSource {
            base_urls: Some(vec!["http://file/v1".into()]),
            ..Default::default()
        })
        .build()
        .unwrap();
    assert_eq!(s.base_urls(), ["http://file/v1"]);
}

#[test]
fn settings_round_trip_through_a_source() {
    let s = build(&[
        ("OPENAI_API_BASE_URLS", "http://a;http://b"),
        ("OPENAI_API_KEYS", "k1;k2"),
        ("MODELS_CACHE_TTL", ""),
    ])
    .unwrap();
    let again = s.to_source().build().unwrap();
    assert_eq!(again.base_urls(), s.base_urls());
    assert_eq!(keys(&again), keys(&s));
    assert_eq!(again.models_cache_ttl(), None);
}

#[test]
fn keys_never_show_in_debug_output() {
    let s = build(&[("OPENAI_API_KEY", "sk-secret-value")]).unwrap();
    let source = env(&[("OPENAI_API_KEY", "sk-secret-value")]).unwrap();
    for text in [
        format!("{s:?}"),
        format!("{source:?}"),
        format!("{:?}", s.connection(0).unwrap()),
    ] {
        assert!(!text.contains("sk-secret-value"), "{text}");
    }
}

#[test]
fn a1_bearer_and_api_key_values_are_prepared_once_and_sensitive() {
    let s = build(&[
        ("OPENAI_API_BASE_URLS", "http://a;http://b"),
        ("OPENAI_API_KEYS", "sk-1;"),
    ])
    .unwrap();
    let c0 = s.connection(0).unwrap();
    assert_eq!(c0.bearer().unwrap(), "Bearer sk-1");
    assert!(c0.bearer().unwrap().is_sensitive());
    assert_eq!(c0.api_key_header().unwrap(), "sk-1");
    assert!(s.connection(1).unwrap().bearer().is_none());
}

#[test]
fn the_spec_host_tests_are_answered_once_from_the_url() {
    let s = Settings::for_urls([
        "https://api.openai.com/v1",
        "https://openrouter.ai/api/v1",
        "http://127.0.0.1:8080/v1",
    ])
    .unwrap();
    let hosts = |i: usize| {
        let c = s.connection(i).unwrap();
        (c.is_openai(), c.is_openrouter())
    };
    assert_eq!(hosts(0), (true, false));
    assert_eq!(hosts(1), (false, true));
    assert_eq!(hosts(2), (false, false));
    assert!(s.connection(0).unwrap().url_contains("api.openai.com"));
}

#[test]
fn a_key_that_cannot_be_a_header_names_its_position_not_its_value() {
    let err = build(&[("OPENAI_API_KEYS", "sk-bad\u{7f}key")]).unwrap_err();
    assert!(err.field().starts_with("OPENAI_API_KEYS[0]"), "{err}");
    let err = SettingsSource {
        keys: Some(vec![ApiKey::new("sk-secret\nline")]),
        ..Default::default()
    }
    .build()
    .unwrap_err();
    assert!(!err.to_string().contains("sk-secret"), "{err}");
}

#[test]
fn a_base_url_makes_its_host_header_once_without_default_ports_or_user_info() {
    use tower_openai_settings::BaseUrl;
    for (url, host) in [
        ("http://127.0.0.1:8000/v1", "127.0.0.1:8000"),
        ("https://api.openai.com/v1", "api.openai.com"),
        ("https://api.openai.com:443/v1", "api.openai.com"),
        ("http://local:80", "local"),
        ("https://local:80/v1", "local:80"),
        ("http://user:secret@upstream:81/v1", "upstream:81"),
        ("http://[::1]:9000/v1", "[::1]:9000"),
    ] {
        let base = BaseUrl::parse(url).unwrap();
        assert_eq!(base.host_header(), host, "{url}");
    }
}
