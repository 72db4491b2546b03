-- The production schema. The embedding columns and their HNSW indexes are
-- added at start by the store, once the embedder's dimension is known (see
-- trawl_settings): a vector(N) column needs N, and N is a deployment choice.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE trawl_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- ids are UUID v7 text, so ordering by id is ordering by creation.
CREATE TABLE crawls (
    id                TEXT PRIMARY KEY,
    tenant            TEXT,
    url               TEXT NOT NULL,
    request           JSONB NOT NULL,
    status            TEXT NOT NULL
                      CHECK (status IN ('queued', 'running', 'stopping', 'completed', 'failed', 'cancelled')),
    stage             TEXT NOT NULL,
    percentage        DOUBLE PRECISION NOT NULL DEFAULT 0,
    pages_crawled     BIGINT NOT NULL DEFAULT 0,
    pages_failed      BIGINT NOT NULL DEFAULT 0,
    pages_skipped     BIGINT NOT NULL DEFAULT 0,
    pages_queued      BIGINT NOT NULL DEFAULT 0,
    chunks_stored     BIGINT NOT NULL DEFAULT 0,
    code_examples     BIGINT NOT NULL DEFAULT 0,
    chunks_unembedded BIGINT NOT NULL DEFAULT 0,
    current_url       TEXT,
    message           TEXT,
    error             TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    started_at        TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX crawls_by_status ON crawls (status, id);
CREATE INDEX crawls_by_tenant ON crawls (tenant, id);

-- A site (host) as a tenant knows it; pages hang off both their crawl and
-- their source.
CREATE TABLE sources (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant     TEXT NOT NULL DEFAULT '',
    host       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant, host)
);

CREATE TABLE pages (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    crawl_id     TEXT NOT NULL REFERENCES crawls (id) ON DELETE CASCADE,
    source_id    BIGINT REFERENCES sources (id) ON DELETE CASCADE,
    url          TEXT NOT NULL,
    final_url    TEXT,
    status       TEXT NOT NULL CHECK (status IN ('crawled', 'failed', 'skipped')),
    http_status  INTEGER,
    depth        INTEGER NOT NULL,
    title        TEXT,
    description  TEXT,
    content_type TEXT,
    format       TEXT,
    content      TEXT,
    bytes        BIGINT,
    error        TEXT,
    source       TEXT,
    chunk_count  INTEGER NOT NULL DEFAULT 0,
    code_count   INTEGER NOT NULL DEFAULT 0,
    fetched_at   TIMESTAMPTZ NOT NULL,
    -- One row per URL per crawl: a retried batch or a re-crawl replaces.
    UNIQUE (crawl_id, url)
);
CREATE INDEX pages_by_url ON pages (url);
CREATE INDEX pages_by_source ON pages (source_id);

CREATE TABLE chunks (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_id      BIGINT NOT NULL REFERENCES pages (id) ON DELETE CASCADE,
    crawl_id     TEXT NOT NULL REFERENCES crawls (id) ON DELETE CASCADE,
    url          TEXT NOT NULL,
    source       TEXT NOT NULL,
    title        TEXT,
    chunk_index  INTEGER NOT NULL,
    heading_path TEXT NOT NULL,
    content      TEXT NOT NULL,
    char_count   INTEGER NOT NULL,
    model        TEXT,
    -- Whether the vector is in the HNSW index yet. Rows come in unindexed, so
    -- that a crawl's writes never wait on graph inserts; the store's indexer
    -- moves them in behind it, and searches scan the unindexed tail exactly.
    indexed      BOOLEAN NOT NULL DEFAULT false,
    tsv          TSVECTOR GENERATED ALWAYS AS (
                     setweight(to_tsvector('english', content), 'A')
                     || setweight(to_tsvector('english', coalesce(title, '') || ' ' || heading_path), 'B')
                 ) STORED,
    UNIQUE (page_id, chunk_index)
);
CREATE INDEX chunks_tsv ON chunks USING gin (tsv);
CREATE INDEX chunks_by_crawl ON chunks (crawl_id);
CREATE INDEX chunks_by_url ON chunks (url);

CREATE TABLE code_examples (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_id        BIGINT NOT NULL REFERENCES pages (id) ON DELETE CASCADE,
    crawl_id       TEXT NOT NULL REFERENCES crawls (id) ON DELETE CASCADE,
    url            TEXT NOT NULL,
    source         TEXT NOT NULL,
    language       TEXT NOT NULL,
    code           TEXT NOT NULL,
    context_before TEXT NOT NULL,
    context_after  TEXT NOT NULL,
    model          TEXT,
    tsv            TSVECTOR GENERATED ALWAYS AS (
                       setweight(to_tsvector('simple', code), 'A')
                       || setweight(to_tsvector('english', context_before || ' ' || context_after), 'B')
                   ) STORED
);
CREATE INDEX code_tsv ON code_examples USING gin (tsv);
CREATE INDEX code_by_crawl ON code_examples (crawl_id, language);
CREATE INDEX code_by_page ON code_examples (page_id);
CREATE INDEX code_by_url ON code_examples (url);
