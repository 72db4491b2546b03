-- Pages rendered in Chromium say so (render "browser", or "auto" for pages
-- that needed scripts).
ALTER TABLE pages ADD COLUMN rendered boolean NOT NULL DEFAULT false;
