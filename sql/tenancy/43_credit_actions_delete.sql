-- public.credit_actions: no DELETE by anon or authenticated (the catalogue is managed by the migration
-- (guardian:actions), never by users).
-- Their privileges are already revoked (01_roles_grants.sql); this restrictive policy is the second lock: it holds
-- even if a privilege or a permissive policy is added by mistake, because restrictive policies AND with the rest.
DROP POLICY IF EXISTS guardian_delete ON public.credit_actions;
CREATE POLICY guardian_delete ON public.credit_actions
  AS RESTRICTIVE FOR DELETE TO anon, authenticated
  USING (false);
