//! Loading the gateway's configuration: flag > environment > TOML file > default, and
//! start-up errors that name what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use openai_gateway::{Args, Gateway, GatewayConfig, ModelAccess, StartError};

use common::env;

fn write_toml(name: &str, text: &str) -> PathBuf {
    let dir = common::temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn load(args: &Args, pairs: &[(&str, &str)]) -> Result<GatewayConfig, StartError> {
    GatewayConfig::load(args, &env(pairs))
}

const FULL: &str = r#"
listen = "127.0.0.1:9999"
data_dir = "from-file"

[openai]
enable = true
base_urls = ["http://127.0.0.1:9001/v1", "https://api.openai.com/v1"]
keys = ["", "sk-file"]
models_cache_ttl = 5
timeout = 300
timeout_model_list = 10
ssl_verify = false
bypass_model_access_control = false
forward_user_info_headers = true

[openai.configs."0"]
prefix_id = "local"
tags = [{ name = "local" }]
connection_type = "local"

[[users]]
id = "alice"
name = "Alice"
email = "alice@example.com"
role = "user"
groups = ["research"]
api_key = "sk-alice"

[[models]]
id = "local.llama3"
owner = "admin"
access = "public"

[[models]]
id = "gpt-4o"
owner = "admin"
access = { read_groups = ["research"], read_users = ["bob"] }

[[models]]
id = "secret"
owner = "alice"
access = "private"
"#;

#[test]
fn the_documented_toml_file_loads() {
    let path = write_toml("full.toml", FULL);
    let c = load(
        &Args {
            config: Some(path),
            ..Args::default()
        },
        &[],
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9999");
    assert_eq!(c.data_dir, PathBuf::from("from-file"));
    let s = c.settings.clone().build().unwrap();
    assert_eq!(s.base_urls().len(), 2);
    assert_eq!(s.keys()[1].expose(), "sk-file");
    assert_eq!(s.models_cache_ttl(), Some(Duration::from_secs(5)));
    assert!(!s.ssl_verify());
    assert!(s.forward_user_info_headers());
    let c0 = s.connection(0).unwrap().config();
    assert_eq!(c0.prefix_id.as_deref(), Some("local"));
    assert_eq!(c0.connection_type, "local");
    assert_eq!(c.users.len(), 1);
    assert_eq!(&c.users[0].user.groups[..], ["research"]);
    assert_eq!(c.models[0].access, ModelAccess::Public);
    assert_eq!(
        c.models[1].access,
        ModelAccess::Read {
            groups: vec!["research".into()],
            users: vec!["bob".into()]
        }
    );
    assert_eq!(c.models[2].access, ModelAccess::Private);
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let path = write_toml("precedence.toml", FULL);
    let args = Args {
        config: Some(path.clone()),
        ..Args::default()
    };
    let env_pairs = [
        ("GATEWAY_LISTEN", "127.0.0.1:7777"),
        ("DATA_DIR", "from-env"),
        ("OPENAI_API_KEYS", "sk-env-0;sk-env-1"),
        ("MODELS_CACHE_TTL", "9"),
    ];
    let c = load(&args, &env_pairs).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:7777");
    assert_eq!(c.data_dir, PathBuf::from("from-env"));
    let s = c.settings.build().unwrap();
    assert_eq!(s.keys()[1].expose(), "sk-env-1");
    assert_eq!(s.models_cache_ttl(), Some(Duration::from_secs(9)));
    // Untouched by the environment: still the file's.
    assert_eq!(s.base_urls()[0], "http://127.0.0.1:9001/v1");

    let flags = Args {
        config: Some(path),
        listen: Some("127.0.0.1:6666".into()),
        data_dir: Some("from-flag".into()),
        max_body_bytes: Some(10),
        ..Args::default()
    };
    let c = load(&flags, &env_pairs).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:6666");
    assert_eq!(c.data_dir, PathBuf::from("from-flag"));
    assert_eq!(c.max_body_bytes, 10);
}

#[test]
fn every_flag_falls_back_to_its_variable_read_once_by_the_loader() {
    let config = load(
        &Args::default(),
        &[
            ("GATEWAY_LISTEN", "127.0.0.1:9"),
            ("GATEWAY_METRICS_LISTEN", "127.0.0.1:10"),
            ("GATEWAY_MAX_CONNECTIONS", "7"),
            ("GATEWAY_MAX_BODY_BYTES", "1000"),
        ],
    )
    .unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:9");
    assert_eq!(
        config
            .observability
            .metrics_listen
            .map(|a| a.to_string())
            .as_deref(),
        Some("127.0.0.1:10")
    );
    assert_eq!(config.limits.max_connections, 7);
    assert_eq!(config.max_body_bytes, 1000);
    // The flag wins.
    let flagged = Args {
        metrics_listen: Some("127.0.0.1:11".into()),
        ..Args::default()
    };
    let config = load(&flagged, &[("GATEWAY_METRICS_LISTEN", "127.0.0.1:10")]).unwrap();
    assert_eq!(
        config
            .observability
            .metrics_listen
            .map(|a| a.to_string())
            .as_deref(),
        Some("127.0.0.1:11")
    );
}

#[test]
fn the_config_file_can_come_from_the_environment() {
    let path = write_toml("via-env.toml", "listen = \"127.0.0.1:5555\"\n");
    let c = load(
        &Args::default(),
        &[("GATEWAY_CONFIG", path.to_str().unwrap())],
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:5555");
}

#[test]
fn defaults_apply_when_nothing_is_given() {
    let c = load(&Args::default(), &[]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.max_body_bytes, 64 * 1024 * 1024);
    assert!(c.persistent_config);
    assert!(c.single_user());
    assert_eq!(c.max_per_host, None);
    assert_eq!(c.dns_ttl, std::time::Duration::from_secs(300));
    let c = load(
        &Args::default(),
        &[
            ("AIOHTTP_POOL_CONNECTIONS_PER_HOST", "8"),
            ("AIOHTTP_POOL_DNS_TTL", "0"),
        ],
    )
    .unwrap();
    assert_eq!((c.max_per_host, c.dns_ttl.as_secs()), (Some(8), 0));
    // aiohttp's 0 is no limit.
    let c = load(
        &Args::default(),
        &[("AIOHTTP_POOL_CONNECTIONS_PER_HOST", "0")],
    )
    .unwrap();
    assert_eq!(c.max_per_host, None);
    assert_eq!(
        c.settings.clone().build().unwrap().base_urls(),
        ["https://api.openai.com/v1"]
    );
}

fn start_error(args: Args, pairs: &[(&str, &str)]) -> String {
    // A data dir of its own: the identity store is a file in it.
    let args = Args {
        data_dir: Some(args.data_dir.unwrap_or_else(common::temp_dir)),
        ..args
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match load(&args, pairs) {
            Err(e) => e.to_string(),
            Ok(c) => match Gateway::new(c).await {
                Err(e) => e.to_string(),
                Ok(_) => panic!("started although the configuration is bad"),
            },
        }
    })
}

#[test]
fn bad_environment_values_stop_start_up_naming_the_variable() {
    for (var, value) in [
        ("OPENAI_API_CONFIGS", "{not json"),
        ("OPENAI_API_BASE_URLS", "http://ok/v1;not a url"),
        ("AIOHTTP_CLIENT_TIMEOUT", "soon"),
        ("MODELS_CACHE_TTL", "1.5"),
        ("GATEWAY_LISTEN", "localhost"),
        ("GATEWAY_MAX_BODY_BYTES", "lots"),
        ("REDIS_URL", "http://not-redis:secret@host"),
        ("GATEWAY_MODEL_GROUPS", "maybe"),
        ("GATEWAY_MAX_ATTEMPTS", "0"),
        ("GATEWAY_STREAM_USAGE", "sometimes"),
        ("GATEWAY_METRICS_LISTEN", "everywhere"),
        ("GATEWAY_MAX_CONNECTIONS_PER_IP", "0"),
        ("GATEWAY_BODY_TOTAL_TIMEOUT", "forever"),
        ("GATEWAY_MAX_BUFFERED_BYTES", "0"),
        ("GATEWAY_MAX_BUFFERED_BYTES_PER_USER", "-1"),
        ("AIOHTTP_POOL_CONNECTIONS_PER_HOST", "many"),
        ("AIOHTTP_POOL_DNS_TTL", "-5"),
    ] {
        let message = start_error(Args::default(), &[(var, value)]);
        assert!(message.contains(var), "{var}: {message}");
    }
    let message = start_error(
        Args::default(),
        &[("OPENAI_API_CONFIGS", r#"{"0": {"auth_type": "magic"}}"#)],
    );
    assert!(
        message.contains("OPENAI_API_CONFIGS[\"0\"].auth_type"),
        "{message}"
    );
}

#[test]
fn rate_limits_load_from_the_file_and_unknown_keys_stop_start_up() {
    let path = write_toml(
        "limits.toml",
        "[rate_limit]\nrpm = 60\n\n[[users]]\nid = \"alice\"\napi_key = \"sk-a\"\nrate_limit = { tpm = 5 }\n",
    );
    let c = load(
        &Args {
            config: Some(path),
            ..Args::default()
        },
        &[],
    )
    .unwrap();
    assert_eq!(c.rate_limit.rpm, Some(60));
    assert_eq!(c.users[0].rate_limit.as_ref().unwrap().tpm, Some(5));
    assert_eq!(c.users[0].rate_limit.as_ref().unwrap().rpm, None);
    let bad = write_toml("bad-limits.toml", "[rate_limit]\nrps = 1\n");
    let message = start_error(
        Args {
            config: Some(bad),
            ..Args::default()
        },
        &[],
    );
    assert!(message.contains("rps"), "{message}");
    // Budgets: a period that does not exist, a negative or missing amount.
    for (name, budget, named) in [
        ("b1", "{ usd = 5.0, period = \"week\" }", "week"),
        ("b2", "{ usd = -1.0, period = \"day\" }", "budget"),
        ("b3", "{ period = \"day\" }", "usd"),
    ] {
        let bad = write_toml(
            &format!("{name}.toml"),
            &format!("[[users]]\nid = \"a\"\napi_key = \"sk-a\"\nbudget = {budget}\n"),
        );
        let message = start_error(
            Args {
                config: Some(bad),
                ..Args::default()
            },
            &[],
        );
        assert!(message.contains(named), "{named}: {message}");
    }
    // A Redis URL's password is never repeated.
    let message = start_error(Args::default(), &[("REDIS_URL", "redis//:hunter2@host")]);
    assert!(
        message.contains("REDIS_URL") && !message.contains("hunter2"),
        "{message}"
    );
}

#[test]
fn secrets_never_appear_in_start_up_errors() {
    let message = start_error(
        Args::default(),
        &[
            ("OPENAI_API_KEYS", "sk-very-secret"),
            ("OPENAI_API_BASE_URLS", "::bad::"),
        ],
    );
    assert!(!message.contains("sk-very-secret"), "{message}");
    assert!(message.contains("OPENAI_API_BASE_URLS"), "{message}");
}

#[test]
fn bad_files_stop_start_up_naming_the_file_and_key() {
    let missing = Args {
        config: Some("/nonexistent/gateway.toml".into()),
        ..Args::default()
    };
    assert!(start_error(missing, &[]).contains("/nonexistent/gateway.toml"));

    for (name, text, expect) in [
        ("syntax.toml", "listen = ", "syntax.toml"),
        ("unknown.toml", "[openai]\nbase_url = \"x\"\n", "base_url"),
        (
            "ttl.toml",
            "[openai]\nmodels_cache_ttl = \"soon\"\n",
            "openai.models_cache_ttl",
        ),
        ("user.toml", "[[users]]\nid = \"a\"\n", "users[0].api_key"),
        (
            "role.toml",
            "[[users]]\nid = \"a\"\napi_key = \"k\"\nrole = \"root\"\n",
            "users[0].role",
        ),
        (
            "dup.toml",
            "[[users]]\nid = \"a\"\napi_key = \"k\"\n[[users]]\nid = \"b\"\napi_key = \"k\"\n",
            "users[1].api_key",
        ),
        (
            "hex.toml",
            "[[users]]\nid = \"a\"\napi_key_sha256 = \"zz\"\n",
            "users[0].api_key_sha256",
        ),
        (
            "access.toml",
            "[[models]]\nid = \"m\"\nowner = \"a\"\naccess = \"everyone\"\n",
            "models[0].access",
        ),
        (
            "cfg.toml",
            "[openai.configs.\"0\"]\nprefix_id = 3\n",
            "prefix_id",
        ),
    ] {
        let path = write_toml(name, text);
        let message = start_error(
            Args {
                config: Some(path),
                ..Args::default()
            },
            &[],
        );
        assert!(message.contains(expect), "{name}: {message}");
    }
}

#[test]
fn single_user_mode_is_refused_on_a_public_address_unless_allowed() {
    let public = Args {
        listen: Some("0.0.0.0:0".into()),
        data_dir: Some(common::temp_dir()),
        ..Args::default()
    };
    assert!(start_error(public.clone(), &[]).contains("--allow-anonymous"));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let allowed = Args {
            allow_anonymous: true,
            ..public.clone()
        };
        assert!(Gateway::new(load(&allowed, &[]).unwrap()).await.is_ok());
        let path = write_toml(
            "public-users.toml",
            "[[users]]\nid = \"a\"\napi_key = \"k\"\n",
        );
        let with_users = Args {
            config: Some(path),
            data_dir: Some(common::temp_dir()),
            ..public
        };
        assert!(Gateway::new(load(&with_users, &[]).unwrap()).await.is_ok());
    });
}

#[tokio::test]
async fn x3_proxy_variables_from_the_environment_route_upstream_traffic() {
    let proxy = tower_openai_test_util::RecordingProxy::start().await;
    let proxy_url = format!("http://u:s3cret@{}", proxy.addr());
    let args = Args {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(common::temp_dir()),
        ..Args::default()
    };
    let config = load(
        &args,
        &[
            ("OPENAI_API_BASE_URLS", "http://upstream.invalid/v1"),
            ("http_proxy", &proxy_url),
            ("NO_PROXY", "localhost"),
            ("ENABLE_OPENAI_API_PASSTHROUGH", "true"),
        ],
    )
    .unwrap();
    // The captured variables show their names, never their values.
    let debug = format!("{config:?}");
    assert!(
        debug.contains("http_proxy") && !debug.contains("s3cret"),
        "{debug}"
    );
    let gateway = Gateway::new(config).await.unwrap().spawn().await.unwrap();
    // A pass-through request goes to connection 0, through the proxy.
    let res = common::answer(
        http::Request::get(format!("{}/files?purpose=x", gateway.url()))
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, http::StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["via"], "proxy");
    let heads = proxy.heads();
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with("GET http://upstream.invalid/v1/files?purpose=x HTTP/1.1\r\n")),
        "{heads:?}"
    );
}
