//! The metric names the group layer records (through the `metrics` facade).

/// Counter `{connection, result}`: attempts on a grouped model's connections; `result` is
/// `ok`, the failing status (`429`, `500`, `502`, `503`, `504`), or the transport failure
/// (`connect`, `timeout`, `protocol`, `error`).
pub const ATTEMPTS_TOTAL: &str = "gateway_upstream_attempts_total";
/// Counter `{connection}`: requests moved from this connection to the next of their group.
pub const FAILOVERS_TOTAL: &str = "gateway_failovers_total";
/// Counter `{connection}`: cooldowns this connection entered.
pub const COOLDOWNS_TOTAL: &str = "gateway_connection_cooldowns_total";

/// Every name above.
pub const ALL: &[&str] = &[ATTEMPTS_TOTAL, FAILOVERS_TOTAL, COOLDOWNS_TOTAL];

/// Describe each metric to the installed recorder.
pub fn describe() {
    use metrics::describe_counter;
    describe_counter!(
        ATTEMPTS_TOTAL,
        "Attempts on a grouped model's connections, by result"
    );
    describe_counter!(
        FAILOVERS_TOTAL,
        "Requests moved from this connection to the next of their group"
    );
    describe_counter!(COOLDOWNS_TOTAL, "Cooldowns this connection entered");
}
