-- public.credit_actions: who reads which rows.
-- The price catalogue (not tenant data): readable by every signed-in user who belongs to an organization, and by
-- super_admin. A JWT whose user does not exist, or a user without a profile, reads nothing.
DROP POLICY IF EXISTS guardian_select ON public.credit_actions;
CREATE POLICY guardian_select ON public.credit_actions
  AS PERMISSIVE FOR SELECT TO authenticated
  USING ((SELECT guardian_rls.current_org_id()) IS NOT NULL OR (SELECT guardian_rls.is_super_admin()));
