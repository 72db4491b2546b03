-- Several instances share one database. Crawls are a queue: an instance
-- claims a `queued` crawl (FOR UPDATE SKIP LOCKED) and becomes its owner;
-- while the owner's heartbeat is fresh nobody else touches it, and when it
-- is not, another instance takes the crawl over and resumes it.
CREATE TABLE trawl_instances (
    id           TEXT PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE crawls ADD COLUMN owner TEXT;
-- Times the crawl was claimed: 1 for a crawl that ran once. Of those, the
-- times an instance shutting down handed it back to the queue (the others
-- after the first are takeovers from instances that died).
ALTER TABLE crawls ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE crawls ADD COLUMN handoffs INTEGER NOT NULL DEFAULT 0;
CREATE INDEX crawls_unfinished ON crawls (id) WHERE status IN ('queued', 'running', 'stopping');
CREATE INDEX crawls_by_owner ON crawls (owner) WHERE owner IS NOT NULL;

-- The links of a page of a crawl that follows links: a crawl taken over
-- walks its stored pages again without fetching them. One URL per line
-- (a parsed URL holds no raw newline).
ALTER TABLE pages ADD COLUMN links TEXT;
