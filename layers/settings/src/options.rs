//! A layer's own section of a connection's config.
//!
//! Core parses the members several layers share (`enable`, `model_ids`, `prefix_id`, `tags`,
//! `connection_type`, `azure`: [`ConnectionConfig`](super::ConnectionConfig)). A layer that
//! reads members of its own (auth's `auth_type`, azure's `api_version`, the headers layer's
//! `headers`, group's `weight` and `priority`, …) names them in a type that implements
//! [`ConnectionOptions`], and reads them with [`Connection::options`](super::Connection::options):
//! the section is parsed once per connection of a settings snapshot, on first use, and kept
//! with the connection (a lock-free read after that). A new layer with new members never
//! edits core.
//!
//! [`Settings::check`](super::Settings::check) parses a section for every connection and
//! names the first member at fault, so an application refuses a bad config when it is loaded
//! or updated rather than when a request meets it.
//!
//! # Example
//! ```
//! use serde_json::{Map, Value, json};
//! use tower_openai_settings::{ConnectionOptions, OptionsError, SettingsSource};
//!
//! /// The `team` member of a connection's config.
//! #[derive(Debug, Default)]
//! struct Team(Option<String>);
//!
//! impl ConnectionOptions for Team {
//!     fn from_config(config: &Map<String, Value>) -> Result<Self, OptionsError> {
//!         match config.get("team") {
//!             None => Ok(Team(None)),
//!             Some(Value::String(s)) => Ok(Team(Some(s.clone()))),
//!             Some(_) => Err(OptionsError::new("team", "must be a string")),
//!         }
//!     }
//! }
//!
//! let settings = SettingsSource {
//!     base_urls: Some(vec!["http://a/v1".into()]),
//!     configs: json!({"0": {"team": "ml"}}).as_object().cloned(),
//!     ..Default::default()
//! }
//! .build()
//! .unwrap();
//! settings.check::<Team>().unwrap();
//! let team = settings.connection(0).unwrap().options::<Team>().unwrap();
//! assert_eq!(team.0.as_deref(), Some("ml"));
//! ```

use std::any::Any;
use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// A layer's section of a connection's config, parsed from the config object (members set to
/// `null` are removed first: they count as absent).
pub trait ConnectionOptions: Send + Sync + 'static {
    /// Parse the members this section reads; other members are not its business.
    fn from_config(config: &Map<String, Value>) -> Result<Self, OptionsError>
    where
        Self: Sized;
}

/// A member of a connection's config that does not parse: which one, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{member} {message}")]
pub struct OptionsError {
    member: String,
    message: String,
}

impl OptionsError {
    /// `member` (a dotted path below the config object, e.g. `headers.X-Team`) is wrong.
    pub fn new(member: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            member: member.into(),
            message: message.into(),
        }
    }

    /// The member at fault.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// How many section types one connection caches; more than every layer we ship together.
const SLOTS: usize = 16;

/// The parsed sections of one connection, each set once.
pub(super) struct OptionsCache {
    slots: [OnceLock<Box<dyn Any + Send + Sync>>; SLOTS],
}

