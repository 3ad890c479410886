-- guardian:rollback.function = safe: instead of the backed-up v1, a unified-model consume_credits_rpc with v1's
-- signature (uuid, text) and v1's result ({success, remaining_credits, credits_consumed} or {success: false, error,
-- remaining_credits, required_credits}), without v1's weaknesses (lib/v1.ts):
--   * the balance is read and debited under a row lock (no lost update, no overspend);
--   * the caller is checked as v2 checks it: service_role (or the owner / a superuser with no JWT claims) for any
--     organization; authenticated only for the organization of its own profile; anyone else is refused;
--   * an unknown action type is refused (the catalogue is never changed), and an organization without a credit
--     row gets no free credits;
--   * every attempt that reaches the balance is logged, as v1 logged it.
-- Applied after sql/rollback/04_restore_v1.sql in the same transaction: CREATE OR REPLACE keeps the grants that
-- file restored. search_path ends with pg_temp; every name is qualified.
CREATE OR REPLACE FUNCTION public.consume_credits_rpc(p_organization_id uuid, p_action_type text)
RETURNS json
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
  v_role text := coalesce(nullif(current_setting('role', true), 'none'), session_user);
  v_claims_role text := auth.role();
  v_cost integer;
  v_remaining integer;
BEGIN
  IF v_role = 'authenticated' OR (v_role NOT IN ('service_role') AND v_claims_role = 'authenticated') THEN
    IF NOT EXISTS (SELECT 1 FROM public.profiles p WHERE p.id = auth.uid() AND p.organization_id = p_organization_id) THEN
      RETURN json_build_object('success', false, 'error', 'Not allowed', 'remaining_credits', 0, 'required_credits', 0);
    END IF;
  ELSIF v_role <> 'service_role'
    AND NOT (v_role = current_user OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = v_role AND r.rolsuper)) THEN
    RETURN json_build_object('success', false, 'error', 'Not allowed', 'remaining_credits', 0, 'required_credits', 0);
  END IF;

  SELECT a.credits_cost INTO v_cost FROM public.credit_actions a WHERE a.action_type = p_action_type;
  IF v_cost IS NULL THEN
    RETURN json_build_object('success', false, 'error', 'Unknown action type', 'remaining_credits', 0, 'required_credits', 0);
  END IF;

  SELECT oc.credits_remaining INTO v_remaining
    FROM public.organization_credits oc WHERE oc.organization_id = p_organization_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN json_build_object('success', false, 'error', 'No credit account', 'remaining_credits', 0, 'required_credits', v_cost);
  END IF;

  IF v_remaining < v_cost THEN
    INSERT INTO public.credit_consumption_logs (organization_id, action_type, credits_consumed, credits_remaining, success, error_message)
    VALUES (p_organization_id, p_action_type, 0, v_remaining, false, 'Insufficient credits');
    RETURN json_build_object('success', false, 'error', 'Insufficient credits',
                             'remaining_credits', v_remaining, 'required_credits', v_cost);
  END IF;

  UPDATE public.organization_credits oc
     SET credits_remaining = oc.credits_remaining - v_cost, updated_at = now()
   WHERE oc.organization_id = p_organization_id;
  INSERT INTO public.credit_consumption_logs (organization_id, action_type, credits_consumed, credits_remaining, success)
  VALUES (p_organization_id, p_action_type, v_cost, v_remaining - v_cost, true);
  RETURN json_build_object('success', true, 'remaining_credits', v_remaining - v_cost, 'credits_consumed', v_cost);
END
$function$;

COMMENT ON FUNCTION public.consume_credits_rpc(uuid, text) IS
  'guardian-credits rollback (guardian:rollback.function = safe): v1''s signature and result, locked and caller-checked; the backed-up v1 is in guardian.backups.';

-- 04_restore_v1.sql already set the grants (CREATE OR REPLACE keeps them); never anon or PUBLIC.
REVOKE ALL ON FUNCTION public.consume_credits_rpc(uuid, text) FROM PUBLIC, anon;
