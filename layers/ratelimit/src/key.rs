//! [`LimitKey`]: who a request's caller is, for the counts, and their limits.

use http::Extensions;
use tower_openai_core::User;

use crate::Limits;

/// Names a request's caller (the key their counts are kept under) and their limits, from the
/// request's extensions; `None`: not limited.
///
/// Implemented for closures `Fn(&Extensions) -> Option<(String, Limits)>`, and by
/// [`PerUser`] (every [`User`] the same limits).
pub trait LimitKey {
    /// The caller's key and limits, if they are limited.
    fn key(&self, extensions: &Extensions) -> Option<(String, Limits)>;
}

impl<F> LimitKey for F
where
    F: Fn(&Extensions) -> Option<(String, Limits)>,
{
    fn key(&self, extensions: &Extensions) -> Option<(String, Limits)> {
        self(extensions)
    }
}

/// Every [`User`] (by id) the same limits; a request without a user is not limited.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerUser(pub Limits);

impl LimitKey for PerUser {
    fn key(&self, extensions: &Extensions) -> Option<(String, Limits)> {
        if self.0.is_unlimited() {
            return None;
        }
        let user = extensions.get::<User>()?;
        Some((user.id.to_string(), self.0.clone()))
    }
}