impl OptionsCache {
    pub(super) fn new() -> Self {
        Self {
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Section `T` of `config`, parsed on first use.
    pub(super) fn get<T: ConnectionOptions>(
        &self,
        config: &Map<String, Value>,
    ) -> Result<&T, &OptionsError> {
        for slot in &self.slots {
            let value = match slot.get() {
                Some(value) => value,
                None => {
                    // Two sections may race for this slot: the loser looks further on.
                    let parsed: Result<T, OptionsError> = T::from_config(config);
                    let _ = slot.set(Box::new(parsed));
                    match slot.get() {
                        Some(value) => value,
                        None => continue,
                    }
                }
            };
            if let Some(parsed) = value.downcast_ref::<Result<T, OptionsError>>() {
                return parsed.as_ref();
            }
        }
        static FULL: OnceLock<OptionsError> = OnceLock::new();
        Err(FULL.get_or_init(|| {
            OptionsError::new("", format!("more than {SLOTS} option sections are in use"))
        }))
    }
}

impl Clone for OptionsCache {
    /// A clone parses its sections again (they are cheap, and the clone is rare).
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl fmt::Debug for OptionsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parsed = self.slots.iter().filter(|s| s.get().is_some()).count();
        f.debug_struct("OptionsCache")
            .field("parsed", &parsed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct A(i64);
    impl ConnectionOptions for A {
        fn from_config(config: &Map<String, Value>) -> Result<Self, OptionsError> {
            config.get("a").map_or(Ok(A(0)), |v| {
                v.as_i64()
                    .map(A)
                    .ok_or_else(|| OptionsError::new("a", "must be a number"))
            })
        }
    }

    #[derive(Debug, PartialEq)]
    struct B(bool);
    impl ConnectionOptions for B {
        fn from_config(config: &Map<String, Value>) -> Result<Self, OptionsError> {
            Ok(B(config.contains_key("b")))
        }
    }

    #[test]
    fn each_section_is_parsed_once_and_kept_apart() {
        let config = json!({"a": 7, "b": true});
        let config = config.as_object().unwrap();
        let cache = OptionsCache::new();
        let first: *const A = cache.get::<A>(config).unwrap();
        assert_eq!(cache.get::<B>(config).unwrap(), &B(true));
        let again: *const A = cache.get::<A>(config).unwrap();
        assert_eq!(first, again);
        assert_eq!(cache.get::<A>(config).unwrap(), &A(7));
    }

    #[test]
    fn an_error_is_kept_too() {
        let config = json!({"a": "x"});
        let cache = OptionsCache::new();
        let err = cache.get::<A>(config.as_object().unwrap()).unwrap_err();
        assert_eq!(err.member(), "a");
        assert_eq!(err.to_string(), "a must be a number");
    }

    /// Many threads asking for the same section at once all get the one parse that won.
    #[test]
    fn concurrent_first_uses_agree() {
        let config = json!({"a": 3});
        let config = config.as_object().unwrap();
        let cache = OptionsCache::new();
        let seen: Vec<usize> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        let a: &A = cache.get::<A>(config).unwrap();
                        let _ = cache.get::<B>(config).unwrap();
                        std::ptr::from_ref(a) as usize
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
        assert_eq!(cache.get::<A>(config).unwrap(), &A(3));
    }

    /// More section types than slots: an error, not a panic, and the sections that found a
    /// slot keep working.
    #[test]
    fn a_full_cache_answers_an_error() {
        macro_rules! sections {
            ($($name:ident),*) => {$(
                #[derive(Debug)]
                struct $name;
                impl ConnectionOptions for $name {
                    fn from_config(_: &Map<String, Value>) -> Result<Self, OptionsError> {
                        Ok($name)
                    }
                }
            )*};
        }
        sections!(
            S0, S1, S2, S3, S4, S5, S6, S7, S8, S9, S10, S11, S12, S13, S14, S15, S16
        );
        let config = Map::new();
        let cache = OptionsCache::new();
        cache.get::<S0>(&config).unwrap();
        cache.get::<S1>(&config).unwrap();
        cache.get::<S2>(&config).unwrap();
        cache.get::<S3>(&config).unwrap();
        cache.get::<S4>(&config).unwrap();
        cache.get::<S5>(&config).unwrap();
        cache.get::<S6>(&config).unwrap();
        cache.get::<S7>(&config).unwrap();
        cache.get::<S8>(&config).unwrap();
        cache.get::<S9>(&config).unwrap();
        cache.get::<S10>(&config).unwrap();
        cache.get::<S11>(&config).unwrap();
        cache.get::<S12>(&config).unwrap();
        cache.get::<S13>(&config).unwrap();
        cache.get::<S14>(&config).unwrap();
        cache.get::<S15>(&config).unwrap();
        let err = cache.get::<S16>(&config).unwrap_err();
        assert!(err.message().contains("more than 16"), "{err}");
        assert!(cache.get::<S3>(&config).is_ok());
    }
}
