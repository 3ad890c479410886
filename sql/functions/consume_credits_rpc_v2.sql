-- consume_credits_rpc v2 (contract: "consume_credits_rpc v2"). Replaces v1 in the transaction this file is applied
-- in: v1 (uuid, text) and any other overload are dropped, so there is exactly one function of that name and
-- two-argument calls resolve to this one through the defaults.
--
--   1. caller rules (guardian.may_consume_for)                          -> FORBIDDEN (nothing written)
--   2. p_quantity from 1 to 100000                                      -> INVALID_QUANTITY (nothing written)
--   3. p_action_type in credit_actions; the catalogue is never changed  -> UNKNOWN_ACTION (nothing written)
--   4. the organization's credits row, locked FOR UPDATE                -> NO_CREDIT_ACCOUNT (nothing written)
--   5. idempotency key seen before for this organization                -> the stored result, nothing debited;
--      the same key with another action type or quantity                -> IDEMPOTENCY_KEY_REUSED (logged, nothing debited)
--   6. a trial and cycle_end_date in the past                           -> TRIAL_EXPIRED (logged success=false)
--      ("a trial" per the database's shape, lib/shape.ts: is_trial, or a trial plan name where that column is missing)
--   7. credit_model 'multi': every required pool (required x quantity) available, else INSUFFICIENT_CREDITS naming
--      the first short pool in the order ai, whatsapp, email, sms (logged success=false); debits those pools only.
--      credit_model 'unified' (not migrated yet): served from credits_remaining with credits_cost x quantity, as v1.
--   8. one credit_consumption_logs row per attempt that reached 6-7; credits_consumed = credits_cost x quantity on a
--      success in either model (rollback sums it). With a key, the result of 6-7 (success or refusal: one key, one
--      attempt) is stored for (organization, sha256 of the key); 1-4 are not stored, a corrected call is served.
--      An empty key counts as no key.
-- Every result also carries v1's fields, so today's callers read what they read: `error` on a refusal, and
-- `remaining_credits` (unified: credits_remaining; multi: what is left in the pools the action draws on, or in all
-- pools for an action that needs none; 0 where the caller may not see it or there is no account) and
-- `credits_consumed` on a success, `required_credits` on a refusal.
-- The row lock of step 4 serialises callers per organization: no lost update, no double spend, one log row each.
-- search_path ends with pg_temp: with '' PostgreSQL still searches the caller's temporary schema FIRST for types and
-- tables, so a caller could shadow one with code that would run as the owner.
DROP FUNCTION IF EXISTS public.consume_credits_rpc(uuid, text);

DO $$
DECLARE
  f regprocedure;
BEGIN
  -- Any other overload (a 3-argument attempt, a different return type) would make calls ambiguous.
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace AND p.proname = 'consume_credits_rpc'
       AND (p.oid IS DISTINCT FROM to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)')
            OR p.prorettype <> 'json'::regtype)
  LOOP
    EXECUTE format('DROP FUNCTION %s', f);
  END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION public.consume_credits_rpc(
  p_organization_id uuid,
  p_action_type text,
  p_quantity integer DEFAULT 1,
  p_idempotency_key text DEFAULT NULL)
RETURNS json
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
  -- The caller's key is free text: only its sha256 is stored (in idempotency_keys and the log), so no personal data
  -- a caller might put in a key is kept, and any key length fits the index.
  v_key text := CASE WHEN p_idempotency_key <> '' THEN encode(sha256(convert_to(p_idempotency_key, 'UTF8')), 'hex') END;
  v_unit_cost integer;
  v_req_ai integer;
  v_req_whatsapp integer;
  v_req_email integer;
  v_req_sms integer;
  v_org record;
  v_cost bigint;
  v_ai bigint;
  v_whatsapp bigint;
  v_email bigint;
  v_sms bigint;
  v_short text;
  v_required bigint;
  v_available bigint;
  v_error text;
  v_left record;
  v_result json;
  v_key_action text;
  v_key_quantity integer;
