//! The catalog's failure logging. A test binary of its own: tracing caches each log
//! callsite's interest for the whole process, and other tests running on other threads
//! without a subscriber would race with the thread-scoped subscriber this test captures
//! logs with.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tower_openai_settings::SettingsHandle;

mod common;
use common::*;

/// Captures formatted log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failure_is_logged_when_it_starts_and_when_it_ends_not_on_every_refresh() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let script = Script::default();
            script.set(0, Behaviour::Fail);
            let catalog = script.catalog(Duration::from_secs(60));
            let settings = SettingsHandle::new(settings(1, Some(1), 10, json!({}))).load();
            for _ in 0..5 {
                let _ = catalog.snapshot(&settings).await;
                tokio::time::advance(Duration::from_secs(2)).await;
                let _ = catalog.lookup(&settings); // stale: refresh
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
            }
            assert!(script.calls(0) >= 5, "{} refreshes", script.calls(0));
            script.set(0, Behaviour::Ids(vec!["back"], false));
            tokio::time::advance(Duration::from_secs(2)).await;
            let _ = catalog.lookup(&settings);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            assert_eq!(ids(&catalog, &settings).await, ["back"]);
        });
    });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.matches("model list fetch failed").count(), 1, "{text}");
    assert_eq!(
        text.matches("model list fetch works again").count(),
        1,
        "{text}"
    );
}
