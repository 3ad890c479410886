-- Rollback step 3, one transaction: consume_credits_rpc becomes again the v1 two-argument function, byte for byte
-- the definition recorded by the backup (guardian.rollback_backup names it), with its COMMENT; the v2 companions go;
-- the catalogue's prices are the backup's again.
--
-- Privileges: EXECUTE is granted again to every role the backup recorded, except anon and PUBLIC: the migration's
-- access fixes are kept (tenant isolation, no EXECUTE for anon or PUBLIC; README "Rollback"). Roles that could
-- execute v1 only through PUBLIC (the default ACL) get it explicitly if they are the application's
-- (authenticated, service_role), so the application keeps calling it.
--
-- Prices: every credit_actions row the backup holds gets its backed-up credits_cost back; action types the
-- migration added (legacy names callers send) stay, at the price they were inserted with.
DO $rb$
DECLARE
  bk text := current_setting('guardian.rollback_backup');
  d text;
  acl text;
  cmt text;
  g text;
  restored_prices integer;
BEGIN
  SELECT f ->> 'definition', f ->> 'acl', f ->> 'comment' INTO d, acl, cmt
    FROM guardian.backups b CROSS JOIN LATERAL jsonb_array_elements(b.functions) f
   WHERE b.backup_id = bk AND f ->> 'signature' = 'consume_credits_rpc(uuid,text)';
  IF d IS NULL THEN
    RAISE EXCEPTION 'backup % holds no definition of consume_credits_rpc(uuid,text) to restore', bk;
  END IF;
  DROP FUNCTION IF EXISTS public.consume_credits_batch(uuid, jsonb);
  DROP FUNCTION IF EXISTS public.consume_credits_rpc(uuid, text, integer, text);
  EXECUTE d;
  EXECUTE format('COMMENT ON FUNCTION public.consume_credits_rpc(uuid, text) IS %L', cmt);

  REVOKE ALL ON FUNCTION public.consume_credits_rpc(uuid, text) FROM PUBLIC;
  REVOKE ALL ON FUNCTION public.consume_credits_rpc(uuid, text) FROM anon;
  FOR g IN
    SELECT DISTINCT r.rolname
      FROM aclexplode(coalesce(acl::aclitem[], acldefault('f', (SELECT p.proowner FROM pg_catalog.pg_proc p
                                                                 WHERE p.oid = 'public.consume_credits_rpc(uuid,text)'::regprocedure)))) a
      JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
     WHERE a.privilege_type = 'EXECUTE' AND r.rolname NOT IN ('anon')
    UNION
    -- PUBLIC could execute it: the application's roles keep that right explicitly.
    SELECT x FROM unnest(ARRAY['authenticated', 'service_role']) x
     WHERE EXISTS (SELECT 1 FROM aclexplode(coalesce(acl::aclitem[], acldefault('f', 10::oid))) a
                    WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = x)
  LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION public.consume_credits_rpc(uuid, text) TO %I', g);
  END LOOP;

  EXECUTE format($q$UPDATE public.credit_actions a SET credits_cost = b.credits_cost
                      FROM %I.credit_actions b
                     WHERE b.action_type = a.action_type AND a.credits_cost IS DISTINCT FROM b.credits_cost$q$, bk);
  GET DIAGNOSTICS restored_prices = ROW_COUNT;
  PERFORM set_config('guardian.rollback_prices_restored', restored_prices::text, true);
END
$rb$;
