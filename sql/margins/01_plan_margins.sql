-- Margin tracking: what each plan and each API earns, with every pool counted.
--
-- public.plan_margins (plan_name, price_eur, cost_eur, margin_pct)
--   Per catalogue plan: cost_eur = ai x unit(ai) + whatsapp x unit(whatsapp) + email x unit(email) + sms x unit(sms),
--   the provider cost of the plan's full allocation; margin_pct = 100 x (price - cost) / price, rounded to 2 decimals.
--   * Every pool is counted. A pool missing from guardian.provider_costs makes cost_eur and margin_pct NULL (unknown),
--     never a cost of 0: the CRM's 82.3% came from a report that left SMS out.
--   * margin_pct is NULL for a plan that has no comparable price: NULL (custom, enterprise) or 0 (trial). The plan is
--     still listed, with its cost.
--   lib/margins.ts computes the same figures from config; test/margins.test.ts checks they agree.
--
-- public.action_margins: per API (action_type), the actual margin of what was consumed, from the consumption log.
--   Rows counted: successful consumptions served by the multi model (credit_model = 'multi'), whose per-pool
--   amounts are known. Unified-served and pre-Phase-3.5 rows carry no per-pool amounts and are left out.
--   cost_eur = sum over the four pools of <pool>_consumed x unit(pool).
--   Revenue attribution rule: every credit of a plan is worth the same share of its price,
--     revenue per credit = price_eur / (ai + whatsapp + email + sms allocation of the plan),
--   so an organization that uses its whole allocation is attributed exactly its price, and a credit of a costly pool
--   (sms, whatsapp) shows the loss or thin margin it makes. The plan is the organization's current plan_name
--   (trimmed, lower-cased) matched against guardian.plan_catalogue: the log does not record the plan at the time.
--   Rows of organizations without a comparable price (plan outside the catalogue, custom price, price 0) earn no
--   attributed revenue; they are counted in unpriced_calls and unpriced_cost_eur rather than hidden, and margin_pct is
--   computed on priced rows only: 100 x (revenue_eur - priced_cost_eur) / revenue_eur.
--
-- Security: both views are security_invoker, so they read with the caller's privileges and row level security.
-- SELECT is granted to service_role only. Not to authenticated: action_margins would be RLS-safe (a user would see
-- only the consumption of their own organization), but unit costs and margins are the operator's business data, not
-- the tenant's; plan_margins reads no tenant data at all and is equally confidential. anon and PUBLIC get nothing.
-- service_role reads guardian.plan_catalogue and guardian.provider_costs through the views, so it gets SELECT on those.
--
-- Idempotent: the views are dropped and created again in the same transaction (they hold no data).

DROP VIEW IF EXISTS public.action_margins;
DROP VIEW IF EXISTS public.plan_margins;

CREATE VIEW public.plan_margins WITH (security_invoker = true) AS
WITH unit AS (
  SELECT max(unit_cost_eur) FILTER (WHERE pool = 'ai') AS ai,
         max(unit_cost_eur) FILTER (WHERE pool = 'whatsapp') AS whatsapp,
         max(unit_cost_eur) FILTER (WHERE pool = 'email') AS email,
         max(unit_cost_eur) FILTER (WHERE pool = 'sms') AS sms
    FROM guardian.provider_costs
), plan AS (
  SELECT c.plan_name, c.price_eur,
         c.ai * u.ai + c.whatsapp * u.whatsapp + c.email * u.email + c.sms * u.sms AS cost_eur
    FROM guardian.plan_catalogue c
   CROSS JOIN unit u
)
SELECT plan_name,
       price_eur,
       cost_eur,
       CASE WHEN price_eur > 0 THEN round(100 * (price_eur - cost_eur) / price_eur, 2) END AS margin_pct
  FROM plan;

COMMENT ON VIEW public.plan_margins IS
  'Per plan: price, provider cost of the full allocation with every pool counted (ai, whatsapp, email, sms), margin %. NULL margin: no comparable price.';

CREATE VIEW public.action_margins WITH (security_invoker = true) AS
WITH unit AS (
  SELECT max(unit_cost_eur) FILTER (WHERE pool = 'ai') AS ai,
         max(unit_cost_eur) FILTER (WHERE pool = 'whatsapp') AS whatsapp,
         max(unit_cost_eur) FILTER (WHERE pool = 'email') AS email,
         max(unit_cost_eur) FILTER (WHERE pool = 'sms') AS sms
    FROM guardian.provider_costs
), org_rate AS (
  SELECT oc.organization_id,
         CASE WHEN c.price_eur > 0 AND c.ai + c.whatsapp + c.email + c.sms > 0
              THEN c.price_eur / (c.ai + c.whatsapp + c.email + c.sms) END AS revenue_per_credit
    FROM public.organization_credits oc
    JOIN guardian.plan_catalogue c ON c.plan_name = lower(btrim(oc.plan_name))
), used AS (
  SELECT l.action_type, l.quantity, l.ai_consumed, l.whatsapp_consumed, l.email_consumed, l.sms_consumed,
         l.ai_consumed * u.ai + l.whatsapp_consumed * u.whatsapp + l.email_consumed * u.email
           + l.sms_consumed * u.sms AS cost_eur,
         (l.ai_consumed + l.whatsapp_consumed + l.email_consumed + l.sms_consumed) * r.revenue_per_credit AS revenue_eur
    FROM public.credit_consumption_logs l
   CROSS JOIN unit u
    LEFT JOIN org_rate r ON r.organization_id = l.organization_id
   WHERE l.success AND l.credit_model = 'multi'
)
SELECT action_type,
       count(*) AS calls,
       sum(quantity) AS quantity,
       sum(ai_consumed) AS ai_consumed,
       sum(whatsapp_consumed) AS whatsapp_consumed,
       sum(email_consumed) AS email_consumed,
       sum(sms_consumed) AS sms_consumed,
       sum(cost_eur) AS cost_eur,
       coalesce(sum(cost_eur) FILTER (WHERE revenue_eur IS NOT NULL), 0) AS priced_cost_eur,
       round(coalesce(sum(revenue_eur), 0), 6) AS revenue_eur,
       CASE WHEN sum(revenue_eur) > 0
            THEN round(100 * (sum(revenue_eur) - sum(cost_eur) FILTER (WHERE revenue_eur IS NOT NULL)) / sum(revenue_eur), 2)
       END AS margin_pct,
       count(*) FILTER (WHERE revenue_eur IS NULL) AS unpriced_calls,
       coalesce(sum(cost_eur) FILTER (WHERE revenue_eur IS NULL), 0) AS unpriced_cost_eur
  FROM used
 GROUP BY action_type;

COMMENT ON VIEW public.action_margins IS
  'Per action_type: actual provider cost of multi-served successes (every pool), revenue attributed at price / plan allocation per credit, margin %. See sql/margins/01_plan_margins.sql.';

REVOKE ALL ON public.plan_margins, public.action_margins FROM PUBLIC, anon, authenticated;
GRANT SELECT ON public.plan_margins, public.action_margins TO service_role;
GRANT USAGE ON SCHEMA guardian TO service_role;
GRANT SELECT ON guardian.plan_catalogue, guardian.provider_costs TO service_role;
