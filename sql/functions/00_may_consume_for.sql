-- Who may consume credits for an organization: the caller rules shared by consume_credits_rpc and
-- consume_credits_batch (contract: "Who may call"). The caller is identified as Supabase identifies it:
--   * the role in effect: current_setting('role') (SET ROLE, as PostgREST does), else session_user. Inside a
--     SECURITY DEFINER function current_user is the function's owner, so it cannot tell who called;
--   * service_role                    -> any organization;
--   * authenticated                   -> only the organization of its own profile (auth.uid() -> profiles);
--   * the owner of the calling SECURITY DEFINER function (current_user here), the database owner or a superuser:
--       with no JWT claims (migrations, the SQL editor) -> trusted like service_role;
--       with JWT claims (an impersonating session)    -> judged by the claims' role, as above;
--   * anything else (anon, authenticator, other roles) -> refused.
-- Called only from those SECURITY DEFINER functions, so it runs as their owner; nobody else may execute it.
CREATE OR REPLACE FUNCTION guardian.may_consume_for(p_organization_id uuid)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
  v_role text := current_setting('role', true);
  v_as text;
BEGIN
  IF v_role IS NULL OR v_role = 'none' THEN
    v_role := session_user;
  END IF;

  IF v_role = 'service_role' THEN
    RETURN true;
  ELSIF v_role = 'authenticated' THEN
    v_as := 'authenticated';
  ELSIF v_role = current_user
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = v_role AND r.rolsuper)
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_database d
                 WHERE d.datname = current_database() AND pg_catalog.pg_get_userbyid(d.datdba) = v_role) THEN
    v_as := coalesce(auth.role(), 'service_role');
  ELSE
    RETURN false;
  END IF;

  IF v_as = 'service_role' THEN
    RETURN true;
  ELSIF v_as = 'authenticated' THEN
    RETURN EXISTS (SELECT 1 FROM public.profiles p
                    WHERE p.id = auth.uid() AND p.organization_id = p_organization_id);
  END IF;
  RETURN false;
END
$function$;

REVOKE ALL ON FUNCTION guardian.may_consume_for(uuid) FROM PUBLIC, anon, authenticated;
