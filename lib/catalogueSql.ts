/**
 * The catalogue as config: pure functions turning the validated config into the SQL that writes it to the database,
 * and into the probes that read it back.
 *
 *   actionCatalogueSql  upserts public.credit_actions: credits_cost and the four *_credits_required columns of every
 *                       configured action (legacy action types the config maps are inserted). Rows the config does
 *                       not name are left alone (go/no-go refuses to start while any exists: findUnmappedActions).
 *   planCatalogueSql    makes guardian.plan_catalogue, guardian.allocation_split and guardian.provider_costs equal
 *                       to guardian:plans, guardian:split and guardian:providerCosts.
 *
 * Output is deterministic (keys sorted, pools in POOLS order, no timestamps): its sha256 changes only when the config
 * does, so preview shows a catalogue change as a change and nothing else.
 */
import { type GuardianConfig, POOLS } from "./config";

export type ActionsConfig = Pick<GuardianConfig, "actions">;
export type PlansConfig = Pick<GuardianConfig, "plans" | "split" | "providerCosts">;

/** A SQL string literal (standard_conforming_strings: only the quote is doubled). */
export function sqlString(s: string): string {
  if (s.includes("\u0000")) throw new Error(`a SQL string cannot contain a NUL character: ${JSON.stringify(s)}`);
  return `'${s.replace(/'/g, "''")}'`;
}

/** A SQL numeric literal for a finite, validated number. */
export function sqlNumber(n: number): string {
  if (typeof n !== "number" || !Number.isFinite(n)) throw new Error(`expected a finite number, got ${String(n)}`);
  return String(n);
}

function sortedKeys<T>(rec: Record<string, T>): string[] {
  return Object.keys(rec).sort();
}

const REQUIRED_COLUMNS = POOLS.map((p) => `${p}_credits_required`);
const ACTION_COLUMNS = ["credits_cost", ...REQUIRED_COLUMNS];

/** The cost an action missing from the live catalogue is inserted with: its configured creditsCost, else the sum of
 *  its pool costs. */
export function insertCost(a: GuardianConfig["actions"][string]): number {
  return a.creditsCost ?? POOLS.reduce((n, p) => n + a[p], 0);
}

/**
 * Upsert of every configured action into public.credit_actions:
 *   1. the pool requirements (and description) of every configured action; an action the live catalogue lacks is
 *      inserted with insertCost(). Live prices are not touched here.
 *   2. only with `setPrices` (the multi model) and only for actions whose config gives creditsCost: that price.
 *      Preview lists each such change (lib/catalogueSql.ts priceChanges); rollback restores the backed-up prices.
 * Only rows whose values differ are updated.
 */
export function actionCatalogueSql(config: ActionsConfig, opts: { setPrices: boolean } = { setPrices: true }): string {
  const names = sortedKeys(config.actions);
  const priced = names.filter((n) => config.actions[n].creditsCost !== undefined);
  // The same text in both models when no price is configured: a rollback's preview shows no change where none is made.
  const header =
    `-- generated from guardian:actions: ${names.length} action(s); credits required per pool, per unit; ` +
    `live credits_cost kept unless guardian:actions sets creditsCost${opts.setPrices || !priced.length ? "" : " (prices not set in the unified model)"}.\n`;
  if (names.length === 0) return `${header}SELECT 1 WHERE false; -- no action configured\n`;
  const rows = names.map((n) => {
    const a = config.actions[n];
    const values = [
      sqlString(n),
      sqlNumber(insertCost(a)),
      ...POOLS.map((p) => sqlNumber(a[p])),
      a.description === undefined ? "NULL" : sqlString(a.description),
    ];
    return `  (${values.join(", ")})`;
  });
  const cols = ["action_type", ...ACTION_COLUMNS, "description"];
  // An existing row gets the program's own columns (the pool requirements) and nothing else: its description and
  // price are the CRM's (a price changes only where guardian:actions sets creditsCost, below). A row the catalogue
  // lacks is inserted with the configured description.
  const updated = REQUIRED_COLUMNS.map((c) => `${c} = EXCLUDED.${c}`);
  let sql =
    header +
    `INSERT INTO public.credit_actions AS a (${cols.join(", ")})\nVALUES\n${rows.join(",\n")}\n` +
    `ON CONFLICT (action_type) DO UPDATE\n   SET ${updated.join(",\n       ")}\n` +
    ` WHERE (${REQUIRED_COLUMNS.map((c) => `a.${c}`).join(", ")})\n` +
    `       IS DISTINCT FROM (${REQUIRED_COLUMNS.map((c) => `EXCLUDED.${c}`).join(", ")});\n`;
  if (opts.setPrices && priced.length) {
    sql +=
      `-- prices set by guardian:actions.<action>.creditsCost:\n` +
      `UPDATE public.credit_actions AS a SET credits_cost = v.cost\n  FROM (VALUES\n` +
      priced.map((n) => `    (${sqlString(n)}, ${sqlNumber(config.actions[n].creditsCost!)})`).join(",\n") +
      `\n  ) AS v(action_type, cost)\n WHERE a.action_type = v.action_type AND a.credits_cost IS DISTINCT FROM v.cost;\n`;
  }
  return sql;
}

/** One price change a config makes to the live catalogue. */
export interface PriceChange {
  action: string;
  live: number;
  config: number;
}

