-- Rollback step 3b, in the transaction that restores v1, unless guardian:rollback.function = verbatim: v1's body,
-- signature, result and COMMENT stay byte for byte as backed up (04_restore_v1.sql, md5-checked before this file
-- runs), and it gets a pinned search_path that ends with pg_temp. v1 is SECURITY DEFINER and reads unqualified table
-- names; without a pinned path a caller's temporary table of the same name (with a trigger calling a pg_temp
-- function) would be found first and run the caller's code as v1's owner (contract, "Rollback"). The path is v1's
-- own, if it had one, without pg_temp, or public; then pg_temp, last.
DO $pin$
DECLARE
  f regprocedure := 'public.consume_credits_rpc(uuid,text)'::regprocedure;
  sp text;
  path text[];
BEGIN
  SELECT substr(c, length('search_path=') + 1) INTO sp
    FROM pg_catalog.pg_proc p, unnest(p.proconfig) c
   WHERE p.oid = f AND c LIKE 'search_path=%';
  IF sp IS NULL THEN
    path := ARRAY['public'];
  ELSE
    SELECT coalesce(array_agg(z.x ORDER BY t.o), '{}') INTO path
      FROM unnest(string_to_array(sp, ',')) WITH ORDINALITY AS t(y, o)
     CROSS JOIN LATERAL (SELECT btrim(btrim(t.y), '"') AS x) z
     WHERE z.x <> '' AND z.x <> 'pg_temp';
  END IF;
  EXECUTE format('ALTER FUNCTION %s SET search_path TO %s', f,
                 (SELECT string_agg(quote_literal(x), ', ' ORDER BY o)
                    FROM unnest(path || 'pg_temp'::text) WITH ORDINALITY AS u(x, o)));
END
$pin$;
