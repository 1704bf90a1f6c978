//! Every example in `examples/README.md` runs, and the index lists every example.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn examples_on_disk() -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".rs").map(str::to_owned)
            })
            .collect();
    names.sort();
    names
}

/// `cargo test` builds the examples next to the test binaries: `target/<profile>/examples/`.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} was not built; run `cargo test --all-targets`",
        path.display()
    );
    path
}

#[test]
fn the_index_lists_every_example() {
    let index =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/README.md"))
            .unwrap();
    for name in examples_on_disk() {
        assert!(
            index.contains(&format!("`cargo run --features full --example {name}`")),
            "examples/README.md misses {name}"
        );
        let source = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs")),
        )
        .unwrap();
        assert!(
            source.starts_with("//!"),
            "{name}.rs must open with a //! header"
        );
        assert!(
            source.contains(&format!("`cargo run --features full --example {name}`")),
            "{name}.rs must give its run command"
        );
    }
}

fn run(name: &str) -> String {
    let out = Command::new(example(name)).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
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
