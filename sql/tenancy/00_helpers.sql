-- Tenancy helpers used by the row level security policies of sql/tenancy/*.
--
-- Who the caller is comes from Supabase's auth.uid() (the `sub` claim of request.jwt.claims) and the caller's row in
-- public.profiles, which is where tenancy lives. A JWT whose user does not exist, or a user without a profile, gets
-- NULL / false from these helpers, so every policy built on them shows that caller nothing.
--
-- Both helpers are SECURITY DEFINER so that a policy can read public.profiles without recursing into the policies of
-- public.profiles itself; they are STABLE (policies wrap them in a scalar sub-select, so they run once per statement)
-- and pin search_path, so no object the caller creates can stand in for the ones they read.
--
-- PL/pgSQL, not SQL: a SQL function that cannot be inlined (SECURITY DEFINER and SET both prevent it) plans its query
-- again in every statement that calls it, where PL/pgSQL keeps the plan for the session. Measured with pgbench, one
-- request calling both helpers: +0.19 to 0.25 ms as SQL functions, +0.08 to 0.09 ms as PL/pgSQL, over a request that
-- calls neither (bench/results/2026-12-06.crm-reads.md has what the policies cost the CRM's reads).
--
-- How a read policy writes its super_admin arm: last, and as `(SELECT guardian_rls.is_super_admin()) IS DISTINCT
-- FROM false` (is_super_admin never returns NULL, so that is true exactly for a super_admin).
--   * Last: an OR stops at its first true arm, and an InitPlan runs when it is first needed, so a member's read of its
--     own organization's rows never calls is_super_admin(): one helper call per statement, not two. Members make
--     nearly all of the CRM's reads; a super_admin's read calls both, once each. (Written first, as it was before,
--     the arm made every member's read call both: pgbench, a member's last 50 log rows against the same
--     read as service_role in one run, 1.11-1.13x with it first and 1.02-1.08x with it last.) The order of the arms
--     changes no row anyone sees: an OR's value does not depend on it.
--   * IS DISTINCT FROM false: the planner cannot know a Param, and estimates a bare `(SELECT ...)` arm true for half of
--     the rows. A member's read already filters on its own organization, so all of its rows pass the policy; at half,
--     the planner took "the newest 50 log rows of my organization" for a read of every row of it and a sort, where
--     with no policy it walks (organization_id, created_at) backwards and stops at 50. IS DISTINCT FROM is estimated
--     as the opposite of an equality, almost every row, which is what the member's read sees. Only the estimate
--     changes: the rows each user sees are the same (test/policy-plans.test.ts compares the plans;
--     bench/results/2026-12-06.crm-reads.md has what each read costs).
--
-- They live in a schema of their own, guardian_rls, because a policy evaluates them with the privileges of the
-- querying role: authenticated needs USAGE on their schema, and the internal schema guardian is closed to it
-- (sql/schema/01_guardian_schema.sql). guardian_rls holds these two functions and nothing else, and is not one of
-- the Data API's exposed schemas.
CREATE SCHEMA IF NOT EXISTS guardian_rls;
REVOKE ALL ON SCHEMA guardian_rls FROM PUBLIC;
GRANT USAGE ON SCHEMA guardian_rls TO authenticated, service_role;

CREATE OR REPLACE FUNCTION guardian_rls.current_org_id()
RETURNS uuid
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
  RETURN (SELECT p.organization_id FROM public.profiles p WHERE p.id = auth.uid());
END
$function$;

CREATE OR REPLACE FUNCTION guardian_rls.is_super_admin()
RETURNS boolean
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
  RETURN coalesce((SELECT {{profile_role:p}} = 'super_admin' FROM public.profiles p WHERE p.id = auth.uid()), false);
END
$function$;

COMMENT ON FUNCTION guardian_rls.current_org_id() IS
  'Organization of the calling user (auth.uid() -> public.profiles.organization_id); NULL for no user or no profile.';
COMMENT ON FUNCTION guardian_rls.is_super_admin() IS
  'Whether the calling user''s profile has the role super_admin; false for no user or no profile.';

-- Only the roles whose policies call them may execute them (anon has no policy that does).
REVOKE ALL ON FUNCTION guardian_rls.current_org_id(), guardian_rls.is_super_admin() FROM PUBLIC;
REVOKE ALL ON FUNCTION guardian_rls.current_org_id(), guardian_rls.is_super_admin() FROM anon;
GRANT EXECUTE ON FUNCTION guardian_rls.current_org_id(), guardian_rls.is_super_admin() TO authenticated, service_role;
