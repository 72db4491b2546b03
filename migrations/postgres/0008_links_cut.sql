-- Links past the per-page cap (TRAWL_MAX_LINKS_PER_PAGE) were not followed:
-- how many, on the page that had them.
ALTER TABLE pages ADD COLUMN links_cut integer NOT NULL DEFAULT 0;
