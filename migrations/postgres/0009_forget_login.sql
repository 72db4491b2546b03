-- A crawl's login (its request's `headers`, `cookies` and `basicAuth`) is
-- kept only while the crawl can still run, for another instance to resume
-- it: whatever path ends a crawl, its stored request loses the login then.
CREATE FUNCTION crawls_forget_login() RETURNS trigger AS $$
BEGIN
    NEW.request := NEW.request - 'headers' - 'cookies' - 'basicAuth';
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER crawls_forget_login
    BEFORE INSERT OR UPDATE ON crawls
    FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'failed', 'cancelled')
          AND (NEW.request ? 'headers' OR NEW.request ? 'cookies' OR NEW.request ? 'basicAuth'))
    EXECUTE FUNCTION crawls_forget_login();

UPDATE crawls SET request = request - 'headers' - 'cookies' - 'basicAuth'
 WHERE status IN ('completed', 'failed', 'cancelled');
