-- The PDF page a chunk starts on (NULL for other documents).
ALTER TABLE chunks ADD COLUMN page integer;
