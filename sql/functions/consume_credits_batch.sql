-- consume_credits_batch: several actions for one organization, all or nothing, with consume_credits_rpc's caller
-- rules, result and error shapes. p_actions = [{"action_type": "...", "quantity": n}, ...] ("quantity" omitted = 1).
--
--   1. caller rules (guardian.may_consume_for)                              -> FORBIDDEN
--   2. p_actions is an array of at least 1 element                          -> INVALID_QUANTITY
--      and of at most 100 elements                                         -> BATCH_TOO_LARGE (nothing written)
--   3. every element validated before anything else, in order; the first bad one is reported with its 0-based
--      "index": a quantity that is not an integer from 1 to 100000          -> INVALID_QUANTITY
--      an element that is not an object, or whose action_type is not in the catalogue -> UNKNOWN_ACTION
--   4. the organization's credits row, locked FOR UPDATE                    -> NO_CREDIT_ACCOUNT
--   5. a trial (lib/shape.ts) with cycle_end_date in the past                              -> TRIAL_EXPIRED
--   6. the totals per pool (multi) or the total unified cost (unified) must be available, else INSUFFICIENT_CREDITS
--      naming the first short pool with the batch's total requirement; nothing is debited.
--   7. one debit of the totals and one credit_consumption_logs row per element; a refused batch (5, 6) writes ONE
--      row, success=false, for its first element that could not be served (its first element drawing on the short
--      pool; its first element for TRIAL_EXPIRED), so a caller cannot grow the append-only log with batches it cannot
--      afford.
-- Nothing is written for 1-4. Steps 1 and 4-6 and the debit of 7 are guardian.consume_debit (01_consume_debit.sql),
-- shared with consume_credits_rpc: this function validates 2-3 first (they only read) and hands their refusal to it,
-- so the caller rules still answer first.
CREATE OR REPLACE FUNCTION public.consume_credits_batch(p_organization_id uuid, p_actions jsonb)
RETURNS json
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
  v_refusal json;
  v_bad_index integer;
  v_bad_code text;
  v_items jsonb;
  v_cost bigint;
  v_ai bigint;
  v_whatsapp bigint;
  v_email bigint;
  v_sms bigint;
  v_d record;
  v_actions json;
  v_remaining json;
