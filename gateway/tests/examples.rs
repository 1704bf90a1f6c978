//! Every example in `gateway/examples/README.md` runs, and the index lists every example.

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
            index.contains(&format!("`cargo run -p openai-gateway --example {name}`")),
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
            source.contains(&format!("`cargo run -p openai-gateway --example {name}`")),
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
