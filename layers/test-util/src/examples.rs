//! Checks for a crate's `examples/`: its index lists each one with its run command, each
//! opens with a `//!` header giving that command, and each runs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The examples in `{manifest_dir}/examples`, by name, sorted.
pub fn on_disk(manifest_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(manifest_dir.join("examples"))
        .expect("an examples folder")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// Panics unless `examples/README.md` gives each example's run command (`command(name)`), and
/// each example opens with a `//!` header that gives it too.
pub fn check_index(manifest_dir: &Path, command: impl Fn(&str) -> String) {
    let index = std::fs::read_to_string(manifest_dir.join("examples/README.md"))
        .expect("examples/README.md");
    for name in on_disk(manifest_dir) {
        let run = format!("`{}`", command(&name));
        assert!(index.contains(&run), "examples/README.md misses {name}");
        let source = std::fs::read_to_string(manifest_dir.join(format!("examples/{name}.rs")))
            .expect("the example's source");
        assert!(
            source.starts_with("//!"),
            "{name}.rs must open with a //! header"
        );
        assert!(source.contains(&run), "{name}.rs must give its run command");
    }
}

/// Where `cargo test` built example `name`: `target/<profile>/examples/`, next to the test
/// binaries.
pub fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} was not built; run `cargo test --all-targets`",
        path.display()
    );
    path
}

/// Run example `name`; its standard output. Panics when it fails.
pub fn run(name: &str) -> String {
    let out = Command::new(built(name))
        .output()
        .expect("the example starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
