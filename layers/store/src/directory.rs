//! The users, keys and access records in memory: what the request path reads.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tower_openai_acl::{AccessRecords, ModelAccess};
use tower_openai_core::{Role, User};
use tower_openai_identity::KeyStore;

use crate::records::{Budget, ModelRecord, Price, RateLimit, UserInfo};

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A user with what the layers need of them.
#[derive(Clone, Debug)]
pub struct Member {
    /// The user as the layers see them.
    pub user: User,
    /// Requests and tokens per minute; `None`: the default.
    pub rate_limit: Option<RateLimit>,
    /// Spend limits.
    pub budget: Option<Budget>,
}

/// Whose spend a budget holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Account {
    /// A user's (every key of theirs).
    User,
    /// One key's.
    Key,
}

/// A usable key: revoked keys are not in a [`Directory`] at all.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    /// The key's id.
    pub id: Arc<str>,
    /// The user it identifies.
    pub user: Arc<str>,
    /// Unix seconds after which it is refused.
    pub expires_at: Option<i64>,
    /// The key's own spend limit.
    pub budget: Option<Budget>,
}

/// One consistent snapshot of the users, their usable keys and the model access records.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    users: HashMap<Arc<str>, Member>,
    /// Whether any user has a rate limit of their own (if not, none is looked up).
    any_rate_limit: bool,
    keys: HashMap<[u8; 32], KeyEntry>,
    /// Whether any user or key has a budget (if not, none is looked up).
    any_budget: bool,
    /// The budgets of keys, by key id.
    key_budgets: HashMap<Arc<str>, Budget>,
    records: HashMap<String, Arc<ModelAccess>>,
    /// Prices by exact model id.
    prices: HashMap<String, Price>,
    /// Prices by prefix (their `*` removed), longest prefix first.
    price_prefixes: Vec<(String, Price)>,
}

impl Directory {
    /// This snapshot with its users' groups named by `names` (group id → display name, as
    /// the `groups` table holds them); a group not in `names` keeps its id as its name.
    pub fn with_group_names(mut self, names: &HashMap<String, String>) -> Self {
        for member in self.users.values_mut() {
            member.user.group_names = member
                .user
                .groups
                .iter()
                .map(|id| names.get(id).unwrap_or(id).clone())
                .collect();
        }
        self
    }

    /// This snapshot with `prices` (a model id, or a prefix ending in `*`).
    pub fn with_prices(mut self, prices: impl IntoIterator<Item = Price>) -> Self {
        for price in prices {
            match price.model.strip_suffix('*') {
                Some(prefix) => self.price_prefixes.push((prefix.to_owned(), price)),
                None => {
                    self.prices.insert(price.model.clone(), price);
                }
            }
        }
        self.price_prefixes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        self
    }

    /// The price of `model`: its own, else the longest prefix that matches it.
    pub fn price(&self, model: &str) -> Option<&Price> {
        self.prices.get(model).or_else(|| {
            self.price_prefixes
                .iter()
                .find(|(prefix, _)| model.starts_with(prefix.as_str()))
                .map(|(_, price)| price)
        })
    }

    /// A snapshot of `users`, the usable `keys` (by SHA-256 digest) and `records`. A key of
    /// a user who is not among `users` identifies nobody.
    pub fn new(
        users: impl IntoIterator<Item = UserInfo>,
        keys: impl IntoIterator<Item = ([u8; 32], KeyEntry)>,
        records: impl IntoIterator<Item = ModelRecord>,
    ) -> Self {
        let users: HashMap<Arc<str>, Member> = users
            .into_iter()
            .map(|u| {
                let id: Arc<str> = u.id.into();
                let member = Member {
                    user: User {
                        id: id.clone(),
                        name: u.name.into(),
                        email: u.email.into(),
                        // Stored roles are checked on write; an unknown one is the least.
                        role: Role::parse(&u.role).unwrap_or(Role::Pending),
                        // Named by their ids until `with_group_names` says otherwise.
                        group_names: u.groups.clone().into(),
                        groups: u.groups.into(),
                        key: None,
                    },
                    rate_limit: u.rate_limit,
                    budget: u.budget,
                };
                (id, member)
            })
            .collect();
        let keys: HashMap<[u8; 32], KeyEntry> = keys
            .into_iter()
            .filter(|(_, k)| users.contains_key(&k.user))
            .collect();
        let key_budgets: HashMap<Arc<str>, Budget> = keys
            .values()
            .filter_map(|k| Some((k.id.clone(), k.budget?)))
            .collect();
        let records = records
            .into_iter()
            .map(|r| {
                let access = ModelAccess {
                    owner: r.owner,
                    access: r.access.0,
                };
                (r.id, Arc::new(access))
            })
            .collect();
        Self {
            any_rate_limit: users.values().any(|m| m.rate_limit.is_some()),
            any_budget: !key_budgets.is_empty() || users.values().any(|m| m.budget.is_some()),
            users,
            keys,
            key_budgets,
            records,
            prices: HashMap::new(),
            price_prefixes: Vec::new(),
        }
    }

