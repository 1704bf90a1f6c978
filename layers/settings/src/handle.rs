use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use super::Settings;

/// The current [`Settings`] snapshot, shared by every layer of a stack and swapped atomically.
///
/// Cloning the handle is cheap and every clone sees the same snapshot. A request should
/// [`load`](Self::load) once and keep the `Arc` it got: an update made while it is in flight
/// does not change the settings it runs with.
///
/// ```
/// use tower_openai_settings::{Settings, SettingsHandle};
///
/// let handle = SettingsHandle::new(Settings::for_urls(["http://127.0.0.1:9001/v1"]).unwrap());
/// let before = handle.load();
/// handle.store(Settings::for_urls(["http://127.0.0.1:9002/v1"]).unwrap());
/// assert_eq!(before.base_urls()[0], "http://127.0.0.1:9001/v1");
/// assert_eq!(handle.load().base_urls()[0], "http://127.0.0.1:9002/v1");
/// assert!(handle.load().generation() > before.generation());
/// ```
#[derive(Clone)]
pub struct SettingsHandle {
    current: Arc<ArcSwap<Settings>>,
    generation: Arc<AtomicU64>,
}

impl SettingsHandle {
    /// Publish `settings` as generation 1.
    pub fn new(mut settings: Settings) -> Self {
        settings.generation = 1;
        Self {
            current: Arc::new(ArcSwap::from_pointee(settings)),
            generation: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The current snapshot.
    #[inline]
    pub fn load(&self) -> Arc<Settings> {
        self.current.load_full()
    }

    /// Replace the snapshot; requests that already loaded the old one keep it.
    pub fn store(&self, mut settings: Settings) {
        settings.generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.current.store(Arc::new(settings));
    }
}

impl fmt::Debug for SettingsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SettingsHandle").field(&self.load()).finish()
    }
}
