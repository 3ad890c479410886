/**
 * Facts the program reads from the database when it runs (preview and up alike), so that preview can say what up
 * will change: how many organizations the backfill will migrate, per allocation rule.
 */
import type { Client } from "pg";
import type { GuardianConfig } from "./config";

export interface BackfillPlan {
  pendingOrgs: number;
  /** "plan:starter" -> n, ..., "split" -> n. */
  orgsToMigrate: Record<string, number>;
  /** The orgs of "split", per plan name as stored after trim and lower-case ("(empty)" for ''): a name an operator
   *  means as a plan (pro, agency...) shows here, to be mapped in guardian:plans. */
  splitPlanNames: Record<string, number>;
  /** public.organizations without a credit row: nothing to migrate; consume_credits_rpc answers them
   *  NO_CREDIT_ACCOUNT in both models. */
  orgsWithoutCredits: number;
}

export async function backfillPlan(c: Client, config: GuardianConfig): Promise<BackfillPlan> {
  const hasModel = (
    await c.query(
      `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.organization_credits'::regclass
                        AND attname = 'credit_model' AND NOT attisdropped) AS p`,
    )
  ).rows[0].p;
  const r = await c.query(
    `SELECT CASE WHEN lower(btrim(plan_name, E' \\t\\r\\n')) = ANY($1::text[])
                 THEN 'plan:' || lower(btrim(plan_name, E' \\t\\r\\n')) ELSE 'split' END AS rule,
            count(*)::bigint AS n
       FROM public.organization_credits
      ${hasModel ? "WHERE credit_model = 'unified'" : ""}
      GROUP BY 1 ORDER BY 1`,
    [Object.keys(config.plans)],
  );
  const orgsToMigrate: Record<string, number> = {};
  let pendingOrgs = 0;
  for (const row of r.rows) {
    orgsToMigrate[row.rule] = Number(row.n);
    pendingOrgs += Number(row.n);
  }
  const names = await c.query(
    `SELECT coalesce(nullif(lower(btrim(plan_name, E' \\t\\r\\n')), ''), '(empty)') AS plan, count(*)::bigint AS n
       FROM public.organization_credits
      WHERE (plan_name IS NULL OR lower(btrim(plan_name, E' \\t\\r\\n')) <> ALL ($1::text[]))
        ${hasModel ? "AND credit_model = 'unified'" : ""}
      GROUP BY 1 ORDER BY 2 DESC, 1`,
    [Object.keys(config.plans)],
  );
  const splitPlanNames = Object.fromEntries(names.rows.map((r) => [r.plan, Number(r.n)]));
  return { pendingOrgs, orgsToMigrate, splitPlanNames, orgsWithoutCredits: await orgsWithoutCredits(c) };
}

/** public.organizations rows with no credit row: consume_credits_rpc answers them NO_CREDIT_ACCOUNT in either model
 *  (preview here, the report in operations/report/figures.ts). */
export async function orgsWithoutCredits(c: Client): Promise<number> {
  const r = await c.query(
    `SELECT count(*)::bigint AS n FROM public.organizations o
      WHERE NOT EXISTS (SELECT 1 FROM public.organization_credits oc WHERE oc.organization_id = o.id)`,
  );
  return Number(r.rows[0]?.n ?? 0);
}

export function describePlan(p: BackfillPlan): string {
  const without = p.orgsWithoutCredits
    ? `\nbackfill: ${p.orgsWithoutCredits.toLocaleString("en-US")} organization(s) have no credit row: nothing to migrate there; ` +
      "consume_credits_rpc answers them NO_CREDIT_ACCOUNT, before and after"
    : "";
  return describeOrgs(p) + without;
}

function describeOrgs(p: BackfillPlan): string {
  if (p.pendingOrgs === 0) return "backfill: no organization left in the unified model; nothing to migrate";
  const parts = Object.entries(p.orgsToMigrate).map(([k, v]) => `${k} ${v.toLocaleString("en-US")}`);
  const lines = [`backfill: will migrate ${p.pendingOrgs.toLocaleString("en-US")} organizations (${parts.join(", ")})`];
  const split = Object.entries(p.splitPlanNames ?? {});
  if (split.length) {
    lines.push(`backfill: the split rule, per plan name (map one in guardian:plans to give it a plan's allocation instead):`);
    for (const [name, n] of split) lines.push(`  ${name}: ${n.toLocaleString("en-US")} orgs -> split`);
  }
  return lines.join("\n");
}