    /// Whether there are no users (single-user mode).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user `id`.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.users.get(id)
    }

    /// The key with this digest and its user, if the key is usable at `now` (Unix seconds).
    pub fn key(&self, digest: &[u8; 32], now: i64) -> Option<(&KeyEntry, &Member)> {
        let key = self.keys.get(digest)?;
        if key.expires_at.is_some_and(|at| at <= now) {
            return None;
        }
        Some((key, self.users.get(&key.user)?))
    }

    /// The soonest expiry after `now`, when a key cached by a connection must be looked up
    /// again.
    fn next_expiry(&self, now: i64) -> i64 {
        self.keys
            .values()
            .filter_map(|k| k.expires_at)
            .filter(|&at| at > now)
            .min()
            .unwrap_or(i64::MAX)
    }
}

/// The current [`Directory`], swapped atomically when the store changes: a [`KeyStore`] for
/// the identity layer and the [`AccessRecords`] of the acl layer, both answered from memory.
/// Cheap to clone (clones share the snapshot).
#[derive(Clone)]
pub struct LiveDirectory {
    inner: Arc<Live>,
}

struct Live {
    current: ArcSwap<Directory>,
    generation: AtomicU64,
    next_expiry: AtomicI64,
    /// With no users, every caller is this one (single-user mode).
    single_user: Option<User>,
    /// Ids of keys looked up since the last [`LiveDirectory::take_used`].
    used: Mutex<HashSet<Arc<str>>>,
}

impl fmt::Debug for LiveDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.inner.current.load();
        f.debug_struct("LiveDirectory")
            .field("users", &d.users.len())
            .field("keys", &d.keys.len())
            .field("records", &d.records.len())
            .field("generation", &self.generation())
            .finish()
    }
}

impl LiveDirectory {
    /// Serve `directory`. With no users in it, no caller is identified unless
    /// [`single_user`](Self::single_user) names who every caller is then.
    pub fn new(directory: Directory) -> Self {
        Self::build(directory, None)
    }

    /// As [`new`](Self::new); while the directory has no users, every caller is `user` (and
    /// no key is asked for).
    pub fn single_user(directory: Directory, user: User) -> Self {
        Self::build(directory, Some(user))
    }

