-- Usage-record retention, and partition upkeep that keeps records out of the DEFAULT partition.
--
-- Retention is gateway-wide (every tenant's records) and needs DROP TABLE, which only the owner
-- may run: tollgate_app owns nothing, so it calls tollgate_usage_retention (SECURITY DEFINER)
-- and cannot drop, detach or delete anything itself. The gateway's retention job
-- (tollgate_core::retention) calls both functions at start-up and then hourly, on every node.

-- Rows of DEFAULT are found by time (retention, and moving a month out of it below); it is
-- empty while the monthly partitions are kept ready, so this index costs nothing then.
CREATE INDEX IF NOT EXISTS usage_records_default_at_idx ON usage_records_default (at);

-- Replaces 0002's version (same signature, so its privileges stay):
-- - bounds are computed in UTC whatever the caller's TimeZone setting, so partitions created by
--   different sessions never overlap or leave gaps;
-- - a month whose rows already spilled into DEFAULT (the gateway ran past the prepared months)
--   gets its partition anyway: the rows move into a new table that is then attached (creating
--   the partition directly would fail on them, and so would every later month);
-- - one month failing (e.g. an overlapping partition someone created by hand) is a WARNING and
--   the other months are still created;
-- - nodes take turns (every node calls this at start-up and hourly).
CREATE OR REPLACE FUNCTION tollgate_ensure_usage_partitions(from_month date, months integer)
RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    SET TimeZone = 'UTC'
AS $$
DECLARE
    m date := date_trunc('month', from_month)::date;
    next_m date;
    part text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tollgate_ensure_usage_partitions'));
    FOR i IN 0 .. greatest(months, 0) - 1 LOOP
        next_m := (m + interval '1 month')::date;
        part := 'usage_records_' || to_char(m, 'YYYY_MM');
        IF to_regclass(format('public.%I', part)) IS NULL THEN
            BEGIN
                IF EXISTS (SELECT 1 FROM public.usage_records_default WHERE at >= m AND at < next_m) THEN
                    EXECUTE format('CREATE TABLE public.%I (LIKE public.usage_records)', part);
                    EXECUTE format(
                        'WITH moved AS (DELETE FROM public.usage_records_default WHERE at >= %L AND at < %L RETURNING *) '
                        'INSERT INTO public.%I SELECT * FROM moved', m, next_m, part);
                    EXECUTE format(
                        'ALTER TABLE public.usage_records ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
                        part, m, next_m);
                ELSE
                    EXECUTE format(
                        'CREATE TABLE public.%I PARTITION OF public.usage_records FOR VALUES FROM (%L) TO (%L)',
                        part, m, next_m);
                END IF;
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING 'tollgate: could not create the usage partition %: %', part, SQLERRM;
            END;
        END IF;
        m := next_m;
    END LOOP;
END
$$;

-- Removes every usage record older than `cutoff`, of every tenant:
-- - a partition whose range ends at or before the cutoff is dropped whole (its rows are counted
--   first, for the report); its bound guarantees it holds no newer row;
-- - the partition straddling the cutoff, the DEFAULT partition, and any partition whose bound
--   is not a plain FROM (..) TO (..) range lose their older rows by DELETE (at most a month of
--   rows in the straddling one; DEFAULT is near-empty while partitions are kept ready);
-- - partitions starting at or after the cutoff are not touched.
-- Ranges come from each partition's bound (pg_get_expr(relpartbound)), not its name, so a
-- partition created by hand or in another time zone is judged by what it really holds.
-- The cutoff must be at least a day old (as tollgate_types::ports::usage::MIN_RETENTION_AGE):
-- even the app role calling this cannot wipe current usage. One node at a time: a node that
-- finds the lock taken returns an empty report (the other is doing the work).
-- Order matters: DELETEs first, DROPs last, because dropping a partition locks the whole table
-- exclusively until commit; lock_timeout bounds the wait for that lock (a partition whose lock
-- is not granted in time stays, with a WARNING, for the next run).
CREATE FUNCTION tollgate_usage_retention(
    cutoff timestamptz,
    OUT deleted_rows bigint,
    OUT dropped_partitions text[]
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    SET TimeZone = 'UTC'
    SET DateStyle = 'ISO, YMD'
    SET lock_timeout = '5s'
AS $$
DECLARE
    part record;
    bounds text[];
    lower_bound timestamptz;
    upper_bound timestamptz;
    n bigint;
    drop_schemas text[] := '{}';
    drop_names text[] := '{}';
BEGIN
    deleted_rows := 0;
    dropped_partitions := '{}';
    IF cutoff IS NULL OR cutoff > now() - interval '1 day' THEN
        RAISE EXCEPTION 'tollgate_usage_retention: the cutoff must be at least a day in the past, not %', cutoff
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtext('tollgate_usage_retention')) THEN
        RETURN;
    END IF;

    FOR part IN
        SELECT ns.nspname AS schema_name, c.relname AS table_name, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_namespace ns ON ns.oid = c.relnamespace
        WHERE i.inhparent = 'public.usage_records'::regclass
        ORDER BY c.relname
    LOOP
        -- e.g. FOR VALUES FROM ('2026-10-01 00:00:00+00') TO ('2026-11-01 00:00:00+00'), printed
        -- and read back under this function's DateStyle and TimeZone. DEFAULT and MINVALUE /
        -- MAXVALUE bounds do not match: such a partition is never dropped, only DELETEd from.
        bounds := regexp_match(part.bound, '^FOR VALUES FROM \(''([^'']+)''\) TO \(''([^'']+)''\)$');
        IF bounds IS NULL THEN
            lower_bound := '-infinity';
            upper_bound := 'infinity';
        ELSE
            lower_bound := bounds[1]::timestamptz;
            upper_bound := bounds[2]::timestamptz;
        END IF;
        IF upper_bound <= cutoff THEN
            drop_schemas := drop_schemas || part.schema_name::text;
            drop_names := drop_names || part.table_name::text;
        ELSIF lower_bound < cutoff THEN
            EXECUTE format('DELETE FROM %I.%I WHERE at < $1', part.schema_name, part.table_name) USING cutoff;
            GET DIAGNOSTICS n = ROW_COUNT;
            deleted_rows := deleted_rows + n;
        END IF;
    END LOOP;

    FOR i IN 1 .. coalesce(array_length(drop_names, 1), 0) LOOP
        BEGIN
            EXECUTE format('SELECT count(*) FROM %I.%I', drop_schemas[i], drop_names[i]) INTO n;
            EXECUTE format('DROP TABLE %I.%I', drop_schemas[i], drop_names[i]);
            deleted_rows := deleted_rows + n;
            dropped_partitions := dropped_partitions || drop_names[i];
        EXCEPTION WHEN lock_not_available THEN
            RAISE WARNING 'tollgate: usage partition % is busy; retention drops it on a later run', drop_names[i];
        END;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION tollgate_usage_retention(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tollgate_usage_retention(timestamptz) TO tollgate_app;
