//! Group's section of a connection's config: `weight` and `priority`.

use serde_json::{Map, Value};
use tower_openai_settings::{ConnectionOptions, OptionsError};

/// The members of a connection's config a model group reads. Neither is an Open WebUI key.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct GroupOptions {
    /// `weight` (default 1, above 0, at most 1000000): within a priority tier, this
    /// connection's share of requests.
    pub weight: f64,
    /// `priority` (default 0, within ±1000000): a group uses a higher number only while every
    /// connection with a lower one is cooling down.
    pub priority: i64,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            weight: 1.0,
            priority: 0,
        }
    }
}

impl ConnectionOptions for GroupOptions {
    fn from_config(config: &Map<String, Value>) -> Result<Self, OptionsError> {
        let mut options = GroupOptions::default();
        if let Some(value) = config.get("weight") {
            options.weight = value
                .as_f64()
                .filter(|w| w.is_finite() && *w > 0.0 && *w <= 1e6)
                .ok_or_else(|| {
                    OptionsError::new("weight", "must be a number above 0 (at most 1000000)")
                })?;
        }
        if let Some(value) = config.get("priority") {
            options.priority = value
                .as_i64()
                .filter(|p| p.unsigned_abs() <= 1_000_000)
                .ok_or_else(|| {
                    OptionsError::new(
                        "priority",
                        "must be a whole number between -1000000 and 1000000",
                    )
                })?;
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn weight_and_priority_are_checked() {
        let parse = |v: Value| GroupOptions::from_config(v.as_object().unwrap());
        let c = parse(json!({"weight": 2.5, "priority": -1})).unwrap();
        assert_eq!((c.weight, c.priority), (2.5, -1));
        assert_eq!(parse(json!({})).unwrap(), GroupOptions::default());
        for bad in [
            json!({"weight": 0}),
            json!({"weight": -1}),
            json!({"weight": "2"}),
            json!({"weight": 1e9}),
            json!({"priority": 1.5}),
            json!({"priority": "high"}),
            json!({"priority": 10_000_000}),
        ] {
            let member = parse(bad.clone()).unwrap_err().member().to_owned();
            assert!(member == "weight" || member == "priority", "{bad}");
        }
    }
}
