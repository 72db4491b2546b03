-- Pages rendered in Chromium say so (render "browser", or "auto" for pages
-- that needed scripts).
ALTER TABLE pages ADD COLUMN rendered INTEGER NOT NULL DEFAULT 0;
