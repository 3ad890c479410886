-- consume_credits_rpc v1, as live before Phase 3.5: unlocked read-then-write (racy), SECURITY DEFINER,
-- executable by PUBLIC, trusting the caller's organization id. Kept verbatim as the thing Phase 3.5 replaces.
CREATE FUNCTION public.consume_credits_rpc(p_organization_id uuid, p_action_type text)
RETURNS json
LANGUAGE plpgsql
SECURITY DEFINER
AS $function$
DECLARE
  v_cost integer;
  v_remaining integer;
BEGIN
  SELECT credits_cost INTO v_cost FROM credit_actions WHERE action_type = p_action_type;
  IF v_cost IS NULL THEN
    INSERT INTO credit_actions (action_type, credits_cost, description)
    VALUES (p_action_type, 1, 'auto-added') ON CONFLICT DO NOTHING;
    v_cost := 1;
  END IF;

  SELECT credits_remaining INTO v_remaining FROM organization_credits WHERE organization_id = p_organization_id;
  IF v_remaining IS NULL OR v_remaining < v_cost THEN
    INSERT INTO credit_consumption_logs (organization_id, action_type, credits_consumed, credits_remaining, success, error_message)
    VALUES (p_organization_id, p_action_type, 0, coalesce(v_remaining, 0), false, 'Insufficient credits');
    RETURN json_build_object('success', false, 'error', 'Insufficient credits',
                             'remaining_credits', coalesce(v_remaining, 0), 'required_credits', v_cost);
  END IF;

  UPDATE organization_credits
     SET credits_remaining = v_remaining - v_cost, updated_at = now()
   WHERE organization_id = p_organization_id;

  INSERT INTO credit_consumption_logs (organization_id, action_type, credits_consumed, credits_remaining, success)
  VALUES (p_organization_id, p_action_type, v_cost, v_remaining - v_cost, true);

  RETURN json_build_object('success', true, 'remaining_credits', v_remaining - v_cost, 'credits_consumed', v_cost);
END;
$function$;
