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
