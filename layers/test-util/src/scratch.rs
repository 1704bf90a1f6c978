//! Folders for one test, removed once their process is gone.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty folder under the system's temporary folder, named
/// `tower-openai-{tag}-{pid}-{n}`.
///
/// A test's gateway keeps its folder for as long as the test runs, so nothing removes it on
/// drop. Instead, the first call in a process removes the folders of processes that have
/// ended (on Linux, where `/proc` says which are running), so repeated runs leave at most
/// the folders of the processes still alive.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static SWEEP: Once = Once::new();
    let root = std::env::temp_dir();
    SWEEP.call_once(|| sweep(&root));
    let dir = root.join(format!(
        "tower-openai-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir
}

/// Remove `tower-openai-{tag}-{pid}-{n}` folders whose process is not running.
fn sweep(root: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The process id in a scratch folder's name: `tower-openai-{tag}-{pid}-{n}`.
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("tower-openai-")?;
    let mut parts = rest.rsplitn(3, '-');
    let n = parts.next()?;
    let pid = parts.next()?;
    let tag = parts.next()?;
    if tag.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_names_its_process() {
        assert_eq!(owner("tower-openai-test-1234-7"), Some(1234));
        assert_eq!(owner("tower-openai-store-99-0"), Some(99));
        assert_eq!(owner("tower-openai-test-x-7"), None);
        assert_eq!(owner("tower-openai-test-12"), None);
        assert_eq!(owner("other-test-1234-7"), None);
    }

    #[test]
    fn an_ended_process_s_folder_is_swept_and_a_live_one_kept() {
        if !Path::new("/proc/self").exists() {
            return;
        }
        let root = std::env::temp_dir().join(format!("sweep-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        // No process has id 4294967 (above Linux's pid_max of 2^22).
        let dead = root.join("tower-openai-test-4294967-0");
        let live = root.join(format!("tower-openai-test-{}-0", std::process::id()));
        let other = root.join("something-else-4294967-0");
        for dir in [&dead, &live, &other] {
            std::fs::create_dir_all(dir).unwrap();
        }
        sweep(&root);
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn each_call_is_a_new_empty_folder() {
        let (a, b) = (scratch_dir("unit"), scratch_dir("unit"));
        assert_ne!(a, b);
        assert_eq!(std::fs::read_dir(&a).unwrap().count(), 0);
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(b).unwrap();
    }
}
