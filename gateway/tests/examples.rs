//! Every example in `gateway/examples/README.md` runs, and the index lists every example.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tower_openai_test_util::examples::{check_index, run};

#[test]
fn the_index_lists_every_example() {
    check_index(Path::new(env!("CARGO_MANIFEST_DIR")), |name| {
        format!("cargo run -p openai-gateway --example {name}")
    });
}

#[test]
fn multi_upstream_prints_each_users_models() {
    let out = run("multi_upstream");
    assert!(
        out.contains("alice sees: vllm.llama3, gpt-4o-mini"),
        "{out}"
    );
    assert!(out.contains("bob sees: ollama.phi3, gpt-4o-mini"), "{out}");
    assert!(
        out.contains(
            "root sees: vllm.llama3, vllm.qwen2, ollama.llama3, ollama.phi3, gpt-4o, gpt-4o-mini"
        ),
        "{out}"
    );
}

#[test]
fn gateway_demo_streams_through_the_gateway() {
    let out = run("gateway_demo");
    assert!(out.contains("models: gpt-4o-mini, o3-mini"), "{out}");
    assert!(out.contains("status 200 OK"), "{out}");
    assert!(out.contains("data: [DONE]"), "{out}");
    assert!(out.contains("7 events"), "{out}");
}
