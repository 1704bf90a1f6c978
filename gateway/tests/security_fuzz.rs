//! A property test of the access rules (docs/security.md): random methods, paths, content
//! types, encodings and bodies, sent by a user who may use only one model, through the
//! gateway's whole stack to a real mock upstream. Whatever the request, nothing that
//! reaches the upstream carries another model, names an Azure deployment, or leaves the
//! model routes while the passthrough is off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use http::{Method, Request};
use openai_gateway::{Args, Gateway, GatewayConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tower::ServiceExt;
use tower_openai::core::Body;
use tower_openai_test_util::MockUpstream;

use common::*;

const CONFIG: &str = r#"
[[users]]
id = "alice"
api_key = "sk-alice"

[[models]]
id = "up.allowed"
owner = "alice"
access = "public"
"#;

/// Path pieces an attacker would combine.
const SEGMENTS: &[&str] = &[
    "chat",
    "completions",
    "chat/completions",
    "embeddings",
    "audio",
    "transcriptions",
    "audio/transcriptions",
    "images",
    "edits",
    "models",
    "files",
    "batches",
    "openai",
    "deployments",
    "secret",
    "allowed",
    "up.secret",
    "az.secret",
    "v1",
    "responses",
    "",
    ".",
    "..",
    "%2e",
    "%2e%2e",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "Chat",
    "COMPLETIONS",
    "complet%69ons",
    ";x",
    "moderations",
    "model",
    "info",
];

const MODELS: &[&str] = &[
    "up.allowed",
    "up.secret",
    "secret",
    "allowed",
    "az.secret",
    "az.allowed",
    "up.Allowed",
    "up.allowed ",
    "UP.ALLOWED",
    "",
];

fn path() -> impl Strategy<Value = String> {
    let routes: Vec<&str> = JSON_ROUTES.iter().chain(&FORM_ROUTES).copied().collect();
    prop_oneof![
        // A model route, as a well-behaved client sends it.
        (
            prop::sample::select(vec!["/v1", "/openai"]),
            prop::sample::select(routes),
        )
            .prop_map(|(prefix, route)| format!("{prefix}/{route}")),
        // Anything else.
        (
            prop::sample::select(vec!["/v1", "/openai", "", "/v1/", "/V1"]),
            prop::collection::vec(prop::sample::select(SEGMENTS.to_vec()), 0..5),
        )
            .prop_map(|(prefix, segments)| format!("{prefix}/{}", segments.join("/"))),
    ]
}

/// A model name: the allowed one half of the time, so that requests get through.
fn model() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("up.allowed"), prop::sample::select(MODELS.to_vec())]
}

