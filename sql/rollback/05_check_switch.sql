-- Rollback: before v1 takes over, in the transaction that restores it: every organization is unified again, and
-- every organization the switch saw has its forward-again record (sql/rollback/03_switch_batch.sql). Until then v2
-- serves every call under a row lock.
SELECT (SELECT count(*) FROM public.organization_credits WHERE credit_model <> 'unified')::bigint AS still_multi,
       (SELECT count(*) FROM public.organization_credits)::bigint AS checked;