BEGIN
  -- 2-3, answered by guardian.consume_debit after the caller rules (1).
  IF p_actions IS NULL OR jsonb_typeof(p_actions) <> 'array' OR jsonb_array_length(p_actions) < 1 THEN
    v_refusal := json_build_object('success', false, 'error_code', 'INVALID_QUANTITY',
      'error', 'p_actions must be a JSON array of 1 to 100 {"action_type", "quantity"} objects',
      'remaining_credits', 0, 'required_credits', 0);
  ELSIF jsonb_array_length(p_actions) > 100 THEN
    v_refusal := json_build_object('success', false, 'error_code', 'BATCH_TOO_LARGE',
      'error', format('p_actions has %s elements; a batch takes at most 100', jsonb_array_length(p_actions)),
      'remaining_credits', 0, 'required_credits', 0);
  ELSE
    WITH elements AS (
      SELECT (t.ord - 1)::integer AS idx,
             jsonb_typeof(t.elem) = 'object' AS is_object,
             CASE WHEN jsonb_typeof(t.elem) <> 'object' THEN NULL
                  WHEN NOT (t.elem ? 'quantity') THEN 1::numeric
                  WHEN jsonb_typeof(t.elem -> 'quantity') = 'number' THEN (t.elem ->> 'quantity')::numeric
             END AS q,
             CASE WHEN jsonb_typeof(t.elem -> 'action_type') = 'string' THEN t.elem ->> 'action_type' END AS action_type
        FROM jsonb_array_elements(p_actions) WITH ORDINALITY AS t(elem, ord)
    ), checked AS (
      SELECT e.idx, e.action_type, a.credits_cost, a.ai_credits_required, a.whatsapp_credits_required,
             a.email_credits_required, a.sms_credits_required,
             CASE WHEN e.q IS NOT NULL AND e.q = trunc(e.q) AND e.q BETWEEN 1 AND 100000 THEN e.q::bigint END AS quantity,
             CASE WHEN NOT e.is_object THEN 'UNKNOWN_ACTION'
                  WHEN e.q IS NULL OR e.q <> trunc(e.q) OR e.q < 1 OR e.q > 100000 THEN 'INVALID_QUANTITY'
                  WHEN a.action_type IS NULL THEN 'UNKNOWN_ACTION'
             END AS code
        FROM elements e
        LEFT JOIN public.credit_actions a ON a.action_type = e.action_type
    )
    SELECT min(c.idx) FILTER (WHERE c.code IS NOT NULL),
           (array_agg(c.code ORDER BY c.idx) FILTER (WHERE c.code IS NOT NULL))[1],
           jsonb_agg(jsonb_build_object(
             'idx', c.idx, 'action_type', c.action_type, 'quantity', c.quantity,
             'cost', c.credits_cost * c.quantity,
             'ai', c.ai_credits_required * c.quantity, 'whatsapp', c.whatsapp_credits_required * c.quantity,
             'email', c.email_credits_required * c.quantity, 'sms', c.sms_credits_required * c.quantity) ORDER BY c.idx),
           sum(c.credits_cost * c.quantity), sum(c.ai_credits_required * c.quantity),
           sum(c.whatsapp_credits_required * c.quantity), sum(c.email_credits_required * c.quantity),
           sum(c.sms_credits_required * c.quantity)
      INTO v_bad_index, v_bad_code, v_items, v_cost, v_ai, v_whatsapp, v_email, v_sms
      FROM checked c;

    IF v_bad_code = 'INVALID_QUANTITY' THEN
      v_refusal := json_build_object('success', false, 'error_code', 'INVALID_QUANTITY', 'index', v_bad_index,
        'error', format('p_actions[%s]: quantity must be an integer from 1 to 100000', v_bad_index),
        'remaining_credits', 0, 'required_credits', 0);
    ELSIF v_bad_code = 'UNKNOWN_ACTION' THEN
      v_refusal := json_build_object('success', false, 'error_code', 'UNKNOWN_ACTION', 'index', v_bad_index,
        'error', format('p_actions[%s]: unknown action type', v_bad_index),
        'remaining_credits', 0, 'required_credits', 0);
    END IF;
  END IF;

  -- 1 and 4-6 (sql/functions/01_consume_debit.sql): caller rules, lock, trial, pools, one debit of the totals.
  v_d := guardian.consume_debit(p_organization_id, v_refusal, v_cost, v_ai, v_whatsapp, v_email, v_sms,
                                NULL, NULL, NULL);
  IF v_d.o_result IS NOT NULL AND v_d.o_error_code IS NULL THEN
    RETURN v_d.o_result; -- refused before anything is written
  END IF;

  -- 7. A refused batch: one log row, its first element that could not be served.
  IF v_d.o_result IS NOT NULL THEN
    INSERT INTO public.credit_consumption_logs
      (organization_id, action_type, credits_consumed, credits_remaining, success, error_message, error_code,
       quantity, user_id, credit_model, allocation_epoch)
    SELECT p_organization_id, i.action_type, 0, v_d.o_credits_remaining, false, v_d.o_error, v_d.o_error_code,
           i.quantity, auth.uid(), v_d.o_credit_model, v_d.o_allocation_epoch
      FROM jsonb_to_recordset(v_items)
           AS i(idx integer, action_type text, quantity integer, cost integer, ai integer, whatsapp integer,
                email integer, sms integer)
     ORDER BY CASE v_d.o_result ->> 'credit_type'
                WHEN 'ai' THEN (i.ai > 0) WHEN 'whatsapp' THEN (i.whatsapp > 0) WHEN 'email' THEN (i.email > 0)
                WHEN 'sms' THEN (i.sms > 0) WHEN 'unified' THEN (i.cost > 0) ELSE true END DESC,
              i.idx
     LIMIT 1;
    RETURN v_d.o_result;
  END IF;
  -- 7. A served batch: one log row per element.

  IF v_d.o_credit_model = 'multi' THEN
    INSERT INTO public.credit_consumption_logs
      (organization_id, action_type, credits_consumed, credits_remaining, success,
       quantity, ai_consumed, whatsapp_consumed, email_consumed, sms_consumed,
       user_id, credit_model, allocation_epoch)
    SELECT p_organization_id, i.action_type, i.cost, v_d.o_credits_remaining, true,
           i.quantity, i.ai, i.whatsapp, i.email, i.sms,
           auth.uid(), 'multi', v_d.o_allocation_epoch
      FROM jsonb_to_recordset(v_items)
           AS i(idx integer, action_type text, quantity integer, cost integer, ai integer, whatsapp integer,
                email integer, sms integer)
     ORDER BY i.idx;
  ELSE
    -- Each row records the unified balance after its own element, as consecutive single calls would
    -- (o_credits_remaining is the balance after the whole batch, so before it was that plus v_cost).
    INSERT INTO public.credit_consumption_logs
      (organization_id, action_type, credits_consumed, credits_remaining, success,
       quantity, user_id, credit_model, allocation_epoch)
    SELECT p_organization_id, i.action_type, i.cost,
           v_d.o_credits_remaining + v_cost - sum(i.cost) OVER (ORDER BY i.idx), true,
           i.quantity, auth.uid(), 'unified', v_d.o_allocation_epoch
      FROM jsonb_to_recordset(v_items) AS i(idx integer, action_type text, quantity integer, cost integer)
     ORDER BY i.idx;
  END IF;

  v_actions := (SELECT json_agg(json_build_object(
                   'action_type', i.action_type, 'quantity', i.quantity,
                   'consumed', CASE WHEN v_d.o_credit_model = 'multi'
                                    THEN json_build_object('ai', i.ai, 'whatsapp', i.whatsapp, 'email', i.email, 'sms', i.sms)
                                    ELSE json_build_object('ai', 0, 'whatsapp', 0, 'email', 0, 'sms', 0) END)
                   ORDER BY i.idx)
                  FROM jsonb_to_recordset(v_items)
                       AS i(idx integer, action_type text, quantity integer, ai integer, whatsapp integer,
                            email integer, sms integer));
  v_remaining := json_build_object('ai', v_d.o_ai_available, 'whatsapp', v_d.o_whatsapp_available,
                                   'email', v_d.o_email_available, 'sms', v_d.o_sms_available);
  IF v_d.o_credit_model = 'multi' THEN
    RETURN json_build_object('success', true, 'credit_model', 'multi', 'actions', v_actions,
      'consumed', json_build_object('ai', v_ai, 'whatsapp', v_whatsapp, 'email', v_email, 'sms', v_sms),
      'remaining', v_remaining,
      -- v1's fields: the unified cost, and what is left in every pool.
      'credits_consumed', v_cost,
      'remaining_credits', v_d.o_ai_available + v_d.o_whatsapp_available
                           + v_d.o_email_available + v_d.o_sms_available);
  END IF;
  RETURN json_build_object('success', true, 'credit_model', 'unified', 'actions', v_actions,
    'consumed', json_build_object('ai', 0, 'whatsapp', 0, 'email', 0, 'sms', 0),
    'remaining', v_remaining,
    -- v1's fields, for callers not yet reading the pools.
    'credits_consumed', v_cost, 'remaining_credits', v_d.o_credits_remaining);
END
$function$;

REVOKE ALL ON FUNCTION public.consume_credits_batch(uuid, jsonb) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.consume_credits_batch(uuid, jsonb) TO authenticated, service_role;
