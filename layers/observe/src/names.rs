//! The metric names [`ObserveLayer`](crate::ObserveLayer) records, with their labels.
//!
//! `route` is the model route's path (`chat/completions`, `models`, …), `passthrough`, or
//! `other` (a request no route was recognised for: an admin route, a refused path);
//! `connection` is the connection's index (empty when none was selected); `model` is the
//! model as the caller named it once select routed it (a model the catalog lists, so a caller
//! cannot grow the label set), else empty; `user` is the caller's id.

/// Counter `{route, model, connection, status}`: requests, counted when their body ends.
pub const REQUESTS_TOTAL: &str = "gateway_requests_total";
/// Histogram `{route, model, connection}`: from the request to the end of its body, seconds.
pub const REQUEST_DURATION_SECONDS: &str = "gateway_request_duration_seconds";
/// Histogram `{route, model, connection}`: from the request to the first body byte, seconds.
pub const TIME_TO_FIRST_BYTE_SECONDS: &str = "gateway_time_to_first_byte_seconds";
/// Counter `{direction = input | output, model, connection, user}`: tokens the upstreams
/// reported in `usage`.
pub const TOKENS_TOTAL: &str = "gateway_tokens_total";
/// Gauge `{user, model}` that only goes up: USD the answers cost, at the prices in use (a
/// gauge because the `metrics` facade's counters count whole numbers; read it with
/// `increase()`/`rate()` as a counter).
pub const SPEND_USD_TOTAL: &str = "gateway_spend_usd_total";
/// Counter `{model}`: tokens (input + output) of answers whose model has no price, while
/// prices are in use.
pub const UNPRICED_TOKENS_TOTAL: &str = "gateway_unpriced_tokens_total";
/// Gauge: event streams in flight.
pub const STREAMS_ACTIVE: &str = "gateway_streams_active";
/// Counter `{outcome}`: event streams by how they ended (`completed`, `upstream_broke`,
/// `caller_left`, `shutdown`).
pub const STREAM_OUTCOMES_TOTAL: &str = "gateway_stream_outcomes_total";
/// Counter `{connection, kind = connect | timeout | protocol | stream}`: upstream failures
/// (`stream`: a body that broke off after its head went out).
pub const UPSTREAM_ERRORS_TOTAL: &str = "gateway_upstream_errors_total";
/// Gauge `{connection}`: 1 when the connection's last model-list fetch succeeded (recorded by
/// the application from its catalog's health, e.g. when `/metrics` is scraped).
pub const CONNECTION_UP: &str = "gateway_connection_up";

/// Every name above, for checks (a dashboard's queries name only these).
pub const ALL: &[&str] = &[
    REQUESTS_TOTAL,
    REQUEST_DURATION_SECONDS,
    TIME_TO_FIRST_BYTE_SECONDS,
    TOKENS_TOTAL,
    SPEND_USD_TOTAL,
    UNPRICED_TOKENS_TOTAL,
    STREAMS_ACTIVE,
    STREAM_OUTCOMES_TOTAL,
    UPSTREAM_ERRORS_TOTAL,
    CONNECTION_UP,
];

/// Describe each metric to the installed recorder (its `# HELP` line).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS_TOTAL,
        "Requests, counted when their response body ends"
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "From the request to the end of its response body"
    );
    describe_histogram!(
        TIME_TO_FIRST_BYTE_SECONDS,
        Unit::Seconds,
        "From the request to the first byte of its response body"
    );
    describe_counter!(TOKENS_TOTAL, "Tokens the upstreams reported in usage");
    describe_gauge!(
        SPEND_USD_TOTAL,
        "USD the answers cost at the prices in use (only goes up)"
    );
    describe_counter!(
        UNPRICED_TOKENS_TOTAL,
        "Tokens of answers whose model has no price"
    );
    describe_gauge!(STREAMS_ACTIVE, "Event streams in flight");
    describe_counter!(STREAM_OUTCOMES_TOTAL, "Event streams by how they ended");
    describe_counter!(
        UPSTREAM_ERRORS_TOTAL,
        "Upstream failures by connection and kind"
    );
    describe_gauge!(
        CONNECTION_UP,
        "1 when the connection's last model-list fetch succeeded"
    );
}
