-- A source is what one tenant keeps from one site: its start URL, its crawl
-- settings, and its crawls over time (whose pages are its content). The
-- tenant is '' for an open service, so that (tenant, url) is one key.
CREATE TABLE sources (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant     TEXT NOT NULL DEFAULT '',
    url        TEXT NOT NULL,
    name       TEXT NOT NULL,
    tags       TEXT NOT NULL DEFAULT '[]',
    request    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (tenant, url)
);
CREATE INDEX sources_by_tenant ON sources (tenant, id);

-- Crawls from before sources have none.
ALTER TABLE crawls ADD COLUMN source_id TEXT REFERENCES sources (id) ON DELETE CASCADE;
CREATE INDEX crawls_by_source ON crawls (source_id, id);

-- The SHA-256 of the stored markdown, hex: what a refresh compares.
ALTER TABLE pages ADD COLUMN content_hash TEXT;

-- A refresh is a crawl of a source with its settings that, when it
-- completes, removes what the site no longer has. Every crawl of a source
-- counts its pages against what the source kept: new, changed, unchanged
-- (kept with their chunks and vectors), and the vectors it had to make.
ALTER TABLE crawls ADD COLUMN refresh INTEGER NOT NULL DEFAULT 0;
ALTER TABLE crawls ADD COLUMN pages_new INTEGER NOT NULL DEFAULT 0;
ALTER TABLE crawls ADD COLUMN pages_changed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE crawls ADD COLUMN pages_unchanged INTEGER NOT NULL DEFAULT 0;
ALTER TABLE crawls ADD COLUMN pages_removed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE crawls ADD COLUMN chunks_embedded INTEGER NOT NULL DEFAULT 0;

-- The validators a page was served with, for a conditional GET next time.
ALTER TABLE pages ADD COLUMN etag TEXT;
ALTER TABLE pages ADD COLUMN last_modified TEXT;
-- Where a page leads (one URL a line), so that a page a refresh finds
-- unchanged (304) still leads on without being fetched whole.
ALTER TABLE pages ADD COLUMN links TEXT;

-- A source's refresh schedule: an interval ("6h") or a cron expression, and
-- when it is next due (what every instance's scheduler looks for).
ALTER TABLE sources ADD COLUMN refresh_every TEXT;
ALTER TABLE sources ADD COLUMN cron TEXT;
ALTER TABLE sources ADD COLUMN next_refresh_at TEXT;
CREATE INDEX sources_due ON sources (next_refresh_at) WHERE next_refresh_at IS NOT NULL;

-- The SHA-256 of the bytes a page's markdown was made from: the same bytes
-- next time are the same page, without extracting it again.
ALTER TABLE pages ADD COLUMN body_hash TEXT;
