-- Trial calls of the installed consume_credits_rpc and consume_credits_batch, as the application and its users make
-- them, in a subtransaction that is always rolled back: nothing is debited, logged or stored.
--
-- Run (1) inside the transaction that installs v2 or the batch function, after CREATE: a function that errors (a
-- column the database does not have, a missing object, a privilege) fails the install, which rolls back, and v1 (or
-- the previous version) keeps serving; and (2) by the verification after every `pulumi up`, so a function broken
-- later fails the update instead of passing it.
--
-- The calls, each of which must return an answer (a JSON object with `success`), never raise:
--   * as service_role (the CRM's edge functions), with named arguments as they call it, the two-argument form:
--     an organization served by each model present (unified, multi, a trial), an amount it can pay and one it cannot;
--   * the four-argument form with an idempotency key, repeated, and the key reused with another quantity;
--   * an unknown action type, an organization without a credit account;
--   * as a member (authenticated with JWT claims), for its own organization and for another one (FORBIDDEN);
--   * the batch function, where it exists, for the same organizations.
-- A refusal is an answer; only an error, or a member served for another organization, fails. Where only the
-- two-argument v1 is installed (after a rollback), only its calls are made, and serving a member for another
-- organization is v1's known weakness (lib/v1.ts), not a failure of this check.
DO $trial$
DECLARE
  v_action text;
  v_org uuid;
  v_member record;
  v_other uuid;
  v_r json;
  v_step text;
  v_batch boolean := to_regprocedure('public.consume_credits_batch(uuid,jsonb)') IS NOT NULL;
  v_v2 boolean := to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)') IS NOT NULL;
BEGIN
  BEGIN
    SELECT a.action_type INTO v_action FROM public.credit_actions a ORDER BY a.credits_cost DESC, a.action_type LIMIT 1;
    v_action := coalesce(v_action, 'guardian_trial_action');

    PERFORM set_config('request.jwt.claims', '{"role": "service_role"}', true);
    SET LOCAL ROLE service_role;
    FOR v_org IN
      -- One organization per model (and a trial, and the first one), plus one that has no credit account.
      (SELECT DISTINCT ON (k) oc.organization_id
         FROM public.organization_credits oc
        CROSS JOIN LATERAL (SELECT to_jsonb(oc) ->> 'credit_model' AS k) m
        ORDER BY k, oc.organization_id)
      UNION ALL
      (SELECT oc.organization_id FROM public.organization_credits oc
        WHERE oc.cycle_end_date < now() ORDER BY oc.cycle_end_date LIMIT 1)
      UNION ALL
      -- (v1 breaks on an organization that does not exist: it inserts a free credit row, then its log row violates
      -- the log's foreign key. Only v2 is asked.)
      SELECT '00000000-0000-4000-8000-00000000dead'::uuid WHERE v_v2
    LOOP
      v_step := format('service_role, organization %s, %s x1', v_org, v_action);
      v_r := public.consume_credits_rpc(p_organization_id => v_org, p_action_type => v_action);
      IF v_r IS NULL OR v_r ->> 'success' IS NULL THEN RAISE EXCEPTION 'no answer: %', v_r; END IF;
      CONTINUE WHEN NOT v_v2;
      v_step := format('service_role, organization %s, %s x100000', v_org, v_action);
      v_r := public.consume_credits_rpc(v_org, v_action, 100000);
      IF v_r IS NULL OR v_r ->> 'success' IS NULL THEN RAISE EXCEPTION 'no answer: %', v_r; END IF;
      v_step := format('service_role, organization %s, with an idempotency key, twice, then reused', v_org);
      v_r := public.consume_credits_rpc(v_org, v_action, 1, 'guardian-trial-call');
      v_r := public.consume_credits_rpc(v_org, v_action, 1, 'guardian-trial-call');
      v_r := public.consume_credits_rpc(v_org, v_action, 2, 'guardian-trial-call');
      IF v_r IS NULL OR v_r ->> 'success' IS NULL THEN RAISE EXCEPTION 'no answer: %', v_r; END IF;
      v_step := format('service_role, organization %s, an unknown action type', v_org);
      v_r := public.consume_credits_rpc(v_org, 'guardian_trial_unknown_action');
      IF v_r IS NULL OR v_r ->> 'success' IS NULL THEN RAISE EXCEPTION 'no answer: %', v_r; END IF;
      IF v_batch THEN
        v_step := format('service_role, consume_credits_batch for organization %s', v_org);
        v_r := public.consume_credits_batch(v_org, jsonb_build_array(jsonb_build_object('action_type', v_action, 'quantity', 1),
                                                                     jsonb_build_object('action_type', v_action, 'quantity', 100000)));
        IF v_r IS NULL OR v_r ->> 'success' IS NULL THEN RAISE EXCEPTION 'no answer: %', v_r; END IF;
      END IF;
    END LOOP;
    RESET ROLE;

    -- A member: a user whose profile names an organization, for its own and for another organization.
    SELECT p.id, p.organization_id INTO v_member
      FROM public.profiles p
     WHERE p.organization_id IS NOT NULL
     ORDER BY p.id LIMIT 1;
    IF FOUND THEN
      SELECT oc.organization_id INTO v_other FROM public.organization_credits oc
       WHERE oc.organization_id <> v_member.organization_id ORDER BY oc.organization_id LIMIT 1;
      PERFORM set_config('request.jwt.claims', json_build_object('sub', v_member.id, 'role', 'authenticated')::text, true);
      SET LOCAL ROLE authenticated;
      v_step := format('authenticated member %s, own organization %s', v_member.id, v_member.organization_id);
      v_r := public.consume_credits_rpc(p_organization_id => v_member.organization_id, p_action_type => v_action);
      IF v_r IS NULL OR v_r ->> 'success' IS NULL THEN RAISE EXCEPTION 'no answer: %', v_r; END IF;
      IF v_other IS NOT NULL AND v_v2 THEN
        v_step := format('authenticated member %s, another organization %s', v_member.id, v_other);
        v_r := public.consume_credits_rpc(p_organization_id => v_other, p_action_type => v_action);
        IF v_r IS NULL OR v_r ->> 'success' IS NULL THEN RAISE EXCEPTION 'no answer: %', v_r; END IF;
        IF (v_r ->> 'success')::boolean AND v_r ->> 'error_code' IS NULL THEN
          RAISE EXCEPTION 'a member was served for another organization: %', v_r;
        END IF;
      END IF;
      RESET ROLE;
    END IF;

    v_step := 'done';
    RAISE EXCEPTION USING ERRCODE = 'GT001', MESSAGE = 'guardian trial calls passed';
  EXCEPTION
    WHEN SQLSTATE 'GT001' THEN
      NULL; -- every call answered; their effects are rolled back with this subtransaction
    WHEN OTHERS THEN
      RAISE EXCEPTION 'trial call failed (%): % [SQLSTATE %]', v_step, SQLERRM, SQLSTATE
        USING HINT = 'the function was called as the application calls it, and raised instead of answering';
  END;
END
$trial$;
