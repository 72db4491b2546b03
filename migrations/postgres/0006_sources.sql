-- The host-keyed `sources` of the first schema were written and never read.
-- A source is now what one tenant keeps from one site: its start URL, its
-- crawl settings, and its crawls over time (whose pages are its content).
-- The tenant is '' for an open service, so that (tenant, url) is one key.
ALTER TABLE pages DROP COLUMN source_id;
DROP TABLE sources;

CREATE TABLE sources (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL DEFAULT '',
    url        TEXT NOT NULL,
    name       TEXT NOT NULL,
    tags       JSONB NOT NULL DEFAULT '[]',
    request    JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant, url)
);
CREATE INDEX sources_by_tenant ON sources (tenant, id);

-- Crawls from before sources have none.
ALTER TABLE crawls ADD COLUMN source_id TEXT REFERENCES sources (id) ON DELETE CASCADE;
CREATE INDEX crawls_by_source ON crawls (source_id, id);

-- The SHA-256 of the stored markdown, hex: what a refresh compares.
ALTER TABLE pages ADD COLUMN content_hash TEXT;

-- A crawl's pages in the order they were stored: listings and exports walk it.
CREATE INDEX pages_by_crawl ON pages (crawl_id, id);

-- A refresh is a crawl of a source with its settings that, when it
-- completes, removes what the site no longer has. Every crawl of a source
-- counts its pages against what the source kept: new, changed, unchanged
-- (kept with their chunks and vectors), and the vectors it had to make.
ALTER TABLE crawls ADD COLUMN refresh BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE crawls ADD COLUMN pages_new BIGINT NOT NULL DEFAULT 0;
ALTER TABLE crawls ADD COLUMN pages_changed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE crawls ADD COLUMN pages_unchanged BIGINT NOT NULL DEFAULT 0;
ALTER TABLE crawls ADD COLUMN pages_removed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE crawls ADD COLUMN chunks_embedded BIGINT NOT NULL DEFAULT 0;

-- The validators a page was served with, for a conditional GET next time.
ALTER TABLE pages ADD COLUMN etag TEXT;
ALTER TABLE pages ADD COLUMN last_modified TEXT;

-- A source's refresh schedule: an interval ("6h") or a cron expression, and
-- when it is next due (what every instance's scheduler looks for).
ALTER TABLE sources ADD COLUMN refresh_every TEXT;
ALTER TABLE sources ADD COLUMN cron TEXT;
ALTER TABLE sources ADD COLUMN next_refresh_at TIMESTAMPTZ;
CREATE INDEX sources_due ON sources (next_refresh_at) WHERE next_refresh_at IS NOT NULL;

-- The SHA-256 of the bytes a page's markdown was made from: the same bytes
-- next time are the same page, without extracting it again.
ALTER TABLE pages ADD COLUMN body_hash TEXT;
