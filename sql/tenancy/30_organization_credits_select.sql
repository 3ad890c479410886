-- public.organization_credits: who reads which rows.
-- Members read their own organization's credits; super_admin reads all.
-- Replaces the live policy "Authenticated users can view credits" (USING (true): every tenant's credits to
-- every signed-in user), which is dropped here in the same transaction, so there is no moment without a policy.
DROP POLICY IF EXISTS "Authenticated users can view credits" ON public.organization_credits;
DROP POLICY IF EXISTS guardian_select ON public.organization_credits;
CREATE POLICY guardian_select ON public.organization_credits
  AS PERMISSIVE FOR SELECT TO authenticated
  USING (organization_id = (SELECT guardian_rls.current_org_id()) OR (SELECT guardian_rls.is_super_admin()));