/** Actions whose configured creditsCost differs from the live price (an action not live yet is no change). */
export function priceChanges(live: Record<string, number>, config: ActionsConfig): PriceChange[] {
  return sortedKeys(config.actions)
    .filter((n) => config.actions[n].creditsCost !== undefined && live[n] !== undefined && live[n] !== config.actions[n].creditsCost)
    .map((n) => ({ action: n, live: live[n], config: config.actions[n].creditsCost! }));
}

/** Makes the plan catalogue, the split and the provider costs in schema guardian equal to the config. */
export function planCatalogueSql(config: PlansConfig): string {
  const plans = sortedKeys(config.plans);
  const parts: string[] = [`-- generated from guardian:plans (${plans.length} plan(s)), guardian:split and guardian:providerCosts.\n`];
  if (plans.length) {
    const rows = plans.map((n) => {
      const p = config.plans[n];
      return `  (${[sqlString(n), p.priceEur === null ? "NULL" : sqlNumber(p.priceEur), ...POOLS.map((k) => sqlNumber(p[k]))].join(", ")})`;
    });
    const cols = ["price_eur", ...POOLS];
    parts.push(
      `INSERT INTO guardian.plan_catalogue AS p (plan_name, ${cols.join(", ")})\nVALUES\n${rows.join(",\n")}\n` +
        `ON CONFLICT (plan_name) DO UPDATE\n   SET ${cols.map((c) => `${c} = EXCLUDED.${c}`).join(", ")}\n` +
        ` WHERE (${cols.map((c) => `p.${c}`).join(", ")}) IS DISTINCT FROM (${cols.map((c) => `EXCLUDED.${c}`).join(", ")});\n`,
    );
  }
  parts.push(`DELETE FROM guardian.plan_catalogue WHERE plan_name <> ALL (ARRAY[${plans.map(sqlString).join(", ")}]::text[]);\n`);
  parts.push(
    `INSERT INTO guardian.allocation_split AS s (singleton, ${POOLS.join(", ")})\n` +
      `VALUES (true, ${POOLS.map((k) => sqlNumber(config.split[k])).join(", ")})\n` +
      `ON CONFLICT (singleton) DO UPDATE SET ${POOLS.map((k) => `${k} = EXCLUDED.${k}`).join(", ")}\n` +
      ` WHERE (${POOLS.map((k) => `s.${k}`).join(", ")}) IS DISTINCT FROM (${POOLS.map((k) => `EXCLUDED.${k}`).join(", ")});\n`,
  );
  parts.push(
    `INSERT INTO guardian.provider_costs AS c (pool, unit_cost_eur)\nVALUES\n` +
      POOLS.map((k) => `  (${sqlString(k)}, ${sqlNumber(config.providerCosts[k])})`).join(",\n") +
      `\nON CONFLICT (pool) DO UPDATE SET unit_cost_eur = EXCLUDED.unit_cost_eur\n` +
      ` WHERE c.unit_cost_eur IS DISTINCT FROM EXCLUDED.unit_cost_eur;\n`,
  );
  return parts.join("");
}

/** Probe for the action catalogue: a fingerprint of what the program manages in the configured actions (pool
 *  requirements; credits_cost only where the config sets it and prices are set), no row while any is missing. */
export function actionCatalogueProbe(config: ActionsConfig, opts: { setPrices: boolean } = { setPrices: true }): string {
  const names = sortedKeys(config.actions);
  const priced = names.filter((n) => config.actions[n].creditsCost !== undefined);
  const cost =
    opts.setPrices && priced.length ? `CASE WHEN action_type = ANY (ARRAY[${priced.map(sqlString).join(", ")}]::text[]) THEN credits_cost END, ` : "";
  return `SELECT md5(coalesce(string_agg(concat_ws(':', action_type, ${cost}${REQUIRED_COLUMNS.join(", ")}), ',' ORDER BY action_type), '')) AS fingerprint
  FROM public.credit_actions
 WHERE action_type = ANY (ARRAY[${names.map(sqlString).join(", ")}]::text[])
HAVING count(*) = ${names.length}`;
}

/** Probe for the plan catalogue, split and provider costs: a fingerprint of all three, no row until both the split
 *  and the four provider costs are there. */
export function planCatalogueProbe(): string {
  return `SELECT md5(concat_ws('|',
         (SELECT string_agg(concat_ws(':', plan_name, coalesce(price_eur::text, 'null'), ${POOLS.join(", ")}), ',' ORDER BY plan_name)
            FROM guardian.plan_catalogue),
         (SELECT concat_ws(':', ${POOLS.join(", ")}) FROM guardian.allocation_split),
         (SELECT string_agg(pool || ':' || unit_cost_eur, ',' ORDER BY pool) FROM guardian.provider_costs))) AS fingerprint
 WHERE EXISTS (SELECT 1 FROM guardian.allocation_split)
   AND (SELECT count(*) FROM guardian.provider_costs) = ${POOLS.length}`;
}

/**
 * Action types present in the database catalogue that the config does not map to pools, sorted and without
 * duplicates. Any of them is a NO-GO: v2 would not know which pool to charge. Matching is by exact name only; a
 * name is never guessed from a substring ("ai_email_generation" is not an e-mail action because it contains "email").
 */
export function findUnmappedActions(dbActionTypes: string[], config: ActionsConfig): string[] {
  const mapped = (t: string) => Object.hasOwn(config.actions, t);
  return [...new Set(dbActionTypes.filter((t) => !mapped(t)))].sort();
}
