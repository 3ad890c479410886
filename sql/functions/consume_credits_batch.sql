-- consume_credits_batch: several actions for one organization, all or nothing, with consume_credits_rpc's caller
-- rules, result and error shapes. p_actions = [{"action_type": "...", "quantity": n}, ...] ("quantity" omitted = 1).
--
--   1. caller rules (guardian.may_consume_for)                              -> FORBIDDEN
--   2. p_actions is an array of 1 to 1000 elements                          -> INVALID_QUANTITY
--   3. every element validated before anything else, in order; the first bad one is reported with its 0-based
--      "index": a quantity that is not an integer from 1 to 100000          -> INVALID_QUANTITY
--      an element that is not an object, or whose action_type is not in the catalogue -> UNKNOWN_ACTION
--   4. the organization's credits row, locked FOR UPDATE                    -> NO_CREDIT_ACCOUNT
--   5. a trial (lib/shape.ts) with cycle_end_date in the past                              -> TRIAL_EXPIRED
--   6. the totals per pool (multi) or the total unified cost (unified) must be available, else INSUFFICIENT_CREDITS
--      naming the first short pool with the batch's total requirement; nothing is debited.
--   7. one debit of the totals, one credit_consumption_logs row per element (also for 5 and 6, success=false).
-- Nothing is written for 1-4.
CREATE OR REPLACE FUNCTION public.consume_credits_batch(p_organization_id uuid, p_actions jsonb)
RETURNS json
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
  v_bad_index integer;
  v_bad_code text;
  v_items jsonb;
  v_cost bigint;
  v_ai bigint;
  v_whatsapp bigint;
  v_email bigint;
  v_sms bigint;
  v_org record;
  v_left record;
  v_short text;
  v_required bigint;
  v_available bigint;
  v_code text;
  v_error text;
  v_result json;
  v_actions json;
  v_remaining json;
