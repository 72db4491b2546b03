-- The budget that cut a crawl short (maxPages, maxDepth), if one did.
ALTER TABLE crawls ADD COLUMN limit_reached TEXT;
