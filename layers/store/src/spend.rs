//! Spend records: what answers used, summed per UTC day, user, key and model.

use serde::Serialize;

/// What answers of one UTC day, user, key and model used (a row of the spend table, or the
/// part of it one batch adds).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpendRow {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// The caller's user id.
    pub user: String,
    /// The key's id; empty for a caller without a named key (single-user mode).
    pub key: String,
    /// The model as the caller named it.
    pub model: String,
    /// The spend.
    pub totals: SpendTotals,
}

/// Sums of spend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SpendTotals {
    /// Answers.
    pub requests: u64,
    /// Every prompt token, cached ones included.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// The cached part of `input_tokens`.
    pub cached_tokens: u64,
    /// Answers whose usage was estimated (they ended without usage).
    pub estimated_requests: u64,
    /// USD, at the prices in force when each answer ended.
    pub cost_usd: f64,
}

impl SpendTotals {
    /// Add `other` to these sums.
    pub fn add(&mut self, other: &SpendTotals) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(other.cached_tokens);
        self.estimated_requests = self
            .estimated_requests
            .saturating_add(other.estimated_requests);
        self.cost_usd += other.cost_usd;
    }
}

/// What a spend report is grouped by (`GET /admin/spend?group_by=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpendGroup {
    /// Per user.
    User,
    /// Per key.
    Key,
    /// Per model.
    Model,
    /// Per UTC day.
    Day,
}

impl SpendGroup {
    /// `user`, `key`, `model` or `day`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "user" => Some(Self::User),
            "key" => Some(Self::Key),
            "model" => Some(Self::Model),
            "day" => Some(Self::Day),
            _ => None,
        }
    }

    /// The name it is reported under.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Key => "key",
            Self::Model => "model",
            Self::Day => "day",
        }
    }

    #[cfg_attr(not(feature = "sql"), allow(dead_code))]
    pub(crate) fn column(self) -> &'static str {
        match self {
            Self::User => "user_id",
            Self::Key => "key_id",
            Self::Model => "model",
            Self::Day => "day",
        }
    }
}

/// One group of a spend report.
#[derive(Clone, Debug, PartialEq)]
pub struct SpendGroupTotal {
    /// The group's value (a user id, key id, model or day).
    pub group: String,
    /// Its sums.
    pub totals: SpendTotals,
}

/// `YYYY-MM-DD`, checked as a date (what `from` and `to` must be).
pub fn is_day(day: &str) -> bool {
    let b = day.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = day.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    matches!(
        (digits(0..4), digits(5..7), digits(8..10)),
        (Some(_), Some(1..=12), Some(1..=31))
    )
}

#[cfg(test)]
mod tests {
    use super::is_day;

    #[test]
    fn days_are_iso_dates() {
        assert!(is_day("2026-12-06"));
        for bad in [
            "2026-13-01",
            "2026-1-01",
            "2026-12-00",
            "20261206",
            "2026-12-0a",
            "'; --",
        ] {
            assert!(!is_day(bad), "{bad}");
        }
    }
}
