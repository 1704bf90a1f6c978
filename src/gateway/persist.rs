//! Admin changes on disk: `{data_dir}/config.json`, written so a crash at any moment leaves
//! either the old or the new file (temp file, fsync, rename, fsync of the folder).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tower_openai_core::SettingsSource;
use tower_openai_core::settings::ApiKey;

use super::config::StartError;

/// Open WebUI's four persistent settings (SPEC C-4), under its field names.
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

    fn temp_path(&self) -> PathBuf {
        self.path.with_extension("json.tmp")
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
        let temp = self.temp_path();
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // The file holds upstream keys.
            options.mode(0o600);
        }
        let mut file = options.open(&temp)?;
        file.write_all(&serde_json::to_vec_pretty(settings).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        Ok(temp)
    }

    /// Move the temporary file over the real one and flush the folder.
    pub(crate) fn commit(&self, temp: &Path) -> std::io::Result<()> {
        fs::rename(temp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Both steps.
    pub(crate) fn save(&self, settings: &Persisted) -> std::io::Result<()> {
        let temp = self.write_temp(settings)?;
        self.commit(&temp)
    }
}
