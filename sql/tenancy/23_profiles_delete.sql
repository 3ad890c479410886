-- public.profiles: a user deletes its own profile (leaving: it then reads no organization's rows); a super_admin
-- deletes profiles, as the CRM's own policies allowed; no other user. The backend (service_role) bypasses row level
-- security.
DROP POLICY IF EXISTS guardian_delete ON public.profiles;
CREATE POLICY guardian_delete ON public.profiles
  AS PERMISSIVE FOR DELETE TO authenticated
  USING (id = (SELECT auth.uid()) OR (SELECT guardian_rls.is_super_admin()));
