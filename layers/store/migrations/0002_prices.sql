-- Model prices, USD per million tokens. `model` is the id callers use; a trailing `*`
-- matches a prefix (the longest match wins). `cached_input` NULL: the input price.
CREATE TABLE prices (
    model TEXT PRIMARY KEY,
    input DOUBLE PRECISION NOT NULL,
    output DOUBLE PRECISION NOT NULL,
    cached_input DOUBLE PRECISION,
    updated_at BIGINT NOT NULL
);
