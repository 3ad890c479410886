-- One reading's invariants (`npm run watch`), on the organizations the log shows active since log id $1 (at most
-- $2 of them, the most recent): no pool below 0 or above its total, and available + consumed in the epoch = the
-- pools the epoch started with (guardian.allocations). Returns how many were checked and which broke what.
WITH active AS (
  SELECT DISTINCT l.organization_id FROM (
    SELECT organization_id FROM public.credit_consumption_logs WHERE id > $1 ORDER BY id DESC LIMIT $2 * 20) l
   LIMIT $2
), cons AS (
  SELECT l.organization_id, l.allocation_epoch, sum(l.ai_consumed) ai, sum(l.whatsapp_consumed) whatsapp,
         sum(l.email_consumed) email, sum(l.sms_consumed) sms
    FROM public.credit_consumption_logs l JOIN active a USING (organization_id)
   WHERE l.success AND l.credit_model = 'multi'
   GROUP BY 1, 2
), chk AS (
  SELECT oc.organization_id,
         CASE WHEN least(oc.ai_credits_available, oc.whatsapp_credits_available, oc.email_credits_available,
                         oc.sms_credits_available) < 0 THEN 'a pool below 0'
              WHEN oc.ai_credits_available > oc.ai_credits_total OR oc.whatsapp_credits_available > oc.whatsapp_credits_total
                OR oc.email_credits_available > oc.email_credits_total OR oc.sms_credits_available > oc.sms_credits_total
                THEN 'a pool above its total'
              WHEN al.organization_id IS NOT NULL AND al.rule <> 'kept'
                AND (oc.ai_credits_available + coalesce(c.ai, 0), oc.whatsapp_credits_available + coalesce(c.whatsapp, 0),
                     oc.email_credits_available + coalesce(c.email, 0), oc.sms_credits_available + coalesce(c.sms, 0))
                    IS DISTINCT FROM (al.ai::bigint, al.whatsapp::bigint, al.email::bigint, al.sms::bigint)
                THEN 'available + consumed differs from the allocation'
         END AS broken
    FROM public.organization_credits oc
    JOIN active a USING (organization_id)
    LEFT JOIN cons c ON c.organization_id = oc.organization_id AND c.allocation_epoch = oc.allocation_epoch
    LEFT JOIN guardian.allocations al ON al.organization_id = oc.organization_id AND al.epoch = oc.allocation_epoch
   WHERE oc.credit_model = 'multi'
)
SELECT (SELECT count(*) FROM chk)::int AS checked,
       coalesce((SELECT jsonb_agg(jsonb_build_object('organization', organization_id, 'broken', broken)) FROM (
         SELECT * FROM chk WHERE broken IS NOT NULL ORDER BY organization_id LIMIT 5) x), '[]'::jsonb) AS broken,
       (SELECT count(*) FROM chk WHERE broken IS NOT NULL)::int AS broken_count;
