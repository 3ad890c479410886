-- public.profiles: the columns that decide tenancy and rank (organization_id and the role column) cannot be changed
-- by the user they describe (contract: "Tenant isolation"). The CRM lets a member update its own profile row, every
-- column of it: that is how members edit their name, and it is also how a member could make itself super_admin or
-- move into any organization, and the program's isolation trusts exactly those two columns. So the row stays the
-- member's to edit (22_profiles_update.sql), and this trigger refuses a change of those two columns unless it comes
-- from a super_admin, the backend (service_role) or the owner (migrations).
--
-- SECURITY INVOKER on purpose: current_user is then the role the statement runs as (authenticated, anon, or the
-- backend's), which is what decides. It reads nothing but through guardian_rls.is_super_admin(), which the Data API
-- roles may execute. search_path ends with pg_temp (every name is qualified).
CREATE OR REPLACE FUNCTION guardian_rls.guard_profile_tenancy() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
  IF current_user IN ('anon', 'authenticated') AND NOT guardian_rls.is_super_admin() THEN
    RAISE EXCEPTION 'permission denied: the organization and the role of a profile are changed by the backend or a super_admin'
      USING ERRCODE = '42501', HINT = 'update the other columns of your profile; ask a super_admin to change these',
            COLUMN = 'organization_id';
  END IF;
  RETURN NEW;
END
$fn$;

REVOKE ALL ON FUNCTION guardian_rls.guard_profile_tenancy() FROM PUBLIC, anon, authenticated;

DROP TRIGGER IF EXISTS guardian_guard_profile_tenancy ON public.profiles;
CREATE TRIGGER guardian_guard_profile_tenancy
  BEFORE UPDATE OF organization_id, {{profile_role}} ON public.profiles
  FOR EACH ROW
  WHEN (old.organization_id IS DISTINCT FROM new.organization_id
        OR {{profile_role:old}} IS DISTINCT FROM {{profile_role:new}})
  EXECUTE FUNCTION guardian_rls.guard_profile_tenancy();
