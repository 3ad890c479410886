-- consume_credits_rpc v2 (contract: "consume_credits_rpc v2"). Replaces v1 in the transaction this file is applied
-- in: v1 (uuid, text) and any other overload are dropped, so there is exactly one function of that name and
-- two-argument calls resolve to this one through the defaults.
--
--   1. caller rules (guardian.may_consume_for)                          -> FORBIDDEN (nothing written)
--   2. p_quantity from 1 to 100000                                      -> INVALID_QUANTITY (nothing written)
--   3. p_action_type in credit_actions; the catalogue is never changed  -> UNKNOWN_ACTION (nothing written)
--   4. the organization's credits row, locked                           -> NO_CREDIT_ACCOUNT (nothing written)
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
-- The common case, a multi organization debited for an action that draws on a pool, with no key, is one statement
-- here after the caller rules: the conditional UPDATE that checks 3, 4, 6 and 7 on the row it locks (the action
-- joined to the catalogue), debits it and returns what the call cost and what is left. Everything else (a refusal,
-- a unified organization, an action that needs no pool, a keyed call, whose key must be read under the lock first)
-- is guardian.consume_debit (01_consume_debit.sql), which consume_credits_batch shares and which answers the steps
-- one by one in the order above: this function checks 2 first (it only reads its argument) and hands its refusal to
-- it, so the caller rules still answer first; the action's requirement comes back from it (o_cost, o_ai .. o_sms).
-- Both paths give the same answer: the UPDATE's conditions are those steps, evaluated on the row it locks
-- (PostgreSQL re-checks them on the newest version when another transaction changed the row), and when it matches
-- no row nothing was written. Why one statement: each statement a PL/pgSQL function runs costs an executor start
-- and end besides its work, and a call of consume_debit builds and takes apart its 15 OUT parameters; the profile is
-- in bench/results (where v2's time goes).
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
  v_refusal json;
  v_d record;
  v_result json;
  -- The debit, from either path: the row after it and what the call cost.
  v_model text;
  v_epoch integer;
  v_remaining integer;
  v_ai_left integer;
  v_whatsapp_left integer;
  v_email_left integer;
  v_sms_left integer;
  v_cost bigint;
  v_ai bigint;
  v_whatsapp bigint;
  v_email bigint;
  v_sms bigint;
BEGIN
  -- The common case: caller rules (1), then one statement checks 3, 4, 6 and 7 and debits.
  IF v_key IS NULL AND p_quantity BETWEEN 1 AND 100000 AND guardian.may_consume_for(p_organization_id) THEN
    UPDATE public.organization_credits oc
       SET ai_credits_available = oc.ai_credits_available - a.ai_credits_required::bigint * p_quantity,
           whatsapp_credits_available = oc.whatsapp_credits_available - a.whatsapp_credits_required::bigint * p_quantity,
           email_credits_available = oc.email_credits_available - a.email_credits_required::bigint * p_quantity,
           sms_credits_available = oc.sms_credits_available - a.sms_credits_required::bigint * p_quantity,
           -- The unified balance follows (contract: "The application around the credits keeps working"): the unified
           -- cost, floored at 0, never a reason to refuse; so a rollback has nothing to recompute.
           credits_remaining = greatest(0, oc.credits_remaining - a.credits_cost::bigint * p_quantity),
           updated_at = now()
      FROM public.credit_actions a
     WHERE a.action_type = p_action_type
       AND (a.ai_credits_required > 0 OR a.whatsapp_credits_required > 0 OR a.email_credits_required > 0
            OR a.sms_credits_required > 0)
       AND oc.organization_id = p_organization_id
       AND oc.credit_model = 'multi'
       AND oc.ai_credits_available >= a.ai_credits_required::bigint * p_quantity
       AND oc.whatsapp_credits_available >= a.whatsapp_credits_required::bigint * p_quantity
       AND oc.email_credits_available >= a.email_credits_required::bigint * p_quantity
       AND oc.sms_credits_available >= a.sms_credits_required::bigint * p_quantity
       AND ({{is_trial:oc}} AND oc.cycle_end_date < now()) IS NOT TRUE
       -- (a credit row whose organization is gone is no account: see consume_debit)
       AND EXISTS (SELECT 1 FROM public.organizations o WHERE o.id = oc.organization_id)
    RETURNING oc.credit_model, oc.allocation_epoch, oc.credits_remaining, oc.ai_credits_available,
              oc.whatsapp_credits_available, oc.email_credits_available, oc.sms_credits_available,
              a.credits_cost::bigint * p_quantity, a.ai_credits_required::bigint * p_quantity,
              a.whatsapp_credits_required::bigint * p_quantity, a.email_credits_required::bigint * p_quantity,
              a.sms_credits_required::bigint * p_quantity
      INTO v_model, v_epoch, v_remaining, v_ai_left, v_whatsapp_left, v_email_left, v_sms_left,
           v_cost, v_ai, v_whatsapp, v_email, v_sms;
  END IF;

  IF v_model IS NULL THEN
    -- 2, answered by guardian.consume_debit after the caller rules (1).
    IF p_quantity IS NULL OR p_quantity < 1 OR p_quantity > 100000 THEN
      v_refusal := json_build_object('success', false, 'error_code', 'INVALID_QUANTITY',
                                     'error', 'quantity must be an integer from 1 to 100000',
                                     'remaining_credits', 0, 'required_credits', 0);
    END IF;

    -- 1 and 3-7 step by step (sql/functions/01_consume_debit.sql): caller rules, action, lock, key, trial, pools, debit.
    v_d := guardian.consume_debit(p_organization_id, v_refusal, NULL, NULL, NULL, NULL, NULL,
                                  v_key, p_action_type, p_quantity);
    IF v_d.o_result IS NULL THEN
      SELECT v_d.o_credit_model, v_d.o_allocation_epoch, v_d.o_credits_remaining, v_d.o_ai_available,
             v_d.o_whatsapp_available, v_d.o_email_available, v_d.o_sms_available,
             v_d.o_cost, v_d.o_ai, v_d.o_whatsapp, v_d.o_email, v_d.o_sms
        INTO v_model, v_epoch, v_remaining, v_ai_left, v_whatsapp_left, v_email_left, v_sms_left,
             v_cost, v_ai, v_whatsapp, v_email, v_sms;
    ELSIF v_d.o_error_code IS NULL THEN
      RETURN v_d.o_result; -- refused before anything is written, or a replay of the key's stored result
    ELSE
      -- 8. A refusal's log row (credits_consumed 0).
      INSERT INTO public.credit_consumption_logs
        (organization_id, action_type, credits_consumed, credits_remaining, success, error_message, error_code,
         quantity, user_id, idempotency_key, credit_model, allocation_epoch)
      VALUES (p_organization_id, p_action_type, 0, v_d.o_credits_remaining, false, v_d.o_error, v_d.o_error_code,
              p_quantity, auth.uid(), v_key, v_d.o_credit_model, v_d.o_allocation_epoch);
      IF v_d.o_error_code = 'IDEMPOTENCY_KEY_REUSED' THEN
        RETURN v_d.o_result; -- not stored: the key keeps its first request
      END IF;
      v_result := v_d.o_result;
    END IF;
  END IF;

  -- 8. A success's log row. credits_remaining is the org's unified balance after the call (a multi debit takes the
  -- unified cost from it too, floored at 0).
  IF v_result IS NULL THEN
    IF v_model = 'multi' THEN
      INSERT INTO public.credit_consumption_logs
        (organization_id, action_type, credits_consumed, credits_remaining, success,
         quantity, ai_consumed, whatsapp_consumed, email_consumed, sms_consumed,
         user_id, idempotency_key, credit_model, allocation_epoch)
      VALUES (p_organization_id, p_action_type, v_cost, v_remaining, true,
              p_quantity, v_ai, v_whatsapp, v_email, v_sms,
              auth.uid(), v_key, 'multi', v_epoch);
      -- The text json_build_object('success', true, 'action_type', p_action_type, 'quantity', p_quantity,
      -- 'credit_model', 'multi', 'consumed', json_build_object('ai', <ai consumed>, ...), 'remaining',
      -- json_build_object('ai', <ai left>, ...), 'credits_consumed', <cost>, 'remaining_credits', ...) gives, character
      -- for character, written out: the most frequent answer, and json_build_object looks up the type of each of its 24
      -- arguments at every call. Every value here is a number that cannot be NULL, but the action type, quoted and
      -- escaped by to_json as json_build_object does. test/credit-engine.test.ts compares the two texts.
      v_result := format('{"success" : true, "action_type" : %s, "quantity" : %s, "credit_model" : "multi", '
                         '"consumed" : {"ai" : %s, "whatsapp" : %s, "email" : %s, "sms" : %s}, '
                         '"remaining" : {"ai" : %s, "whatsapp" : %s, "email" : %s, "sms" : %s}, '
                         '"credits_consumed" : %s, "remaining_credits" : %s}',
        to_json(p_action_type), p_quantity, v_ai, v_whatsapp, v_email, v_sms,
        v_ai_left, v_whatsapp_left, v_email_left, v_sms_left,
        -- v1's fields: the unified cost, and what is left in the pools this action draws on (all pools if none).
        v_cost,
        CASE WHEN v_ai + v_whatsapp + v_email + v_sms = 0 THEN
            v_ai_left + v_whatsapp_left + v_email_left + v_sms_left
          -- (quantity >= 1: a pool's requirement x quantity > 0 exactly when the action draws on that pool)
          ELSE CASE WHEN v_ai > 0 THEN v_ai_left ELSE 0 END
             + CASE WHEN v_whatsapp > 0 THEN v_whatsapp_left ELSE 0 END
             + CASE WHEN v_email > 0 THEN v_email_left ELSE 0 END
             + CASE WHEN v_sms > 0 THEN v_sms_left ELSE 0 END END)::json;
    ELSE
      INSERT INTO public.credit_consumption_logs
        (organization_id, action_type, credits_consumed, credits_remaining, success,
         quantity, user_id, idempotency_key, credit_model, allocation_epoch)
      VALUES (p_organization_id, p_action_type, v_cost, v_remaining, true,
              p_quantity, auth.uid(), v_key, 'unified', v_epoch);
      v_result := json_build_object(
        'success', true, 'action_type', p_action_type, 'quantity', p_quantity, 'credit_model', 'unified',
        'consumed', json_build_object('ai', 0, 'whatsapp', 0, 'email', 0, 'sms', 0),
        'remaining', json_build_object('ai', v_ai_left, 'whatsapp', v_whatsapp_left,
                                       'email', v_email_left, 'sms', v_sms_left),
        -- v1's fields, for callers not yet reading the pools.
        'credits_consumed', v_cost, 'remaining_credits', v_remaining);
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
