//! Users, groups, API keys and model access records: served from memory, kept in a database,
//! changed at runtime.
//!
//! - [`Directory`] is one consistent snapshot: the users, their usable keys (by SHA-256
//!   digest; revoked keys are not in it) and the model access records.
//! - [`LiveDirectory`] serves the current snapshot and swaps it atomically: it is the
//!   [`KeyStore`](tower_openai_identity::KeyStore) of the identity layer and the
//!   [`AccessRecords`](tower_openai_acl::AccessRecords) of the acl layer, so a request reads
//!   memory only, never the database. A swap moves the key store's generation, so a
//!   kept-alive connection that remembers a key looks it up again (a revoked key is refused
//!   on its next request); so does a key's expiry passing.
//! - `SqlStore` (features `sqlite`, `postgres`) keeps everything in SQLite or Postgres through
//!   sqlx, migrates the schema at open, makes every admin write one transaction with its
//!   audit entry, and `SqlStore::watch` polls the store's version so that a change made by
//!   any process sharing the database is served by all of them within the poll interval.
//!
//! Keys are stored as their SHA-256 only; a created key appears once, in
//! [`NewKey`]. A store error ([`StoreError`]) never half-applies a write and answers as an
//! OpenAI-shaped error ([`StoreError::to_response`]).
//!
//! # Example
//! ```
//! use tower_openai_acl::{AccessControl, AccessRecords};
//! use tower_openai_identity::{KeyStore, digest};
//! use tower_openai_store::{Access, Directory, KeyEntry, LiveDirectory, ModelRecord, UserInfo};
//!
//! let alice = UserInfo {
//!     id: "alice".into(), name: "Alice".into(), email: String::new(), role: "user".into(),
//!     groups: vec!["research".into()], rate_limit: None, budget: None,
//!     created_at: 0, updated_at: 0,
//! };
//! let key = KeyEntry { id: "k1".into(), user: "alice".into(), expires_at: None, budget: None };
//! let record = ModelRecord {
//!     id: "gpt-4o".into(),
//!     owner: "admin".into(),
//!     access: Access(AccessControl::Read { groups: vec!["research".into()], users: vec![] }),
//! };
//! let live = LiveDirectory::new(Directory::new([alice], [(digest(b"sk-alice"), key)], [record]));
//!
//! let user = live.user(&digest(b"sk-alice")).unwrap();
//! assert_eq!(live.allows("gpt-4o", &user), Some(true));
//!
//! // The key revoked: the next snapshot has no usable key for it.
//! live.replace(Directory::default());
//! assert!(live.user(&digest(b"sk-alice")).is_none());
//! ```

mod directory;
mod error;
mod records;
mod spend;
#[cfg(feature = "sql")]
mod sql;

pub use crate::directory::{Account, Directory, KeyEntry, LiveDirectory, Member};
pub use crate::error::StoreError;
pub use crate::records::{
    Access, AuditEntry, Budget, CreateKey, CreateUser, Group, KeyInfo, ModelRecord, NewKey, Period,
    Price, PutModel, PutPrice, RateLimit, SeedUser, UpdateUser, UserInfo,
};
pub use crate::spend::{SpendGroup, SpendGroupTotal, SpendRow, SpendTotals, is_day};
#[cfg(feature = "sql")]
pub use crate::sql::{Backend, SqlStore, UrlError};
