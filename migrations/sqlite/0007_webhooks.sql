-- Each tenant's webhook signing secret ('' for the open service's).
CREATE TABLE webhook_secrets (
    tenant     TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Every webhook delivery, kept so that retries survive a restart. `id` is
-- the idempotency key receivers see (a crawl's started and terminal events
-- can be enqueued once only); `seq` orders a crawl's deliveries, which go
-- out one after the other.
CREATE TABLE webhook_deliveries (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    crawl_id     TEXT NOT NULL,
    tenant       TEXT,
    url          TEXT NOT NULL,
    headers      TEXT NOT NULL,
    event        TEXT NOT NULL,
    body         TEXT NOT NULL,
    page_row     INTEGER,
    status       TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      TEXT NOT NULL,
    last_error   TEXT,
    created_at   TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_at);
CREATE INDEX webhook_deliveries_by_crawl ON webhook_deliveries (crawl_id, seq);
