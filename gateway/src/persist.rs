//! Admin changes on disk: `{data_dir}/config.json`, written so a crash at any moment leaves
//! either the old or the new file (temp file, fsync, rename, fsync of the folder).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tower_openai_settings::ApiKey;
use tower_openai_settings::SettingsSource;

use super::config::StartError;

/// Open WebUI's four persistent settings (rule C-4), under its field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persisted {
    /// `ENABLE_OPENAI_API`.
    #[serde(rename = "ENABLE_OPENAI_API")]
    pub enable: bool,
    /// `OPENAI_API_BASE_URLS`.
    #[serde(rename = "OPENAI_API_BASE_URLS")]
    pub base_urls: Vec<String>,
    /// `OPENAI_API_KEYS`.
    #[serde(rename = "OPENAI_API_KEYS")]
    pub keys: Vec<String>,
    /// `OPENAI_API_CONFIGS`.
    #[serde(rename = "OPENAI_API_CONFIGS")]
    pub configs: Map<String, Value>,
}

impl Persisted {
    /// These four settings over `source`.
    pub fn apply(&self, mut source: SettingsSource) -> SettingsSource {
        source.enable = Some(self.enable);
        source.base_urls = Some(self.base_urls.clone());
        source.keys = Some(self.keys.iter().map(|k| ApiKey::new(k.as_str())).collect());
        source.configs = Some(self.configs.clone());
        source
    }
}

/// Where the persisted settings live.
#[derive(Clone, Debug)]
pub(crate) struct ConfigStore {
    path: PathBuf,
}

impl ConfigStore {
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("config.json"),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A temporary file name of its own next to the real file: never one a stale file or a
    /// symlink already holds (it is created exclusively).
    fn temp_path(&self) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.path
            .with_extension(format!("json.{}.{n}.tmp", std::process::id()))
    }

    /// The persisted settings, if there are any. A file that cannot be read or parsed stops
    /// start-up naming it: it is never silently replaced.
    pub(crate) fn load(&self) -> Result<Option<Persisted>, StartError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StartError::File {
                    path: self.path.clone(),
                    message: format!("cannot read the persisted settings: {e}"),
                });
            }
        };
        serde_json::from_str(&text).map(Some).map_err(|e| StartError::File {
            path: self.path.clone(),
            message: format!(
                "the persisted settings are corrupt ({e}); fix or remove the file, or start with ENABLE_PERSISTENT_CONFIG=false"
            ),
        })
    }

    /// Write the new settings to a temporary file next to the real one and flush it to disk.
    pub(crate) fn write_temp(&self, settings: &Persisted) -> std::io::Result<PathBuf> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut options = fs::OpenOptions::new();
        // A fresh file: `create_new` fails on anything already there, a symlink included,
        // so the mode below is the file's mode and nothing else is written through.
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // The file holds upstream keys.
            options.mode(0o600);
        }
        // A name someone else holds is skipped, not written through.
        let mut attempts = 0;
        let (temp, mut file) = loop {
            let temp = self.temp_path();
            match options.open(&temp) {
                Ok(file) => break (temp, file),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 16 => {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let written = (|| {
            file.write_all(&serde_json::to_vec_pretty(settings).map_err(std::io::Error::other)?)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        Ok(temp)
    }

    /// Move the temporary file over the real one and flush the folder.
    pub(crate) fn commit(&self, temp: &Path) -> std::io::Result<()> {
        fs::rename(temp, &self.path)?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Both steps.
    pub(crate) fn save(&self, settings: &Persisted) -> std::io::Result<()> {
        let temp = self.write_temp(settings)?;
        let committed = self.commit(&temp);
        if committed.is_err() {
            let _ = fs::remove_file(&temp);
        }
        committed
    }

    /// [`save`](Self::save) on a blocking-work thread: fsync must not hold a runtime worker.
    pub(crate) async fn save_off_runtime(&self, settings: Persisted) -> std::io::Result<()> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.save(&settings))
            .await
            .map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Persisted {
        Persisted {
            enable: true,
            base_urls: vec!["http://127.0.0.1:1/v1".into()],
            keys: vec!["sk-secret".into()],
            configs: Map::new(),
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_stale_temp_file_or_a_symlink_is_never_written_through_and_the_file_is_0600() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let dir = std::env::temp_dir().join(format!("tower-openai-persist-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let store = ConfigStore::new(&dir);
        // What an older version left behind, world-readable, and a symlink an attacker
        // planted where a predictable temp file would go.
        let stale = dir.join("config.json.tmp");
        fs::write(&stale, "old").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o644)).unwrap();
        let target = dir.join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        for n in 0..4 {
            let _ = symlink(
                &target,
                dir.join(format!("config.json.{}.{n}.tmp", std::process::id())),
            );
        }
        store.save(&settings()).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
        let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(store.load().unwrap(), Some(settings()));
        let _ = fs::remove_dir_all(&dir);
    }
}
