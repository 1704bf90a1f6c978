-- Spend per UTC day, user, key and model: summed by the gateway and added in batches.
-- `key_id` is '' for a caller without a named key (single-user mode). `input_tokens`
-- counts every prompt token, `cached_tokens` the cached part of them; `estimated` counts
-- the requests whose usage was estimated (a metered answer that ended without usage).
CREATE TABLE spend (
    day TEXT NOT NULL,
    user_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    estimated BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (day, user_id, key_id, model)
);
CREATE INDEX spend_user ON spend (user_id, day);
CREATE INDEX spend_key ON spend (key_id, day);
