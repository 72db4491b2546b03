-- The vector index beside the database (`<db>.vectors`): every chunk whose
-- vector appears, changes or goes is queued here, in order, for the index to
-- catch up with; the index's file names the last change it holds. The token
-- ties the file to this database: a file left from another one is rebuilt.
CREATE TABLE vector_changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id INTEGER NOT NULL
);
CREATE TABLE vector_index (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT NOT NULL
);
INSERT INTO vector_index (id, token) VALUES (1, lower(hex(randomblob(16))));
CREATE TRIGGER chunks_vector_ai AFTER INSERT ON chunks WHEN new.embedding IS NOT NULL BEGIN
    INSERT INTO vector_changes (chunk_id) VALUES (new.id);
END;
CREATE TRIGGER chunks_vector_au AFTER UPDATE OF embedding, model ON chunks BEGIN
    INSERT INTO vector_changes (chunk_id) VALUES (new.id);
END;
CREATE TRIGGER chunks_vector_ad AFTER DELETE ON chunks WHEN old.embedding IS NOT NULL BEGIN
    INSERT INTO vector_changes (chunk_id) VALUES (old.id);
END;
