use std::collections::HashMap;
use std::sync::Arc;

use tower_openai_core::User;

/// Who may read a model (rule AC-1's `access_control`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessControl {
    /// `null`: every user may read it.
    Public,
    /// `{}`: only the owner.
    Private,
    /// `{"read": {"group_ids": […], "user_ids": […]}}`.
    Read {
        /// Groups whose members may read it.
        groups: Vec<String>,
        /// Users who may read it.
        users: Vec<String>,
    },
}

/// A model's access record: its owner and who else may read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelAccess {
    /// The owning user's id (always allowed).
    pub owner: String,
    /// Who else may read it.
    pub access: AccessControl,
}

impl ModelAccess {
    /// AC-1 `has_access(user, "read", access_control)`, or ownership (AC-2, AC-3).
    pub fn allows(&self, user: &User) -> bool {
        if *self.owner == *user.id {
            return true;
        }
        match &self.access {
            AccessControl::Public => true,
            AccessControl::Private => false,
            AccessControl::Read { groups, users } => {
                users.iter().any(|u| **u == *user.id)
                    || user.groups.iter().any(|g| groups.contains(g))
            }
        }
    }
}

/// Where access records come from: implement it over your database. Look-ups happen once
/// per request (and once per listed model for `GET /models`), so keep them in memory.
pub trait AccessRecords: Send + Sync + 'static {
    /// The record of model `id` (as callers name it, prefix included), if there is one.
    fn record(&self, id: &str) -> Option<Arc<ModelAccess>>;

    /// Whether `user` may use model `id` by its record (`None`: there is no record).
    ///
    /// The default asks [`record`](Self::record). Implement it when the answer can be given
    /// without handing out the record: [`StaticRecords`] does, so a request (and each model
    /// of a listing) touches no reference count shared with every other request.
    fn allows(&self, id: &str, user: &User) -> Option<bool> {
        self.record(id).map(|r| r.allows(user))
    }
}

impl<T: AccessRecords + ?Sized> AccessRecords for Arc<T> {
    fn record(&self, id: &str) -> Option<Arc<ModelAccess>> {
        (**self).record(id)
    }

    fn allows(&self, id: &str, user: &User) -> Option<bool> {
        (**self).allows(id, user)
    }
}

/// A fixed set of records (the gateway's `[[models]]`).
#[derive(Clone, Debug, Default)]
pub struct StaticRecords {
    records: Arc<HashMap<String, Arc<ModelAccess>>>,
}

impl StaticRecords {
    /// Records by model id.
    pub fn new(records: impl IntoIterator<Item = (String, ModelAccess)>) -> Self {
        Self {
            records: Arc::new(records.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()),
        }
    }
}

impl AccessRecords for StaticRecords {
    fn record(&self, id: &str) -> Option<Arc<ModelAccess>> {
        self.records.get(id).cloned()
    }

    fn allows(&self, id: &str, user: &User) -> Option<bool> {
        self.records.get(id).map(|r| r.allows(user))
    }
}

/// The one decision behind both "is this model in the user's list?" and "may this request
/// use this model?", so the two never disagree.
///
/// - With `BYPASS_MODEL_ACCESS_CONTROL`, or for an admin: yes (admins may use base models
///   that have no record, AC-3).
/// - Otherwise only with a record that the user owns or may read (AC-2, AC-3): base models
///   without a record are hidden from plain users.
pub fn may_use(records: &dyn AccessRecords, user: &User, model: &str, bypass: bool) -> bool {
    if bypass || user.is_admin() {
        return true;
    }
    records.allows(model, user).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_openai_core::Role;

    fn user(id: &str, groups: &[&str], role: Role) -> User {
        User {
            id: id.into(),
            role,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..User::default()
        }
    }

    fn records() -> StaticRecords {
        StaticRecords::new([
            (
                "public".to_owned(),
                ModelAccess {
                    owner: "admin".into(),
                    access: AccessControl::Public,
                },
            ),
            (
                "private".to_owned(),
                ModelAccess {
                    owner: "alice".into(),
                    access: AccessControl::Private,
                },
            ),
            (
                "team".to_owned(),
                ModelAccess {
                    owner: "admin".into(),
                    access: AccessControl::Read {
                        groups: vec!["research".into()],
                        users: vec!["bob".into()],
                    },
                },
            ),
        ])
    }

    #[test]
    fn ac1_null_is_public_empty_is_private_and_ids_grant() {
        let r = records();
        let carol = user("carol", &[], Role::User);
        assert!(may_use(&r, &carol, "public", false));
        assert!(!may_use(&r, &carol, "private", false));
        assert!(!may_use(&r, &carol, "team", false));
        assert!(may_use(&r, &user("bob", &[], Role::User), "team", false));
        assert!(may_use(
            &r,
            &user("dan", &["ops", "research"], Role::User),
            "team",
            false
        ));
    }

    #[test]
    fn ac2_ac3_the_owner_may_and_base_models_without_a_record_are_hidden() {
        let r = records();
        assert!(may_use(
            &r,
            &user("alice", &[], Role::User),
            "private",
            false
        ));
        assert!(!may_use(
            &r,
            &user("alice", &[], Role::User),
            "gpt-4o",
            false
        ));
    }

    /// Records from a store that implements only `record`, as a database-backed one might.
    struct OnlyRecord(StaticRecords);

    impl AccessRecords for OnlyRecord {
        fn record(&self, id: &str) -> Option<Arc<ModelAccess>> {
            self.0.record(id)
        }
    }

    #[test]
    fn the_default_allows_agrees_with_the_static_records_own() {
        let fast = records();
        let slow = OnlyRecord(records());
        let users = [
            user("carol", &[], Role::User),
            user("bob", &[], Role::User),
            user("alice", &[], Role::User),
            user("dan", &["research"], Role::User),
        ];
        for u in &users {
            for model in ["public", "private", "team", "gpt-4o"] {
                assert_eq!(
                    fast.allows(model, u),
                    slow.allows(model, u),
                    "{} on {model}",
                    u.id
                );
                assert_eq!(
                    may_use(&fast, u, model, false),
                    may_use(&slow, u, model, false)
                );
            }
        }
        assert_eq!(fast.allows("gpt-4o", &users[0]), None);
        assert_eq!(fast.allows("team", &users[1]), Some(true));
        assert_eq!(fast.allows("team", &users[0]), Some(false));
    }

    #[test]
    fn admins_and_bypass_see_everything() {
        let r = records();
        assert!(may_use(
            &r,
            &user("root", &[], Role::Admin),
            "private",
            false
        ));
        assert!(may_use(
            &r,
            &user("root", &[], Role::Admin),
            "unregistered",
            false
        ));
        assert!(may_use(
            &r,
            &user("carol", &[], Role::User),
            "unregistered",
            true
        ));
    }
}
