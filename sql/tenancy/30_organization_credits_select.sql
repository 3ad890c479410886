-- public.organization_credits: who reads which rows.
-- Members read their own organization's credits; super_admin reads all
-- (the arm's form: sql/tenancy/00_helpers.sql).
-- Every other SELECT policy on the table (the live "Authenticated users can view organization credits", USING
-- (auth.role() = 'authenticated'), which hands every tenant's credits to every signed-in user, or any other name)
-- is dropped first, in this same transaction (components/tenantPolicies.ts ownPoliciesSql), so there is no moment
-- without a policy and no foreign permissive policy left to OR with this one.
DROP POLICY IF EXISTS guardian_select ON public.organization_credits;
CREATE POLICY guardian_select ON public.organization_credits
  AS PERMISSIVE FOR SELECT TO authenticated
  USING (organization_id = (SELECT guardian_rls.current_org_id())
         OR (SELECT guardian_rls.is_super_admin()) IS DISTINCT FROM false);
