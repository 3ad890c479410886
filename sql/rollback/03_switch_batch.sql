-- Rollback step 2b: the locked organizations ($1) go back to the unified model. Nothing is recomputed: while the
-- multi model was applied, v2 took every success's unified cost from credits_remaining as v1 would have (floored at
-- 0), and the application's own writes there stand, so credits_remaining, total_credits, plan_name and the cycle
-- dates are already what v1 should read (contract: "The application around the credits keeps working"). The switch
-- writes credit_model alone, and says how many unified values it changed: none, unless something else on the table
-- (a trigger the program did not write) rewrote them, and then the caller refuses the batch (nothing switched).
--
-- What forward again needs is kept beside it: each organization's plan_name, total_credits and cycle_end_date as
-- the switch found them, and the log's last id then, in guardian.rolled_back_pools. The pool columns themselves
-- stay as they are (v1 never writes them), so forward again gives back these pools minus what v1 served meanwhile,
-- unless the application changed the plan, the total or the cycle meanwhile (sql/backfill/batch.sql).
WITH before AS (
  SELECT oc.organization_id, oc.plan_name, oc.total_credits, oc.credits_remaining, oc.cycle_end_date
    FROM public.organization_credits oc
   WHERE oc.organization_id = ANY ($1::uuid[]) AND oc.credit_model <> 'unified'
), switched AS (
  UPDATE public.organization_credits oc
     SET credit_model = 'unified'
    FROM before b
   WHERE oc.organization_id = b.organization_id
  RETURNING oc.organization_id, oc.plan_name, oc.total_credits, oc.credits_remaining, oc.cycle_end_date
), kept AS (
  INSERT INTO guardian.rolled_back_pools (organization_id, plan_name, total_credits, cycle_end_date, log_mark)
  SELECT s.organization_id, s.plan_name, s.total_credits, s.cycle_end_date,
         (SELECT coalesce(max(l.id), 0) FROM public.credit_consumption_logs l)
    FROM switched s
  ON CONFLICT (organization_id) DO UPDATE
    SET plan_name = EXCLUDED.plan_name, total_credits = EXCLUDED.total_credits,
        cycle_end_date = EXCLUDED.cycle_end_date, log_mark = EXCLUDED.log_mark, rolled_back_at = now()
  RETURNING organization_id
)
SELECT (SELECT count(*) FROM switched)::int AS switched,
       (SELECT count(*) FROM kept)::int AS kept,
       (SELECT count(*) FROM switched s JOIN before b USING (organization_id)
         WHERE (s.plan_name, s.total_credits, s.credits_remaining, s.cycle_end_date)
               IS DISTINCT FROM (b.plan_name, b.total_credits, b.credits_remaining, b.cycle_end_date))::int AS unified_changed;
