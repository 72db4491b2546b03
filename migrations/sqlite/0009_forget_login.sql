-- A crawl's login (its request's `headers`, `cookies` and `basicAuth`) is
-- kept only while the crawl can still run, for another instance to resume
-- it: whatever path ends a crawl, its stored request loses the login then.
CREATE TRIGGER crawls_forget_login
AFTER UPDATE OF status ON crawls
FOR EACH ROW
WHEN NEW.status IN ('completed', 'failed', 'cancelled')
 AND (json_type(NEW.request, '$.headers') IS NOT NULL
      OR json_type(NEW.request, '$.cookies') IS NOT NULL
      OR json_type(NEW.request, '$.basicAuth') IS NOT NULL)
BEGIN
    UPDATE crawls SET request = json_remove(request, '$.headers', '$.cookies', '$.basicAuth') WHERE id = NEW.id;
END;

UPDATE crawls SET request = json_remove(request, '$.headers', '$.cookies', '$.basicAuth')
 WHERE status IN ('completed', 'failed', 'cancelled');
