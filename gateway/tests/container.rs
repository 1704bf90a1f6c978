//! What the container image relies on: `openai-gateway --healthcheck` answers for the process
//! serving on `--listen` (the image has no curl), and the Dockerfile and the compose example
//! say what the docs promise. (CI builds the image itself where a container engine runs.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::{Gateway, free_port};

fn healthcheck(listen: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_openai-gateway"))
        .args(["--healthcheck", "--listen", listen])
        .env_remove("GATEWAY_LISTEN")
        .status()
        .unwrap()
        .success()
}

#[test]
fn the_healthcheck_flag_asks_the_serving_process() {
    let gw = Gateway::start("healthcheck", |cmd| {
        cmd.arg("--demo");
    });
    let _ = gw.connect();
    assert!(healthcheck(&format!("127.0.0.1:{}", gw.port)));
    // An unspecified address is asked on loopback, as inside a container.
    assert!(healthcheck(&format!("0.0.0.0:{}", gw.port)));
    assert!(!healthcheck(&format!("127.0.0.1:{}", free_port())));
    assert!(!healthcheck("not an address"));
}

#[test]
fn the_image_runs_as_a_non_root_user_with_the_healthcheck() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).unwrap();
    assert_eq!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")),
        2,
        "two stages"
    );
    assert!(dockerfile.contains("\nUSER nonroot\n"), "{dockerfile}");
    assert!(dockerfile.contains(r#"CMD ["/usr/local/bin/openai-gateway", "--healthcheck"]"#));
    // Profile-guided by default, through the script CI runs (PGO=0: the plain build).
    assert!(dockerfile.contains("ARG PGO=1\n"), "{dockerfile}");
    assert!(
        dockerfile.contains("&& bench/pgo-build \\\n"),
        "{dockerfile}"
    );
    let script = std::path::Path::new(root).join("bench/pgo-build");
    let mode = std::os::unix::fs::PermissionsExt::mode(&script.metadata().unwrap().permissions());
    assert_ne!(mode & 0o111, 0, "bench/pgo-build is executable");
    let compose = std::fs::read_to_string(format!("{root}/examples/compose/compose.yaml")).unwrap();
    assert!(compose.contains("build: ../.."), "{compose}");
    // The config the compose example mounts loads.
    let config = format!("{root}/examples/compose/gateway.toml");
    let args = openai_gateway::Args {
        config: Some(config.into()),
        ..Default::default()
    };
    openai_gateway::GatewayConfig::load(&args, &|_| None)
        .expect("the compose example's config loads");
}
