-- public.profiles: a super_admin deletes profiles, as the CRM's own policies allowed; no other user. The backend
-- (service_role) bypasses row level security.
DROP POLICY IF EXISTS guardian_delete ON public.profiles;
CREATE POLICY guardian_delete ON public.profiles
  AS PERMISSIVE FOR DELETE TO authenticated
  USING ((SELECT guardian_rls.is_super_admin()));
