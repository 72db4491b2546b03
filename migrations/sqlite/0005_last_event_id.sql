-- The id of a crawl's final event, so that a status read from the store later
-- carries the same eventId the live events had.
ALTER TABLE crawls ADD COLUMN last_event_id BIGINT;
