-- Politeness per host across instances without Redis: a lease per request
-- in flight to a host (at most the per-host limit), and the host's next
-- turn under the politeness delay. Unlogged: leases lapse within a minute,
-- a crash may lose them.
CREATE UNLOGGED TABLE host_leases (
    lease      uuid PRIMARY KEY,
    host       text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX host_leases_host ON host_leases (host);

CREATE UNLOGGED TABLE host_turns (
    host    text PRIMARY KEY,
    next_at timestamptz NOT NULL
);

-- Takes lease `p_lease` on `p_host` if it has fewer than `p_limit` live
-- ones, and the host's next turn: answers the milliseconds until that
-- turn, or -1 without a lease. One host's callers go one at a time.
CREATE FUNCTION trawl_host_lease(p_host text, p_lease uuid, p_limit int, p_ttl_ms int, p_delay_ms int)
RETURNS int AS $$
DECLARE
    now_ts timestamptz := clock_timestamp();
    at_ts  timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('trawl_host:' || p_host, 0));
    DELETE FROM host_leases WHERE host = p_host AND expires_at < now_ts;
    IF (SELECT count(*) FROM host_leases WHERE host = p_host) >= p_limit THEN
        RETURN -1;
    END IF;
    INSERT INTO host_leases (lease, host, expires_at)
    VALUES (p_lease, p_host, now_ts + p_ttl_ms * interval '1 millisecond');
    IF p_delay_ms <= 0 THEN
        RETURN 0;
    END IF;
    SELECT next_at INTO at_ts FROM host_turns WHERE host = p_host;
    at_ts := greatest(coalesce(at_ts, now_ts), now_ts);
    INSERT INTO host_turns (host, next_at) VALUES (p_host, at_ts + p_delay_ms * interval '1 millisecond')
    ON CONFLICT (host) DO UPDATE SET next_at = excluded.next_at;
    DELETE FROM host_turns WHERE next_at < now_ts - interval '1 hour';
    RETURN ceil(extract(epoch FROM (at_ts - now_ts)) * 1000)::int;
END;
$$ LANGUAGE plpgsql;
