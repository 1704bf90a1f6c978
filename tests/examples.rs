//! Every example in `examples/README.md` runs, and the index lists every example.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tower_openai_test_util::examples::{check_index, run};

#[test]
fn the_index_lists_every_example() {
    check_index(Path::new(env!("CARGO_MANIFEST_DIR")), |name| {
        format!("cargo run --features full --example {name}")
    });
}

#[test]
fn axum_app_serves_per_user_lists_under_v1() {
    let out = run("axum_app");
    assert!(
        out.contains("key-alice sees: local.llama3, local.qwen, gpt-4o-mini"),
        "{out}"
    );
    assert!(
        out.contains("key-admin sees: local.llama3, local.qwen, gpt-4o, gpt-4o-mini"),
        "{out}"
    );
    assert!(
        out.contains("alice's chat with local.llama3: 200 OK"),
        "{out}"
    );
    assert!(
        out.contains(r#"the local upstream got model Some(String("llama3"))"#),
        "{out}"
    );
    // Both upstreams check their key: the lists above came through with it.
    assert!(
        out.contains(
            r#"the local upstream's model list was asked for with Some("Bearer sk-local")"#
        ),
        "{out}"
    );
}

#[test]
fn hyper_stack_sends_the_key_upstream() {
    let out = run("hyper_stack");
    assert!(out.contains("status 200 OK"), "{out}");
    assert!(
        out.contains(r#"the upstream saw /v1/chat/completions with Some("Bearer sk-upstream")"#),
        "{out}"
    );
}

#[test]
fn azure_entra_fetches_one_token_for_three_requests() {
    let out = run("azure_entra");
    assert_eq!(out.matches("status 200 OK").count(), 3, "{out}");
    assert!(out.contains("Azure got: /openai/deployments/gpt-4o-deployment/chat/completions ?api-version=2024-10-21"), "{out}");
    assert!(
        out.contains("authorization: Bearer eyJ-entra-token"),
        "{out}"
    );
    assert!(
        out.contains(r#"body: {"messages":[{"role":"user","content":"hi"}]}"#),
        "{out}"
    );
    assert!(out.contains("tokens issued by the authority: 1"), "{out}");
}
