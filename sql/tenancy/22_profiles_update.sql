-- public.profiles: a user updates its own profile (its name and the like); a super_admin updates any. The columns
-- that decide tenancy and rank (organization_id and the role column) cannot be changed by the user they describe:
-- 30_profiles_guard.sql refuses that change for anyone but a super_admin and the backend. (The CRM's own policy let
-- a member set its own role to super_admin or move into any organization: an escalation, closed here.)
DROP POLICY IF EXISTS guardian_update ON public.profiles;
CREATE POLICY guardian_update ON public.profiles
  AS PERMISSIVE FOR UPDATE TO authenticated
  USING (id = (SELECT auth.uid()) OR (SELECT guardian_rls.is_super_admin()))
  WITH CHECK (id = (SELECT auth.uid()) OR (SELECT guardian_rls.is_super_admin()));
