-- Rollback step 3, one transaction: consume_credits_rpc becomes again the v1 two-argument function, byte for byte
-- the definition recorded by the backup (guardian.rollback_backup names it), and the v2 companions go. Privileges
-- stay hardened: EXECUTE for authenticated and service_role, none for anon or PUBLIC (tenant isolation is not
-- rolled back; see docs/runbook.md).
DO $rb$
DECLARE
  bk text := current_setting('guardian.rollback_backup');
  d text;
BEGIN
  SELECT f ->> 'definition' INTO d
    FROM guardian.backups b CROSS JOIN LATERAL jsonb_array_elements(b.functions) f
   WHERE b.backup_id = bk AND f ->> 'signature' = 'consume_credits_rpc(uuid,text)';
  IF d IS NULL THEN
    RAISE EXCEPTION 'backup % holds no definition of consume_credits_rpc(uuid,text) to restore', bk;
  END IF;
  DROP FUNCTION IF EXISTS public.consume_credits_batch(uuid, jsonb);
  DROP FUNCTION IF EXISTS public.consume_credits_rpc(uuid, text, integer, text);
  EXECUTE d;
  REVOKE ALL ON FUNCTION public.consume_credits_rpc(uuid, text) FROM PUBLIC;
  REVOKE ALL ON FUNCTION public.consume_credits_rpc(uuid, text) FROM anon;
  GRANT EXECUTE ON FUNCTION public.consume_credits_rpc(uuid, text) TO authenticated, service_role;
END
$rb$;
