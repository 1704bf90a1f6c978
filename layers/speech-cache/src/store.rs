//! The files and their least-recently-used index.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

/// The lower-case hex SHA-256 of a request body (rule S-2).
pub fn cache_key(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) size: u64,
    pub(crate) content_type: String,
    tick: u64,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<String, Entry>,
    by_recency: BTreeMap<u64, String>,
    total: u64,
    next_tick: u64,
}

impl Index {
    fn touch(&mut self, key: &str) -> Option<Entry> {
        let tick = self.next_tick;
        let entry = self.entries.get_mut(key)?;
        self.by_recency.remove(&entry.tick);
        entry.tick = tick;
        self.by_recency.insert(tick, key.to_owned());
        self.next_tick += 1;
        Some(entry.clone())
    }

    fn insert(&mut self, key: String, size: u64, content_type: String) {
        self.remove(&key);
        let tick = self.next_tick;
        self.next_tick += 1;
        self.by_recency.insert(tick, key.clone());
        self.total += size;
        self.entries.insert(
            key,
            Entry {
                size,
                content_type,
                tick,
            },
        );
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.by_recency.remove(&entry.tick);
        self.total -= entry.size;
        Some(entry)
    }

    /// The least recently used keys to drop so the total fits `max`.
    fn over_budget(&mut self, max: u64) -> Vec<String> {
        let mut evicted = Vec::new();
        while self.total > max {
            let Some((_, key)) = self.by_recency.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&key) {
                self.total -= e.size;
            }
            evicted.push(key);
        }
        evicted
    }
}

/// A speech cache on disk: `{dir}/{hash}.bin` holds the audio exactly as the upstream sent
/// it, `{hash}.json` its content type and the request. Bounded by total bytes; the least
/// recently used entries are deleted first. Cheap to clone; clones share the cache.
#[derive(Clone, Debug)]
pub struct SpeechStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    filling: Mutex<HashMap<String, Arc<Notify>>>,
    /// Entries being written, and a notification when the count drops to zero.
    writers: (std::sync::atomic::AtomicUsize, Notify),
}

impl SpeechStore {
    /// Open (or create) the cache in `dir`, holding at most `max_bytes` of audio. Entries
    /// left by a previous run are kept (most recently written first to stay); partial files
    /// from an interrupted write are removed.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> std::io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let mut found: Vec<(SystemTime, String, u64, String)> = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if name.contains(".tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(key) = name.strip_suffix(".bin") else {
                continue;
            };
            let meta_path = dir.join(format!("{key}.json"));
            let content_type = fs::read(&meta_path)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| {
                    v.get("content_type")
                        .and_then(|c| c.as_str())
                        .map(str::to_owned)
                });
            let Some(content_type) = content_type else {
                // Audio without its metadata is an interrupted commit: not a cache entry.
                let _ = fs::remove_file(&path);
                continue;
            };
            let meta = fs::metadata(&path)?;
            let meta_len = fs::metadata(&meta_path).map_or(0, |m| m.len());
            found.push((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                key.to_owned(),
                meta.len() + meta_len,
                content_type,
            ));
        }
        found.sort();
        let mut index = Index::default();
        for (_, key, size, content_type) in found {
            index.insert(key, size, content_type);
        }
        let cache = Self {
            inner: Arc::new(Inner {
                dir,
                max_bytes,
                index: Mutex::new(index),
                filling: Mutex::new(HashMap::new()),
                writers: Default::default(),
            }),
        };
        cache.inner.evict();
        Ok(cache)
    }

    /// A store that caches nothing: the layer passes every request through.
    pub fn disabled() -> Self {
        Self {
            inner: Arc::new(Inner {
                dir: PathBuf::new(),
                max_bytes: 0,
                index: Mutex::new(Index::default()),
                filling: Mutex::new(HashMap::new()),
                writers: Default::default(),
            }),
        }
    }

    /// Whether it caches anything.
    pub fn is_enabled(&self) -> bool {
        self.inner.max_bytes > 0
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Bytes of audio held.
    pub fn total_bytes(&self) -> u64 {
        self.inner.lock_index().total
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.lock_index().entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is cached.
    pub fn contains(&self, key: &str) -> bool {
        self.inner.lock_index().entries.contains_key(key)
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Wait until every entry being written has been committed or discarded: what a clean
    /// shutdown does, so that an answer the caller received is in the cache after a restart.
    pub async fn flush(&self) {
        use std::sync::atomic::Ordering;
        loop {
            let done = self.inner.writers.1.notified();
            let mut done = std::pin::pin!(done);
            done.as_mut().enable();
            if self.inner.writers.0.load(Ordering::SeqCst) == 0 {
                return;
            }
            done.await;
        }
    }
}

impl Inner {
    fn lock_index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn bin_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.bin"))
    }

    pub(crate) fn meta_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// Count a writer until the guard drops.
    pub(crate) fn writing(self: &Arc<Self>) -> Writing {
        self.writers
            .0
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Writing(self.clone())
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// A hit: the entry, marked as just used.
    pub(crate) fn lookup(&self, key: &str) -> Option<Entry> {
        self.lock_index().touch(key)
    }

    /// Forget an entry whose file is gone.
    pub(crate) fn forget(&self, key: &str) {
        self.lock_index().remove(key);
    }

    /// Record a committed entry and delete what no longer fits.
    pub(crate) fn admit(&self, key: String, size: u64, content_type: String) {
        self.lock_index().insert(key, size, content_type);
        self.evict();
    }

    fn evict(&self) {
        let evicted = self.lock_index().over_budget(self.max_bytes);
        for key in evicted {
            let _ = fs::remove_file(self.bin_path(&key));
            let _ = fs::remove_file(self.meta_path(&key));
            tracing::debug!(key = %key, "speech cache entry evicted");
        }
    }

    /// Become the one request filling `key`, or get the notification of the one that is.
    pub(crate) fn claim(&self, key: &str) -> Result<(), Arc<Notify>> {
        let mut filling = self.filling.lock().unwrap_or_else(|e| e.into_inner());
        match filling.get(key) {
            Some(n) => Err(n.clone()),
            None => {
                filling.insert(key.to_owned(), Arc::new(Notify::new()));
                Ok(())
            }
        }
    }

    /// Whether a request is filling `key`.
    pub(crate) fn is_filling(&self, key: &str) -> bool {
        self.filling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(key)
    }

    /// The fill of `key` is over (committed or not): wake the requests waiting for it.
    pub(crate) fn release(&self, key: &str) {
        let removed = self
            .filling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if let Some(n) = removed {
            n.notify_waiters();
        }
    }
}

/// A writer in progress (see [`SpeechStore::flush`]).
pub(crate) struct Writing(Arc<Inner>);

impl Drop for Writing {
    fn drop(&mut self) {
        if self
            .0
            .writers
            .0
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.writers.1.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s2_the_key_is_the_hex_sha256_of_the_raw_body() {
        assert_eq!(
            cache_key(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(cache_key(br#"{"a":1}"#), cache_key(br#"{"a": 1}"#));
    }

    #[test]
    fn the_index_evicts_the_least_recently_used_first() {
        let mut index = Index::default();
        index.insert("a".into(), 40, "audio/mpeg".into());
        index.insert("b".into(), 40, "audio/mpeg".into());
        index.touch("a");
        index.insert("c".into(), 40, "audio/mpeg".into());
        assert_eq!(index.over_budget(100), ["b"]);
        assert_eq!(index.total, 80);
        assert_eq!(index.over_budget(0), ["a", "c"]);
    }
}
