-- The part of a consumption that consume_credits_rpc and consume_credits_batch share, in the order both answer it:
--
--   1. caller rules (guardian.may_consume_for)                          -> FORBIDDEN
--   2. the caller's own validation refusal, p_refusal (INVALID_QUANTITY, UNKNOWN_ACTION), answered after 1
--      What the call costs: the totals p_cost (unified) and p_ai .. p_sms (per pool) when the caller computed them
--      (consume_credits_batch); when p_cost is NULL, one action, p_action_type x p_quantity, read here from the
--      catalogue (consume_credits_rpc)                                  -> UNKNOWN_ACTION
--   3. the organization's credits row, locked, whose organization exists -> NO_CREDIT_ACCOUNT
--   4. with p_key (consume_credits_rpc's hashed idempotency key): the key seen before for this organization
--        with the same action and quantity (or stored without them)     -> the stored result (a replay)
--        with another action or quantity                                -> IDEMPOTENCY_KEY_REUSED
--   5. a trial (lib/shape.ts) whose cycle_end_date is past              -> TRIAL_EXPIRED
--   6. credit_model 'multi': each pool's requirement available, else INSUFFICIENT_CREDITS naming the first short pool
--      in the order ai, whatsapp, email, sms; any other model: p_cost from credits_remaining, else
--      INSUFFICIENT_CREDITS (credit_type 'unified')
--   7. the debit: multi, the pools (no write for an action that needs no pool); unified, credits_remaining.
-- It writes nothing but the debit: the callers write the log rows (one per call, or per batch element) and store the
-- key. What to do with the answer:
--   o_result not NULL, o_error_code NULL      -> return o_result as it is, write nothing (1-4: refused or replayed)
--   o_result not NULL, o_error_code not NULL  -> a refusal to log (IDEMPOTENCY_KEY_REUSED, TRIAL_EXPIRED,
--                                                INSUFFICIENT_CREDITS; only the last two are stored under a key)
--   o_result NULL                             -> debited; o_* give the row after the debit
-- o_cost and o_ai .. o_sms are what the call costs (from 2) whenever it got that far.
--
-- consume_credits_batch's common case takes one statement: the conditional UPDATE of step 7 that also checks 3, 5
-- and 6, so the row is locked and written once (a SELECT ... FOR UPDATE then an UPDATE lock and write it twice: two
-- WAL records, two buffer dirties, on the hottest row of the call). consume_credits_rpc runs the same kind of
-- statement for one action itself, joined to the catalogue, and calls this function when it matches no row. When it
-- matches no row (a refusal, an organization not migrated yet, an action that needs no pool, or a keyed call, whose
-- key must be read under the lock before anything is debited), the steps run one by one, the row locked with
-- SELECT ... FOR UPDATE (a unified debit first tries its own one-statement UPDATE). The paths give the same answer:
-- an UPDATE's conditions are those of steps 3, 5 and 6, evaluated on the row it locks (PostgreSQL re-checks them on
-- the newest version when another transaction changed the row).
--
-- SECURITY INVOKER: it runs with the privileges of the SECURITY DEFINER function that calls it, its owner. Nobody
-- else may execute it. search_path ends with pg_temp (see consume_credits_rpc_v2.sql).
-- CREATE OR REPLACE cannot change the row type its OUT parameters make: a definition with other OUT parameters (an
-- earlier version of this file) is dropped first, in this transaction. Nothing depends on it in the catalogue (the
-- PL/pgSQL functions that call it look it up by name when they run).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
              WHERE p.oid = to_regprocedure('guardian.consume_debit(uuid,json,bigint,bigint,bigint,bigint,bigint,text,text,integer)')
                AND p.proargnames IS DISTINCT FROM ARRAY[
                  'p_organization_id', 'p_refusal', 'p_cost', 'p_ai', 'p_whatsapp', 'p_email', 'p_sms', 'p_key',
                  'p_action_type', 'p_quantity', 'o_result', 'o_error_code', 'o_error', 'o_credit_model',
                  'o_allocation_epoch', 'o_credits_remaining', 'o_ai_available', 'o_whatsapp_available',
                  'o_email_available', 'o_sms_available', 'o_cost', 'o_ai', 'o_whatsapp', 'o_email', 'o_sms']::text[]) THEN
    DROP FUNCTION guardian.consume_debit(uuid, json, bigint, bigint, bigint, bigint, bigint, text, text, integer);
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION guardian.consume_debit(
  p_organization_id uuid,
  p_refusal json,
  p_cost bigint,
  p_ai bigint,
  p_whatsapp bigint,
  p_email bigint,
  p_sms bigint,
  p_key text,
  p_action_type text,
  p_quantity integer,
  OUT o_result json,
  OUT o_error_code text,
  OUT o_error text,
  OUT o_credit_model text,
  OUT o_allocation_epoch integer,
  OUT o_credits_remaining integer,
  OUT o_ai_available integer,
  OUT o_whatsapp_available integer,
  OUT o_email_available integer,
  OUT o_sms_available integer,
  OUT o_cost bigint,
  OUT o_ai bigint,
  OUT o_whatsapp bigint,
  OUT o_email bigint,
  OUT o_sms bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
  v_org record;
  v_short text;
  v_required bigint;
  v_available bigint;
  v_key_result json;
  v_key_action text;
  v_key_quantity integer;
BEGIN
  IF NOT guardian.may_consume_for(p_organization_id) THEN
    o_result := json_build_object('success', false, 'error_code', 'FORBIDDEN',
                                  'error', 'not allowed to consume credits for this organization',
                                  'remaining_credits', 0, 'required_credits', 0);
    RETURN;
  END IF;

  IF p_refusal IS NOT NULL THEN
    o_result := p_refusal;
    RETURN;
  END IF;

  -- consume_credits_batch's common case: one statement locks, checks and debits the totals (a multi organization, a
  -- batch drawing on a pool). (consume_credits_rpc runs its own for one action before it calls this function.)
  IF p_key IS NULL THEN
    IF p_cost IS NOT NULL AND p_ai + p_whatsapp + p_email + p_sms > 0 THEN
      UPDATE public.organization_credits oc
         SET ai_credits_available = oc.ai_credits_available - p_ai,
             whatsapp_credits_available = oc.whatsapp_credits_available - p_whatsapp,
             email_credits_available = oc.email_credits_available - p_email,
             sms_credits_available = oc.sms_credits_available - p_sms,
             credits_remaining = greatest(0, oc.credits_remaining - p_cost),
             updated_at = now()
       WHERE oc.organization_id = p_organization_id
         AND oc.credit_model = 'multi'
         AND oc.ai_credits_available >= p_ai AND oc.whatsapp_credits_available >= p_whatsapp
         AND oc.email_credits_available >= p_email AND oc.sms_credits_available >= p_sms
         AND ({{is_trial:oc}} AND oc.cycle_end_date < now()) IS NOT TRUE
         AND EXISTS (SELECT 1 FROM public.organizations o WHERE o.id = oc.organization_id)
      RETURNING oc.credit_model, oc.allocation_epoch, oc.credits_remaining, oc.ai_credits_available,
                oc.whatsapp_credits_available, oc.email_credits_available, oc.sms_credits_available,
                p_cost, p_ai, p_whatsapp, p_email, p_sms
        INTO o_credit_model, o_allocation_epoch, o_credits_remaining, o_ai_available, o_whatsapp_available,
             o_email_available, o_sms_available, o_cost, o_ai, o_whatsapp, o_email, o_sms;
      IF FOUND THEN
        RETURN;
      END IF;
    END IF;
  END IF;

  -- What the call costs.
  IF p_cost IS NULL THEN
    SELECT a.credits_cost::bigint * p_quantity, a.ai_credits_required::bigint * p_quantity,
           a.whatsapp_credits_required::bigint * p_quantity, a.email_credits_required::bigint * p_quantity,
           a.sms_credits_required::bigint * p_quantity
      INTO o_cost, o_ai, o_whatsapp, o_email, o_sms
      FROM public.credit_actions a
     WHERE a.action_type = p_action_type;
    IF NOT FOUND THEN
      o_result := json_build_object('success', false, 'error_code', 'UNKNOWN_ACTION',
                                    'error', 'unknown action type', 'remaining_credits', 0, 'required_credits', 0);
      RETURN;
    END IF;
  ELSE
    o_cost := p_cost; o_ai := p_ai; o_whatsapp := p_whatsapp; o_email := p_email; o_sms := p_sms;
  END IF;

  IF p_key IS NULL THEN
    -- (A unified organization: v1's debit, as one statement.)
    UPDATE public.organization_credits oc
       SET credits_remaining = oc.credits_remaining - o_cost, updated_at = now()
     WHERE oc.organization_id = p_organization_id
       AND oc.credit_model <> 'multi'
       AND oc.credits_remaining >= o_cost
       AND ({{is_trial:oc}} AND oc.cycle_end_date < now()) IS NOT TRUE
       AND EXISTS (SELECT 1 FROM public.organizations o WHERE o.id = oc.organization_id)
    RETURNING oc.credit_model, oc.allocation_epoch, oc.credits_remaining, oc.ai_credits_available,
              oc.whatsapp_credits_available, oc.email_credits_available, oc.sms_credits_available
      INTO o_credit_model, o_allocation_epoch, o_credits_remaining, o_ai_available, o_whatsapp_available,
           o_email_available, o_sms_available;
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;

  -- Step by step, under the row lock.
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
    o_result := json_build_object('success', false, 'error_code', 'NO_CREDIT_ACCOUNT',
                                  'error', 'the organization has no credit account',
                                  'remaining_credits', 0, 'required_credits', o_cost);
    RETURN;
  END IF;
  o_credit_model := v_org.credit_model;
  o_allocation_epoch := v_org.allocation_epoch;
  o_credits_remaining := v_org.credits_remaining;
  o_ai_available := v_org.ai_credits_available;
  o_whatsapp_available := v_org.whatsapp_credits_available;
  o_email_available := v_org.email_credits_available;
  o_sms_available := v_org.sms_credits_available;

  IF p_key IS NOT NULL THEN
    SELECT k.result, k.action_type, k.quantity INTO v_key_result, v_key_action, v_key_quantity
      FROM guardian.idempotency_keys k
     WHERE k.organization_id = p_organization_id AND k.idempotency_key = p_key;
    IF FOUND THEN
      IF v_key_action IS NULL OR (v_key_action, v_key_quantity) = (p_action_type, p_quantity) THEN
        o_result := v_key_result;
        RETURN;
      END IF;
      o_error_code := 'IDEMPOTENCY_KEY_REUSED';
      o_error := format('idempotency key already used with action %s x%s', v_key_action, v_key_quantity);
      o_result := json_build_object('success', false, 'error_code', o_error_code, 'error', o_error,
                                    'remaining_credits', 0, 'required_credits', o_cost);
      RETURN;
    END IF;
  END IF;

  IF v_org.is_trial AND v_org.cycle_end_date < now() THEN
    o_error_code := 'TRIAL_EXPIRED';
    o_error := 'the trial period has ended';
    o_result := json_build_object('success', false, 'error_code', o_error_code, 'error', o_error,
                                  'remaining_credits', CASE WHEN v_org.credit_model = 'multi' THEN
                                    v_org.ai_credits_available + v_org.whatsapp_credits_available
                                    + v_org.email_credits_available + v_org.sms_credits_available
                                    ELSE v_org.credits_remaining END,
                                  'required_credits', o_cost);
    RETURN;
  END IF;

  IF v_org.credit_model = 'multi' THEN
    IF v_org.ai_credits_available < o_ai THEN
      v_short := 'ai'; v_required := o_ai; v_available := v_org.ai_credits_available;
    ELSIF v_org.whatsapp_credits_available < o_whatsapp THEN
      v_short := 'whatsapp'; v_required := o_whatsapp; v_available := v_org.whatsapp_credits_available;
    ELSIF v_org.email_credits_available < o_email THEN
      v_short := 'email'; v_required := o_email; v_available := v_org.email_credits_available;
    ELSIF v_org.sms_credits_available < o_sms THEN
      v_short := 'sms'; v_required := o_sms; v_available := v_org.sms_credits_available;
    END IF;
  ELSIF v_org.credits_remaining < o_cost THEN
    v_short := 'unified'; v_required := o_cost; v_available := v_org.credits_remaining;
  END IF;

  IF v_short IS NOT NULL THEN
    o_error_code := 'INSUFFICIENT_CREDITS';
    o_error := CASE WHEN v_short = 'unified'
                    THEN format('insufficient credits: %s required, %s available', v_required, v_available)
                    ELSE format('insufficient %s credits: %s required, %s available', v_short, v_required, v_available)
               END;
    o_result := json_build_object('success', false, 'error_code', o_error_code, 'error', o_error,
                                  'credit_type', v_short, 'required', v_required, 'available', v_available,
                                  'remaining_credits', v_available, 'required_credits', v_required);
    RETURN;
  END IF;

  IF v_org.credit_model = 'multi' THEN
    -- The pools the action draws on, and the unified balance follows with the unified cost, floored at 0 (never a
    -- reason to refuse: contract, "The application around the credits keeps working"). An action that needs no pool
    -- and costs nothing writes nothing.
    IF o_ai + o_whatsapp + o_email + o_sms > 0 OR o_cost > 0 THEN
      UPDATE public.organization_credits oc
         SET ai_credits_available = oc.ai_credits_available - o_ai,
             whatsapp_credits_available = oc.whatsapp_credits_available - o_whatsapp,
             email_credits_available = oc.email_credits_available - o_email,
             sms_credits_available = oc.sms_credits_available - o_sms,
             credits_remaining = greatest(0, oc.credits_remaining - o_cost),
             updated_at = now()
       WHERE oc.organization_id = p_organization_id
      RETURNING oc.credits_remaining, oc.ai_credits_available, oc.whatsapp_credits_available,
                oc.email_credits_available, oc.sms_credits_available
        INTO o_credits_remaining, o_ai_available, o_whatsapp_available, o_email_available, o_sms_available;
    END IF;
  ELSE
    UPDATE public.organization_credits oc
       SET credits_remaining = oc.credits_remaining - o_cost, updated_at = now()
     WHERE oc.organization_id = p_organization_id
    RETURNING oc.credits_remaining, oc.ai_credits_available, oc.whatsapp_credits_available,
              oc.email_credits_available, oc.sms_credits_available
      INTO o_credits_remaining, o_ai_available, o_whatsapp_available, o_email_available, o_sms_available;
  END IF;
END
$function$;

REVOKE ALL ON FUNCTION guardian.consume_debit(uuid, json, bigint, bigint, bigint, bigint, bigint, text, text, integer)
  FROM PUBLIC, anon, authenticated, service_role;
