-- public.profiles: no INSERT by anon or authenticated (profiles carry the tenant and the role; they are written by
-- the backend (service_role)).
-- Their privileges are already revoked (01_roles_grants.sql); this restrictive policy is the second lock: it holds
-- even if a privilege or a permissive policy is added by mistake, because restrictive policies AND with the rest.
DROP POLICY IF EXISTS guardian_insert ON public.profiles;
CREATE POLICY guardian_insert ON public.profiles
  AS RESTRICTIVE FOR INSERT TO anon, authenticated
  WITH CHECK (false);
