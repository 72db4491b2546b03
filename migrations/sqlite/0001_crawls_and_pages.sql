-- Crawls and their pages. Times are RFC 3339 UTC text; ids are UUID v7 text,
-- so ordering by id is ordering by creation.
CREATE TABLE crawls (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant        TEXT,
    url           TEXT NOT NULL,
    request       TEXT NOT NULL,
    status        TEXT NOT NULL,
    stage         TEXT NOT NULL,
    percentage    REAL NOT NULL DEFAULT 0,
    pages_crawled INTEGER NOT NULL DEFAULT 0,
    pages_failed  INTEGER NOT NULL DEFAULT 0,
    pages_skipped INTEGER NOT NULL DEFAULT 0,
    pages_queued  INTEGER NOT NULL DEFAULT 0,
    chunks_stored INTEGER NOT NULL DEFAULT 0,
    code_examples INTEGER NOT NULL DEFAULT 0,
    current_url   TEXT,
    message       TEXT,
    error         TEXT,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    updated_at    TEXT NOT NULL
);
CREATE INDEX crawls_by_status ON crawls (status, id);
CREATE INDEX crawls_by_tenant ON crawls (tenant, id);

CREATE TABLE pages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    crawl_id     TEXT NOT NULL REFERENCES crawls (id) ON DELETE CASCADE,
    url          TEXT NOT NULL,
    final_url    TEXT,
    status       TEXT NOT NULL CHECK (status IN ('crawled', 'failed', 'skipped')),
    http_status  INTEGER,
    depth        INTEGER NOT NULL,
    title        TEXT,
    content_type TEXT,
    format       TEXT,
    content      TEXT,
    bytes        INTEGER,
    error        TEXT,
    fetched_at   TEXT NOT NULL,
    UNIQUE (crawl_id, url)
);
CREATE INDEX pages_by_crawl ON pages (crawl_id, id);
