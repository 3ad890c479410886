-- public.credit_consumption_logs: who reads which rows.
-- Members read their own organization's consumption; super_admin reads all
-- (the arm's form: sql/tenancy/00_helpers.sql).
DROP POLICY IF EXISTS guardian_select ON public.credit_consumption_logs;
CREATE POLICY guardian_select ON public.credit_consumption_logs
  AS PERMISSIVE FOR SELECT TO authenticated
  USING (organization_id = (SELECT guardian_rls.current_org_id())
         OR (SELECT guardian_rls.is_super_admin()) IS DISTINCT FROM false);
