-- public.organizations: no UPDATE by anon or authenticated (organizations are created and changed by the backend
-- (service_role)).
-- Their privileges are already revoked (01_roles_grants.sql); this restrictive policy is the second lock: it holds
-- even if a privilege or a permissive policy is added by mistake, because restrictive policies AND with the rest.
DROP POLICY IF EXISTS guardian_update ON public.organizations;
CREATE POLICY guardian_update ON public.organizations
  AS RESTRICTIVE FOR UPDATE TO anon, authenticated
  USING (false) WITH CHECK (false);
