//! `--against COMMIT`: the `openai-gateway` binary of an earlier commit, built once (in a
//! git worktree under `target/bench-builds`, sharing one target folder between commits so
//! their dependencies build once) and measured in the same rounds as this build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The release binary of `commit` (a commit id, a tag, `HEAD~3`, …), built if it is not yet.
pub(crate) fn build(commit: &str) -> Result<PathBuf, String> {
    let root = repository_root()?;
    let id = git(
        &root,
        &["rev-parse", "--short=12", &format!("{commit}^{{commit}}")],
    )?;
    let builds = root.join("target/bench-builds");
    let exe = builds.join(format!("openai-gateway-{id}"));
    if exe.exists() {
        return Ok(exe);
    }
    let tree = builds.join(format!("src-{id}"));
    if !tree.exists() {
        git(
            &root,
            &[
                "worktree",
                "add",
                "--detach",
                "--force",
                path_str(&tree)?,
                &id,
            ],
        )?;
    }
    eprintln!(
        "building openai-gateway at {id} (release) in {} …",
        tree.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target = builds.join("target");
    // `--workspace --bin`: the binary was the facade package's before it had a crate of
    // its own, and this finds it either way.
    let status = Command::new(cargo)
        .current_dir(&tree)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--release",
            "--workspace",
            "--bin",
            "openai-gateway",
        ])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("the build of {id} failed"));
    }
    std::fs::copy(target.join("release/openai-gateway"), &exe)
        .map_err(|e| format!("cannot keep the binary of {id}: {e}"))?;
    let _ = git(&root, &["worktree", "remove", "--force", path_str(&tree)?]);
    Ok(exe)
}

fn repository_root() -> Result<PathBuf, String> {
    git(Path::new("."), &["rev-parse", "--show-toplevel"]).map(PathBuf::from)
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