BEGIN
  IF NOT guardian.may_consume_for(p_organization_id) THEN
    RETURN json_build_object('success', false, 'error_code', 'FORBIDDEN',
                             'error', 'not allowed to consume credits for this organization',
                             'remaining_credits', 0, 'required_credits', 0);
  END IF;

  IF p_quantity IS NULL OR p_quantity < 1 OR p_quantity > 100000 THEN
    RETURN json_build_object('success', false, 'error_code', 'INVALID_QUANTITY',
                             'error', 'quantity must be an integer from 1 to 100000',
                             'remaining_credits', 0, 'required_credits', 0);
  END IF;

  SELECT a.credits_cost, a.ai_credits_required, a.whatsapp_credits_required, a.email_credits_required,
         a.sms_credits_required
    INTO v_unit_cost, v_req_ai, v_req_whatsapp, v_req_email, v_req_sms
    FROM public.credit_actions a
   WHERE a.action_type = p_action_type;
  IF NOT FOUND THEN
    RETURN json_build_object('success', false, 'error_code', 'UNKNOWN_ACTION',
                             'error', 'unknown action type', 'remaining_credits', 0, 'required_credits', 0);
  END IF;

  SELECT oc.credit_model, oc.allocation_epoch, oc.credits_remaining, {{is_trial:oc}} AS is_trial, oc.cycle_end_date,
         oc.ai_credits_available, oc.whatsapp_credits_available, oc.email_credits_available, oc.sms_credits_available
    INTO v_org
    FROM public.organization_credits oc
   WHERE oc.organization_id = p_organization_id
     -- A credit row whose organization is gone (the CRM's scripts dropped the foreign key once) is no account:
     -- the log's foreign key would refuse every row written for it.
     AND EXISTS (SELECT 1 FROM public.organizations o WHERE o.id = oc.organization_id)
     FOR UPDATE OF oc;
  IF NOT FOUND THEN
    RETURN json_build_object('success', false, 'error_code', 'NO_CREDIT_ACCOUNT',
                             'error', 'the organization has no credit account',
                             'remaining_credits', 0, 'required_credits', v_unit_cost::bigint * p_quantity);
  END IF;

  v_cost := v_unit_cost::bigint * p_quantity;

  IF v_key IS NOT NULL THEN
    SELECT k.result, k.action_type, k.quantity INTO v_result, v_key_action, v_key_quantity
      FROM guardian.idempotency_keys k
     WHERE k.organization_id = p_organization_id AND k.idempotency_key = v_key;
    IF FOUND THEN
      IF v_key_action IS NULL OR (v_key_action, v_key_quantity) = (p_action_type, p_quantity) THEN
        RETURN v_result;
      END IF;
      v_error := format('idempotency key already used with action %s x%s', v_key_action, v_key_quantity);
      INSERT INTO public.credit_consumption_logs
        (organization_id, action_type, credits_consumed, credits_remaining, success, error_message, error_code,
         quantity, user_id, idempotency_key, credit_model, allocation_epoch)
      VALUES (p_organization_id, p_action_type, 0, v_org.credits_remaining, false, v_error, 'IDEMPOTENCY_KEY_REUSED',
              p_quantity, auth.uid(), v_key, v_org.credit_model, v_org.allocation_epoch);
      RETURN json_build_object('success', false, 'error_code', 'IDEMPOTENCY_KEY_REUSED', 'error', v_error,
                               'remaining_credits', 0, 'required_credits', v_cost);
    END IF;
  END IF;

  IF v_org.is_trial AND v_org.cycle_end_date < now() THEN
    v_error := 'the trial period has ended';
    v_result := json_build_object('success', false, 'error_code', 'TRIAL_EXPIRED', 'error', v_error,
                                  'remaining_credits', CASE WHEN v_org.credit_model = 'multi' THEN
                                    v_org.ai_credits_available + v_org.whatsapp_credits_available
                                    + v_org.email_credits_available + v_org.sms_credits_available
                                    ELSE v_org.credits_remaining END,
                                  'required_credits', v_cost);
    INSERT INTO public.credit_consumption_logs
      (organization_id, action_type, credits_consumed, credits_remaining, success, error_message, error_code,
       quantity, user_id, idempotency_key, credit_model, allocation_epoch)
    VALUES (p_organization_id, p_action_type, 0, v_org.credits_remaining, false, v_error, 'TRIAL_EXPIRED',
            p_quantity, auth.uid(), v_key, v_org.credit_model, v_org.allocation_epoch);

  ELSIF v_org.credit_model = 'multi' THEN
    v_ai := v_req_ai::bigint * p_quantity;
    v_whatsapp := v_req_whatsapp::bigint * p_quantity;
    v_email := v_req_email::bigint * p_quantity;
    v_sms := v_req_sms::bigint * p_quantity;
    IF v_org.ai_credits_available < v_ai THEN
      v_short := 'ai'; v_required := v_ai; v_available := v_org.ai_credits_available;
    ELSIF v_org.whatsapp_credits_available < v_whatsapp THEN
      v_short := 'whatsapp'; v_required := v_whatsapp; v_available := v_org.whatsapp_credits_available;
    ELSIF v_org.email_credits_available < v_email THEN
      v_short := 'email'; v_required := v_email; v_available := v_org.email_credits_available;
    ELSIF v_org.sms_credits_available < v_sms THEN
      v_short := 'sms'; v_required := v_sms; v_available := v_org.sms_credits_available;
    END IF;

    IF v_short IS NOT NULL THEN
      v_error := format('insufficient %s credits: %s required, %s available', v_short, v_required, v_available);
      v_result := json_build_object('success', false, 'error_code', 'INSUFFICIENT_CREDITS', 'error', v_error,
                                    'credit_type', v_short, 'required', v_required, 'available', v_available,
                                    'remaining_credits', v_available, 'required_credits', v_required);
      INSERT INTO public.credit_consumption_logs
        (organization_id, action_type, credits_consumed, credits_remaining, success, error_message, error_code,
         quantity, user_id, idempotency_key, credit_model, allocation_epoch)
      VALUES (p_organization_id, p_action_type, 0, v_org.credits_remaining, false, v_error, 'INSUFFICIENT_CREDITS',
              p_quantity, auth.uid(), v_key, 'multi', v_org.allocation_epoch);
    ELSE
      IF v_ai + v_whatsapp + v_email + v_sms > 0 THEN
        UPDATE public.organization_credits oc
           SET ai_credits_available = oc.ai_credits_available - v_ai,
               whatsapp_credits_available = oc.whatsapp_credits_available - v_whatsapp,
               email_credits_available = oc.email_credits_available - v_email,
               sms_credits_available = oc.sms_credits_available - v_sms,
               updated_at = now()
         WHERE oc.organization_id = p_organization_id
        RETURNING oc.ai_credits_available, oc.whatsapp_credits_available, oc.email_credits_available,
                  oc.sms_credits_available
          INTO v_left;
      ELSE
        v_left := v_org; -- an action requiring no pool (a free action): nothing to debit
      END IF;
      -- credits_remaining stays untouched for a multi org; the log records it as it is.
      INSERT INTO public.credit_consumption_logs
        (organization_id, action_type, credits_consumed, credits_remaining, success,
         quantity, ai_consumed, whatsapp_consumed, email_consumed, sms_consumed,
         user_id, idempotency_key, credit_model, allocation_epoch)
      VALUES (p_organization_id, p_action_type, v_cost, v_org.credits_remaining, true,
              p_quantity, v_ai, v_whatsapp, v_email, v_sms,
              auth.uid(), v_key, 'multi', v_org.allocation_epoch);
      v_result := json_build_object(
        'success', true, 'action_type', p_action_type, 'quantity', p_quantity, 'credit_model', 'multi',
        'consumed', json_build_object('ai', v_ai, 'whatsapp', v_whatsapp, 'email', v_email, 'sms', v_sms),
        'remaining', json_build_object('ai', v_left.ai_credits_available, 'whatsapp', v_left.whatsapp_credits_available,
                                       'email', v_left.email_credits_available, 'sms', v_left.sms_credits_available),
        -- v1's fields: the unified cost, and what is left in the pools this action draws on (all pools if none).
        'credits_consumed', v_cost,
        'remaining_credits', CASE WHEN v_ai + v_whatsapp + v_email + v_sms = 0 THEN
            v_left.ai_credits_available + v_left.whatsapp_credits_available + v_left.email_credits_available + v_left.sms_credits_available
          ELSE CASE WHEN v_req_ai > 0 THEN v_left.ai_credits_available ELSE 0 END
             + CASE WHEN v_req_whatsapp > 0 THEN v_left.whatsapp_credits_available ELSE 0 END
             + CASE WHEN v_req_email > 0 THEN v_left.email_credits_available ELSE 0 END
             + CASE WHEN v_req_sms > 0 THEN v_left.sms_credits_available ELSE 0 END END);
    END IF;

  ELSE
    -- Not migrated yet: v1's rule, under the row lock.
    IF v_org.credits_remaining < v_cost THEN
      v_error := format('insufficient credits: %s required, %s available', v_cost, v_org.credits_remaining);
      v_result := json_build_object('success', false, 'error_code', 'INSUFFICIENT_CREDITS', 'error', v_error,
                                    'credit_type', 'unified', 'required', v_cost,
                                    'available', v_org.credits_remaining,
                                    'remaining_credits', v_org.credits_remaining, 'required_credits', v_cost);
      INSERT INTO public.credit_consumption_logs
        (organization_id, action_type, credits_consumed, credits_remaining, success, error_message, error_code,
         quantity, user_id, idempotency_key, credit_model, allocation_epoch)
      VALUES (p_organization_id, p_action_type, 0, v_org.credits_remaining, false, v_error, 'INSUFFICIENT_CREDITS',
              p_quantity, auth.uid(), v_key, 'unified', v_org.allocation_epoch);
    ELSE
      UPDATE public.organization_credits oc
         SET credits_remaining = oc.credits_remaining - v_cost, updated_at = now()
       WHERE oc.organization_id = p_organization_id
      RETURNING oc.credits_remaining, oc.ai_credits_available, oc.whatsapp_credits_available,
                oc.email_credits_available, oc.sms_credits_available
        INTO v_left;
      INSERT INTO public.credit_consumption_logs
        (organization_id, action_type, credits_consumed, credits_remaining, success,
         quantity, user_id, idempotency_key, credit_model, allocation_epoch)
      VALUES (p_organization_id, p_action_type, v_cost, v_left.credits_remaining, true,
              p_quantity, auth.uid(), v_key, 'unified', v_org.allocation_epoch);
      v_result := json_build_object(
        'success', true, 'action_type', p_action_type, 'quantity', p_quantity, 'credit_model', 'unified',
        'consumed', json_build_object('ai', 0, 'whatsapp', 0, 'email', 0, 'sms', 0),
        'remaining', json_build_object('ai', v_left.ai_credits_available, 'whatsapp', v_left.whatsapp_credits_available,
                                       'email', v_left.email_credits_available, 'sms', v_left.sms_credits_available),
        -- v1's fields, for callers not yet reading the pools.
        'credits_consumed', v_cost, 'remaining_credits', v_left.credits_remaining);
    END IF;
  END IF;

  IF v_key IS NOT NULL THEN
    INSERT INTO guardian.idempotency_keys (organization_id, idempotency_key, result, action_type, quantity)
    VALUES (p_organization_id, v_key, v_result, p_action_type, p_quantity)
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN v_result;
END
$function$;

REVOKE ALL ON FUNCTION public.consume_credits_rpc(uuid, text, integer, text) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.consume_credits_rpc(uuid, text, integer, text) TO authenticated, service_role;