    fn build(directory: Directory, single_user: Option<User>) -> Self {
        let next = directory.next_expiry(now());
        Self {
            inner: Arc::new(Live {
                current: ArcSwap::from_pointee(directory),
                generation: AtomicU64::new(0),
                next_expiry: AtomicI64::new(next),
                single_user,
                used: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Directory> {
        self.inner.current.load_full()
    }

    /// Serve `directory` from now on: requests already identified keep theirs, every
    /// connection looks its next key up again.
    pub fn replace(&self, directory: Directory) {
        self.inner
            .next_expiry
            .store(directory.next_expiry(now()), Ordering::Relaxed);
        self.inner.current.store(Arc::new(directory));
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    /// Called about once a second: when a key has expired since the last call, connections
    /// that remember it look it up again (and are refused).
    pub fn tick(&self, now: i64) {
        if now >= self.inner.next_expiry.load(Ordering::Relaxed) {
            let next = self.inner.current.load().next_expiry(now);
            self.inner.next_expiry.store(next, Ordering::Relaxed);
            self.inner.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// The ids of the keys looked up since the last call (for `last_used_at`).
    pub fn take_used(&self) -> Vec<Arc<str>> {
        let mut used = self.inner.used.lock().unwrap_or_else(|e| e.into_inner());
        used.drain().collect()
    }

    /// Whether every caller is the single user now (no users in the directory).
    pub fn is_single_user(&self) -> bool {
        self.inner.single_user.is_some() && self.inner.current.load().is_empty()
    }

    /// The price of `model` (its own, else the longest matching prefix).
    pub fn price(&self, model: &str) -> Option<Price> {
        self.inner.current.load().price(model).cloned()
    }

    /// Every budget: of users and of keys, by id.
    pub fn budgeted(&self) -> Vec<((Account, Arc<str>), Budget)> {
        let directory = self.inner.current.load();
        if !directory.any_budget {
            return Vec::new();
        }
        let users = directory
            .users
            .iter()
            .filter_map(|(id, m)| Some(((Account::User, id.clone()), m.budget?)));
        let keys = directory
            .key_budgets
            .iter()
            .map(|(id, b)| ((Account::Key, id.clone()), *b));
        users.chain(keys).collect()
    }

    /// The budgets of user `user` and of key `key`: what the rate-limit layer holds a
    /// caller to (none when neither has one).
    pub fn budgets(&self, user: &str, key: Option<&str>) -> (Option<Budget>, Option<Budget>) {
        let directory = self.inner.current.load();
        if !directory.any_budget {
            return (None, None);
        }
        let of_user = directory.member(user).and_then(|m| m.budget);
        let of_key = key.and_then(|k| directory.key_budgets.get(k).copied());
        (of_user, of_key)
    }

    /// The user `id`'s rate limit, if they have their own.
    pub fn rate_limit(&self, id: &str) -> Option<RateLimit> {
        let directory = self.inner.current.load();
        if !directory.any_rate_limit {
            return None;
        }
        directory.member(id)?.rate_limit
    }
}

impl tower_openai_core::PriceList for LiveDirectory {
    fn prices(&self, model: &str) -> Option<tower_openai_core::TokenPrices> {
        self.inner.current.load().price(model).map(Price::prices)
    }

    fn is_empty(&self) -> bool {
        let directory = self.inner.current.load();
        directory.prices.is_empty() && directory.price_prefixes.is_empty()
    }
}

impl KeyStore for LiveDirectory {
    fn user(&self, digest: &[u8; 32]) -> Option<User> {
        let directory = self.inner.current.load();
        if directory.is_empty() {
            return self.inner.single_user.clone();
        }
        let (key, member) = directory.key(digest, now())?;
        let mut used = self.inner.used.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded by the number of keys: a set of their ids.
        used.insert(key.id.clone());
        Some(User {
            key: Some(key.id.clone()),
            ..member.user.clone()
        })
    }

    fn needs_key(&self) -> bool {
        !self.is_single_user()
    }

    fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }
}

impl AccessRecords for LiveDirectory {
    fn record(&self, id: &str) -> Option<Arc<ModelAccess>> {
        self.inner.current.load().records.get(id).cloned()
    }

    fn allows(&self, id: &str, user: &User) -> Option<bool> {
        self.inner
            .current
            .load()
            .records
            .get(id)
            .map(|r| r.allows(user))
    }
}

#[cfg(test)]
mod tests {
    use tower_openai_acl::AccessControl;
    use tower_openai_identity::digest;

    use super::*;
    use crate::records::Access;

    fn user(id: &str, role: &str) -> UserInfo {
        UserInfo {
            id: id.into(),
            name: id.into(),
            email: String::new(),
            role: role.into(),
            groups: vec!["g".into()],
            rate_limit: None,
            budget: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn key(id: &str, user: &str, expires_at: Option<i64>) -> KeyEntry {
        KeyEntry {
            id: id.into(),
            user: user.into(),
            expires_at,
            budget: None,
        }
    }

    #[test]
    fn a_key_identifies_its_user_until_it_expires() {
        let d = Directory::new(
            [user("alice", "user")],
            [
                (digest(b"k1"), key("1", "alice", None)),
                (digest(b"k2"), key("2", "alice", Some(100))),
                (digest(b"k3"), key("3", "ghost", None)),
            ],
            [],
        );
        assert_eq!(
            d.key(&digest(b"k1"), 0).unwrap().1.user.id.as_ref(),
            "alice"
        );
        assert!(d.key(&digest(b"k2"), 99).is_some());
        assert!(d.key(&digest(b"k2"), 100).is_none());
        // A key whose user is gone identifies nobody.
        assert!(d.key(&digest(b"k3"), 0).is_none());
        assert!(d.key(&digest(b"nope"), 0).is_none());
    }

    #[test]
    fn a_replaced_directory_moves_the_generation_and_is_served() {
        let live = LiveDirectory::new(Directory::default());
        assert!(live.user(&digest(b"k1")).is_none());
        let g = live.generation();
        live.replace(Directory::new(
            [user("alice", "admin")],
            [(digest(b"k1"), key("1", "alice", None))],
            [ModelRecord {
                id: "m".into(),
                owner: "alice".into(),
                access: Access(AccessControl::Private),
            }],
        ));
        assert!(live.generation() > g);
        let alice = live.user(&digest(b"k1")).unwrap();
        assert_eq!(alice.role, Role::Admin);
        assert_eq!(live.allows("m", &alice), Some(true));
        assert_eq!(live.take_used(), vec![Arc::<str>::from("1")]);
        assert!(live.take_used().is_empty());
    }

    #[test]
    fn single_user_mode_lasts_while_there_are_no_users() {
        let admin = User {
            id: "admin".into(),
            role: Role::Admin,
            ..User::default()
        };
        let live = LiveDirectory::single_user(Directory::default(), admin);
        assert!(!live.needs_key());
        assert_eq!(live.user(&digest(b"")).unwrap().id.as_ref(), "admin");
        live.replace(Directory::new([user("alice", "admin")], [], []));
        assert!(live.needs_key());
        assert!(live.user(&digest(b"")).is_none());
    }

    #[test]
    fn a_users_own_rate_limit_is_found_and_others_have_none() {
        let mut ann = user("ann", "user");
        ann.rate_limit = Some(RateLimit {
            rpm: Some(5),
            tpm: None,
        });
        let live = LiveDirectory::new(Directory::new([ann, user("bob", "user")], [], []));
        assert_eq!(live.rate_limit("ann").unwrap().rpm, Some(5));
        assert_eq!(live.rate_limit("bob"), None);
        live.replace(Directory::new([user("ann", "user")], [], []));
        assert_eq!(live.rate_limit("ann"), None);
    }

    #[test]
    fn a_model_has_its_own_price_or_the_longest_matching_prefix() {
        let price = |model: &str, input: f64| Price {
            model: model.into(),
            input,
            output: 2.0 * input,
            cached_input: None,
        };
        let d = Directory::default().with_prices([
            price("gpt-4o*", 2.5),
            price("gpt-4o-mini*", 0.15),
            price("gpt-4o-mini-2024", 0.1),
            price("*", 9.0),
        ]);
        assert_eq!(d.price("gpt-4o-mini-2024").unwrap().input, 0.1);
        assert_eq!(d.price("gpt-4o-mini-tts").unwrap().input, 0.15);
        assert_eq!(d.price("gpt-4o").unwrap().input, 2.5);
        assert_eq!(d.price("o3").unwrap().input, 9.0);
        assert!(Directory::default().price("gpt-4o").is_none());
    }

    #[test]
    fn an_answer_costs_its_tokens_at_their_prices() {
        let p = Price {
            model: "m".into(),
            input: 2.5,
            output: 10.0,
            cached_input: Some(1.25),
        };
        // 1 000 000 prompt tokens of which 400 000 cached, 100 000 completion tokens.
        let cost = p.cost(1_000_000, 100_000, 400_000);
        assert!(
            (cost - (0.6 * 2.5 + 0.4 * 1.25 + 0.1 * 10.0)).abs() < 1e-12,
            "{cost}"
        );
        // No cached price: cached tokens cost the input price; more cached than prompt is all.
        let p = Price {
            cached_input: None,
            ..p
        };
        assert!((p.cost(1000, 0, 5000) - 1000.0 * 2.5 / 1e6).abs() < 1e-12);
    }

    #[test]
    fn an_expiry_passing_moves_the_generation_once() {
        let live = LiveDirectory::new(Directory::new(
            [user("alice", "user")],
            [(digest(b"k"), key("1", "alice", Some(now() + 100)))],
            [],
        ));
        let g = live.generation();
        live.tick(now());
        assert_eq!(live.generation(), g);
        live.tick(now() + 100);
        assert_eq!(live.generation(), g + 1);
        live.tick(now() + 101);
        assert_eq!(live.generation(), g + 1);
    }
}
