-- The content pipeline: each crawled page's chunks and code examples, with
-- FTS5 indexes for text search and room for an embedding per row.
ALTER TABLE crawls ADD COLUMN chunks_unembedded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pages ADD COLUMN description TEXT;
ALTER TABLE pages ADD COLUMN source TEXT;
ALTER TABLE pages ADD COLUMN chunk_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pages ADD COLUMN code_count INTEGER NOT NULL DEFAULT 0;
CREATE INDEX pages_by_url ON pages (url);

CREATE TABLE chunks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    page_id      INTEGER NOT NULL REFERENCES pages (id) ON DELETE CASCADE,
    crawl_id     TEXT NOT NULL,
    url          TEXT NOT NULL,
    source       TEXT NOT NULL,
    title        TEXT,
    chunk_index  INTEGER NOT NULL,
    heading_path TEXT NOT NULL,
    content      TEXT NOT NULL,
    char_count   INTEGER NOT NULL,
    embedding    BLOB,
    model        TEXT
);
CREATE INDEX chunks_by_page ON chunks (page_id, chunk_index);
CREATE INDEX chunks_by_crawl ON chunks (crawl_id);
CREATE INDEX chunks_without_vectors ON chunks (id) WHERE embedding IS NULL;

CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    content, heading_path, title, content = 'chunks', content_rowid = 'id', tokenize = 'porter unicode61'
);
CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, content, heading_path, title) VALUES (new.id, new.content, new.heading_path, new.title);
END;
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content, heading_path, title)
    VALUES ('delete', old.id, old.content, old.heading_path, old.title);
END;

CREATE TABLE code_examples (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    page_id        INTEGER NOT NULL REFERENCES pages (id) ON DELETE CASCADE,
    crawl_id       TEXT NOT NULL,
    url            TEXT NOT NULL,
    source         TEXT NOT NULL,
    language       TEXT NOT NULL,
    code           TEXT NOT NULL,
    context_before TEXT NOT NULL,
    context_after  TEXT NOT NULL,
    embedding      BLOB,
    model          TEXT
);
CREATE INDEX code_by_page ON code_examples (page_id);
CREATE INDEX code_by_crawl ON code_examples (crawl_id, language);

CREATE VIRTUAL TABLE code_fts USING fts5 (
    code, context_before, context_after, content = 'code_examples', content_rowid = 'id', tokenize = 'unicode61'
);
CREATE TRIGGER code_ai AFTER INSERT ON code_examples BEGIN
    INSERT INTO code_fts (rowid, code, context_before, context_after)
    VALUES (new.id, new.code, new.context_before, new.context_after);
END;
CREATE TRIGGER code_ad AFTER DELETE ON code_examples BEGIN
    INSERT INTO code_fts (code_fts, rowid, code, context_before, context_after)
    VALUES ('delete', old.id, old.code, old.context_before, old.context_after);
END;
