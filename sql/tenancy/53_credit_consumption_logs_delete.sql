-- public.credit_consumption_logs: no DELETE by anon or authenticated (credits move only through consume_credits_rpc
-- / consume_credits_batch (SECURITY DEFINER) and the migration).
-- Their privileges are already revoked (01_roles_grants.sql); this restrictive policy is the second lock: it holds
-- even if a privilege or a permissive policy is added by mistake, because restrictive policies AND with the rest.
DROP POLICY IF EXISTS guardian_delete ON public.credit_consumption_logs;
CREATE POLICY guardian_delete ON public.credit_consumption_logs
  AS RESTRICTIVE FOR DELETE TO anon, authenticated
  USING (false);