fn json_body() -> impl Strategy<Value = String> {
    (
        model(),
        model(),
        prop_oneof![3 => Just(0usize), 7 => 1..8usize],
    )
        .prop_map(|(a, b, shape)| match shape {
            0 => format!(r#"{{"model":"{a}","messages":[]}}"#),
            1 => format!(r#"{{"model":"{a}","model":"{b}"}}"#),
            2 => format!("\u{feff}{{\"model\":\"{a}\"}}"),
            3 => format!(r#"{{"model":"{a}","t":NaN}}"#),
            4 => format!(r#"{{"model":"{a}"}} {{"model":"{b}"}}"#),
            5 => format!(r#"{{"model":["{a}"]}}"#),
            6 => format!(r#"{{"input":"x","model":"{a}\u0000"}}"#),
            _ => format!(r#"{{"messages":[],"deployment":"{b}"}}"#),
        })
}

fn form_body() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            (
                prop::sample::select(vec!["model", "model", "Model", "file", "model ", "mode"]),
                model(),
            ),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(parts, quoted)| {
            let mut body = String::new();
            for (name, value) in parts {
                let name = if quoted {
                    format!("\"{name}\"")
                } else {
                    name.to_owned()
                };
                body.push_str(&format!(
                    "--bnd\r\nContent-Disposition: form-data; name={name}\r\n\r\n{value}\r\n"
                ));
            }
            body.push_str("--bnd--\r\n");
            body
        })
}

#[derive(Clone, Debug)]
struct Attempt {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    encoding: Option<&'static str>,
    body: String,
}

fn attempt() -> impl Strategy<Value = Attempt> {
    (
        prop::sample::select(vec![
            Method::POST,
            Method::POST,
            Method::GET,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ]),
        path(),
        prop::sample::select(vec![
            Some("application/json"),
            Some("text/plain"),
            Some("multipart/form-data; boundary=bnd"),
            Some("application/x-www-form-urlencoded"),
            Some("application/vnd.api+json"),
            None,
        ]),
        prop::sample::select(vec![None, None, None, None, Some("gzip"), Some("identity")]),
        prop_oneof![json_body(), form_body(), Just(String::new())],
    )
        .prop_map(|(method, path, content_type, encoding, body)| Attempt {
            method,
            path,
            content_type,
            encoding,
            body,
        })
}

const JSON_ROUTES: [&str; 7] = [
    "chat/completions",
    "completions",
    "embeddings",
    "responses",
    "audio/speech",
    "images/generations",
    "moderations",
];
const FORM_ROUTES: [&str; 4] = [
    "audio/transcriptions",
    "audio/translations",
    "images/edits",
    "images/variations",
];

/// The `model` values a form carries, read naively (a part whose name is `model`).
fn form_models(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    text.split("--bnd")
        .filter_map(|part| {
            let (head, value) = part.split_once("\r\n\r\n")?;
            let name = head.to_ascii_lowercase();
            (name.contains("name=\"model") || name.contains("name=model"))
                .then(|| value.trim_end_matches("\r\n").to_owned())
        })
        .collect()
}

#[test]
fn no_request_reaches_an_upstream_with_another_model_or_outside_the_model_routes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mock, app) = rt.block_on(async {
        let mock = MockUpstream::builder()
            .models(["allowed", "secret"])
            .start()
            .await;
        let text = format!(
            "[openai]\nbase_urls = [\"{}\", \"{}\"]\n\
             [openai.configs.\"0\"]\nprefix_id = \"up\"\n\
             [openai.configs.\"1\"]\nazure = true\nprefix_id = \"az\"\nmodel_ids = [\"secret\", \"allowed\"]\n{CONFIG}",
            mock.url(),
            mock.root_url()
        );
        let path = temp_dir().join("fuzz.toml");
        std::fs::write(&path, text).unwrap();
        let args = Args {
            config: Some(path),
            data_dir: Some(temp_dir()),
            ..Args::default()
        };
        let config = GatewayConfig::load(&args, &env(&[])).unwrap();
        let gateway = Gateway::new(config).await.unwrap();
        let app = gateway.app();
        // The gateway owns the catalog the app shares; keep it alive for the whole test.
        std::mem::forget(gateway);
        (mock, app)
    });
    let cases = std::env::var("SECURITY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let admitted = std::cell::Cell::new(0usize);
    runner
        .run(&attempt(), |a| {
            let Ok(uri) = http::Uri::try_from(a.path.as_str()) else {
                return Ok(());
            };
            let mut req = Request::builder()
                .method(a.method.clone())
                .uri(uri)
                .header("host", "127.0.0.1")
                .header("authorization", "Bearer sk-alice");
            if let Some(ct) = a.content_type {
                req = req.header("content-type", ct);
            }
            if let Some(enc) = a.encoding {
                req = req.header("content-encoding", enc);
            }
            let req = req.body(Body::from(Bytes::from(a.body.clone()))).unwrap();
            let before = mock.requests().len();
            let status = rt.block_on(app.clone().oneshot(req)).unwrap().status();
            for seen in &mock.requests()[before..] {
                if seen.method == Method::GET && seen.path == "/v1/models" {
                    continue; // the catalog's own list fetch
                }
                admitted.set(admitted.get() + 1);
                let route = seen.path.strip_prefix("/v1/").unwrap_or("");
                prop_assert!(
                    JSON_ROUTES.contains(&route) || FORM_ROUTES.contains(&route),
                    "{a:?} reached {} {} ({status})",
                    seen.method,
                    seen.path
                );
                prop_assert_eq!(&seen.method, &Method::POST);
                if JSON_ROUTES.contains(&route) {
                    prop_assert_eq!(seen.header("content-type"), Some("application/json"));
                    let body: serde_json::Value = serde_json::from_slice(&seen.body)
                        .map_err(|e| TestCaseError::fail(format!("{a:?}: {e}")))?;
                    prop_assert_eq!(&body["model"], "allowed", "{:?}", a);
                    prop_assert_eq!(
                        seen.body.windows(7).filter(|w| w == b"\"model\"").count(),
                        1,
                        "{:?}",
                        a
                    );
                } else {
                    prop_assert_eq!(
                        form_models(&seen.body),
                        vec!["allowed".to_owned()],
                        "{:?}",
                        a
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "{} of {cases} requests reached the upstream",
        admitted.get()
    );
    // The property means something only if enough requests got through.
    assert!(
        admitted.get() >= cases as usize / 1000,
        "too few requests reached the upstream"
    );
}
