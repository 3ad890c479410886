-- public.profiles: who reads which rows. A user reads its own profile; a super_admin reads all. (As the CRM's own
-- policies allowed: members do not read their teammates' profiles, which carry e-mails.)
DROP POLICY IF EXISTS guardian_select ON public.profiles;
CREATE POLICY guardian_select ON public.profiles
  AS PERMISSIVE FOR SELECT TO authenticated
  USING (id = (SELECT auth.uid()) OR (SELECT guardian_rls.is_super_admin()));