BEGIN
  IF NOT guardian.may_consume_for(p_organization_id) THEN
    RETURN json_build_object('success', false, 'error_code', 'FORBIDDEN',
                             'error', 'not allowed to consume credits for this organization',
                             'remaining_credits', 0, 'required_credits', 0);
  END IF;

  IF p_actions IS NULL OR jsonb_typeof(p_actions) <> 'array'
     OR jsonb_array_length(p_actions) < 1 OR jsonb_array_length(p_actions) > 1000 THEN
    RETURN json_build_object('success', false, 'error_code', 'INVALID_QUANTITY',
      'error', 'p_actions must be a JSON array of 1 to 1000 {"action_type", "quantity"} objects',
      'remaining_credits', 0, 'required_credits', 0);
  END IF;

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
    RETURN json_build_object('success', false, 'error_code', 'INVALID_QUANTITY', 'index', v_bad_index,
      'error', format('p_actions[%s]: quantity must be an integer from 1 to 100000', v_bad_index),
      'remaining_credits', 0, 'required_credits', 0);
  ELSIF v_bad_code = 'UNKNOWN_ACTION' THEN
    RETURN json_build_object('success', false, 'error_code', 'UNKNOWN_ACTION', 'index', v_bad_index,
      'error', format('p_actions[%s]: unknown action type', v_bad_index),
      'remaining_credits', 0, 'required_credits', 0);
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
                             'remaining_credits', 0, 'required_credits', v_cost);
  END IF;

  IF v_org.is_trial AND v_org.cycle_end_date < now() THEN
    v_code := 'TRIAL_EXPIRED';
    v_error := 'the trial period has ended';
    v_result := json_build_object('success', false, 'error_code', v_code, 'error', v_error,
                                  'remaining_credits', CASE WHEN v_org.credit_model = 'multi' THEN
                                    v_org.ai_credits_available + v_org.whatsapp_credits_available
                                    + v_org.email_credits_available + v_org.sms_credits_available
                                    ELSE v_org.credits_remaining END,
                                  'required_credits', v_cost);
  ELSIF v_org.credit_model = 'multi' THEN
    IF v_org.ai_credits_available < v_ai THEN
      v_short := 'ai'; v_required := v_ai; v_available := v_org.ai_credits_available;
    ELSIF v_org.whatsapp_credits_available < v_whatsapp THEN
      v_short := 'whatsapp'; v_required := v_whatsapp; v_available := v_org.whatsapp_credits_available;
    ELSIF v_org.email_credits_available < v_email THEN
      v_short := 'email'; v_required := v_email; v_available := v_org.email_credits_available;
    ELSIF v_org.sms_credits_available < v_sms THEN
      v_short := 'sms'; v_required := v_sms; v_available := v_org.sms_credits_available;
    END IF;
  ELSIF v_org.credits_remaining < v_cost THEN
    v_short := 'unified'; v_required := v_cost; v_available := v_org.credits_remaining;
  END IF;

  IF v_short IS NOT NULL THEN
    v_code := 'INSUFFICIENT_CREDITS';
    v_error := CASE WHEN v_short = 'unified'
                    THEN format('insufficient credits: %s required, %s available', v_required, v_available)
                    ELSE format('insufficient %s credits: %s required, %s available', v_short, v_required, v_available)
               END;
    v_result := json_build_object('success', false, 'error_code', v_code, 'error', v_error,
                                  'credit_type', v_short, 'required', v_required, 'available', v_available,
                                  'remaining_credits', v_available, 'required_credits', v_required);
  END IF;

  IF v_code IS NOT NULL THEN
    INSERT INTO public.credit_consumption_logs
      (organization_id, action_type, credits_consumed, credits_remaining, success, error_message, error_code,
       quantity, user_id, credit_model, allocation_epoch)
    SELECT p_organization_id, i.action_type, 0, v_org.credits_remaining, false, v_error, v_code,
           i.quantity, auth.uid(), v_org.credit_model, v_org.allocation_epoch
      FROM jsonb_to_recordset(v_items) AS i(idx integer, action_type text, quantity integer)
     ORDER BY i.idx;
    RETURN v_result;
  END IF;

  IF v_org.credit_model = 'multi' THEN
    IF v_ai + v_whatsapp + v_email + v_sms > 0 THEN
      UPDATE public.organization_credits oc
         SET ai_credits_available = oc.ai_credits_available - v_ai,
             whatsapp_credits_available = oc.whatsapp_credits_available - v_whatsapp,
             email_credits_available = oc.email_credits_available - v_email,
             sms_credits_available = oc.sms_credits_available - v_sms,
             updated_at = now()
       WHERE oc.organization_id = p_organization_id
      RETURNING oc.credits_remaining, oc.ai_credits_available, oc.whatsapp_credits_available,
                oc.email_credits_available, oc.sms_credits_available
        INTO v_left;
    ELSE
      v_left := v_org;
    END IF;
    INSERT INTO public.credit_consumption_logs
      (organization_id, action_type, credits_consumed, credits_remaining, success,
       quantity, ai_consumed, whatsapp_consumed, email_consumed, sms_consumed,
       user_id, credit_model, allocation_epoch)
    SELECT p_organization_id, i.action_type, i.cost, v_org.credits_remaining, true,
           i.quantity, i.ai, i.whatsapp, i.email, i.sms,
           auth.uid(), 'multi', v_org.allocation_epoch
      FROM jsonb_to_recordset(v_items)
           AS i(idx integer, action_type text, quantity integer, cost integer, ai integer, whatsapp integer,
                email integer, sms integer)
     ORDER BY i.idx;
  ELSE
    UPDATE public.organization_credits oc
       SET credits_remaining = oc.credits_remaining - v_cost, updated_at = now()
     WHERE oc.organization_id = p_organization_id
    RETURNING oc.credits_remaining, oc.ai_credits_available, oc.whatsapp_credits_available,
              oc.email_credits_available, oc.sms_credits_available
      INTO v_left;
    -- Each row records the unified balance after its own element, as consecutive single calls would.
    INSERT INTO public.credit_consumption_logs
      (organization_id, action_type, credits_consumed, credits_remaining, success,
       quantity, user_id, credit_model, allocation_epoch)
    SELECT p_organization_id, i.action_type, i.cost,
           v_org.credits_remaining - sum(i.cost) OVER (ORDER BY i.idx), true,
           i.quantity, auth.uid(), 'unified', v_org.allocation_epoch
      FROM jsonb_to_recordset(v_items) AS i(idx integer, action_type text, quantity integer, cost integer)
     ORDER BY i.idx;
  END IF;

  v_actions := (SELECT json_agg(json_build_object(
                   'action_type', i.action_type, 'quantity', i.quantity,
                   'consumed', CASE WHEN v_org.credit_model = 'multi'
                                    THEN json_build_object('ai', i.ai, 'whatsapp', i.whatsapp, 'email', i.email, 'sms', i.sms)
                                    ELSE json_build_object('ai', 0, 'whatsapp', 0, 'email', 0, 'sms', 0) END)
                   ORDER BY i.idx)
                  FROM jsonb_to_recordset(v_items)
                       AS i(idx integer, action_type text, quantity integer, ai integer, whatsapp integer,
                            email integer, sms integer));
  v_remaining := json_build_object('ai', v_left.ai_credits_available, 'whatsapp', v_left.whatsapp_credits_available,
                                   'email', v_left.email_credits_available, 'sms', v_left.sms_credits_available);
  IF v_org.credit_model = 'multi' THEN
    RETURN json_build_object('success', true, 'credit_model', 'multi', 'actions', v_actions,
      'consumed', json_build_object('ai', v_ai, 'whatsapp', v_whatsapp, 'email', v_email, 'sms', v_sms),
      'remaining', v_remaining,
      -- v1's fields: the unified cost, and what is left in every pool.
      'credits_consumed', v_cost,
      'remaining_credits', v_left.ai_credits_available + v_left.whatsapp_credits_available
                           + v_left.email_credits_available + v_left.sms_credits_available);
  END IF;
  RETURN json_build_object('success', true, 'credit_model', 'unified', 'actions', v_actions,
    'consumed', json_build_object('ai', 0, 'whatsapp', 0, 'email', 0, 'sms', 0),
    'remaining', v_remaining,
    -- v1's fields, for callers not yet reading the pools.
    'credits_consumed', v_cost, 'remaining_credits', v_left.credits_remaining);
END
$function$;

REVOKE ALL ON FUNCTION public.consume_credits_batch(uuid, jsonb) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.consume_credits_batch(uuid, jsonb) TO authenticated, service_role;
