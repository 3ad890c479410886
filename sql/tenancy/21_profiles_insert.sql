-- public.profiles: a new user inserts its own profile (client-side signup), but it cannot name an organization or a
-- role above the lowest ('user'): the profile's organization and role decide the tenant and the rank, and the
-- program's isolation trusts them. A super_admin inserts any profile. The backend (service_role) bypasses row level
-- security and sets them. (The CRM's own policy let a new user name any organization: an escalation, closed here.)
DROP POLICY IF EXISTS guardian_insert ON public.profiles;
CREATE POLICY guardian_insert ON public.profiles
  AS PERMISSIVE FOR INSERT TO authenticated
  WITH CHECK ((id = (SELECT auth.uid()) AND organization_id IS NULL AND coalesce({{profile_role}}, 'user') = 'user')
              OR (SELECT guardian_rls.is_super_admin()));
