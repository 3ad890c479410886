/**
 * What the rollback reads in the database (dbFacts), what the target model implies there (describeChanges, printed
 * before the confirmation) and what the update must have produced (verify, after it). No stack needed: facts in, lines
 * or checks out (test/unit/operations.rollback.test.ts).
 */
import type { OutputMap } from "@pulumi/pulumi/automation";
import type { DbFacts, FactCheck } from "./types";

export const V1 = "consume_credits_rpc(uuid,text)";
export const V2 = "consume_credits_rpc(uuid,text,integer,text)";
export const BATCH = "consume_credits_batch(uuid,jsonb)";
/** The functions each credit model leaves in public. */
export const FUNCTIONS_OF: Record<string, string[]> = { unified: [V1], multi: [BATCH, V2] };
export const fmt = (n: number) => n.toLocaleString("en-US");

export async function dbFacts(c: import("pg").Client): Promise<DbFacts> {
  const one = async (sql: string, params: unknown[] = []) => (await c.query(sql, params)).rows[0];
  const shape = await one(`
    SELECT to_regclass('public.organization_credits') IS NOT NULL AS has_table,
           EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('public.organization_credits')
                      AND attname = 'credit_model' AND NOT attisdropped) AS has_model,
           to_regclass('guardian.backups') IS NOT NULL AS has_backups`);
  const orgsByModel: Record<string, number> = {};
  if (shape.has_table) {
    const rows = (
      await c.query(
        shape.has_model
          ? `SELECT credit_model AS model, count(*)::int AS n FROM public.organization_credits GROUP BY 1 ORDER BY 1`
          : `SELECT 'unified' AS model, count(*)::int AS n FROM public.organization_credits HAVING count(*) > 0`,
      )
    ).rows;
    for (const r of rows) orgsByModel[r.model] = r.n;
  }
  const functions = (
    await c.query(`
    SELECT p.oid::regprocedure::text AS signature, md5(pg_get_functiondef(p.oid)) AS md5
      FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ('consume_credits_rpc', 'consume_credits_batch')
     ORDER BY 1`)
  ).rows;
  let backup: DbFacts["backup"] = null;
  let sinceBackup: DbFacts["sinceBackup"] = null;
  if (shape.has_backups) {
    const b = await one(
      `
      SELECT b.backup_id, b.created_at,
             (SELECT f ->> 'def_md5' FROM jsonb_array_elements(b.functions) f WHERE f ->> 'signature' = $1 LIMIT 1) AS v1_md5
        FROM guardian.backups b
       WHERE b.restore_verified AND to_regnamespace(b.schema_name) IS NOT NULL
       ORDER BY b.created_at DESC LIMIT 1`,
      [V1],
    );
    if (b && /^guardian_backup_[0-9a-f_]+$/.test(b.backup_id)) {
      backup = { backupId: b.backup_id, createdAt: new Date(b.created_at).toISOString(), v1Md5: b.v1_md5 };
      const s = await one(`
        SELECT count(*)::int AS n, coalesce(sum(l.credits_consumed), 0)::bigint AS cost
          FROM public.credit_consumption_logs l
         WHERE l.success AND NOT EXISTS (SELECT 1 FROM ${b.backup_id}.credit_consumption_logs x WHERE x.id = l.id)`);
      sinceBackup = { successes: s.n, unifiedCost: Number(s.cost) };
    }
  }
  const orgsTotal = Object.values(orgsByModel).reduce((a, b) => a + b, 0);
  return { orgsTotal, orgsByModel, functions, backup, sinceBackup };
}

/** What the target model implies, against the database now. */
export function describeChanges(now: DbFacts, model: string, where: string): string[] {
  const L: string[] = [`  database ${where}`];
  const after = now.orgsTotal ? `${model} ${fmt(now.orgsTotal)}` : "none";
  const nowText =
    Object.entries(now.orgsByModel)
      .map(([k, v]) => `${k} ${fmt(v)}`)
      .join(", ") || "none";
  L.push(`    organizations per model: ${nowText} -> ${after}${nowText === after ? " (unchanged)" : ""}`);
  const want = FUNCTIONS_OF[model] ?? [];
  const have = now.functions.map((f) => f.signature);
  const dropped = have.filter((s) => !want.includes(s));
  const added = want.filter((s) => !have.includes(s));
  if (!dropped.length && !added.length) L.push(`    functions: ${have.join(", ") || "none"} (unchanged)`);
  for (const s of dropped) {
    const md5 = now.functions.find((f) => f.signature === s)!.md5;
    const by =
      s === V2 && added.includes(V1)
        ? ` replaced by ${V1}${now.backup ? `, v1 as recorded in backup ${now.backup.backupId} (md5 ${now.backup.v1Md5})` : ""}`
        : s === V1 && added.includes(V2)
          ? ` replaced by ${V2} (v2)`
          : " dropped";
    L.push(`    function ${s} (md5 ${md5}):${by}`);
  }
  for (const s of added.filter((a) => !((a === V1 && dropped.includes(V2)) || (a === V2 && dropped.includes(V1))))) L.push(`    function ${s}: created`);
  if (model === "unified" && (now.orgsByModel.multi ?? 0) > 0) {
    L.push(
      now.backup
        ? `    balances: nothing recomputed: ${fmt(now.orgsByModel.multi)} orgs switched back by credit_model alone, with the credits_remaining ` +
            "v2 and the application kept current (upgrades, cycle resets, grants and refunds made meanwhile stay)"
        : `    balances: the Rollback resource will refuse (no verified backup with v1 found now)`,
    );
  } else if (model === "multi" && (now.orgsByModel.unified ?? 0) > 0) {
    L.push(`    balances: a new backup is taken, then ${fmt(now.orgsByModel.unified)} orgs are allocated to the four pools from their current balances`);
  }
  return L;
}

/** The facts the update must have produced, from the stack's outputs and from the database. */
export function verify(model: string, outputs: OutputMap, db: DbFacts): FactCheck[] {
  const out = (k: string) => outputs[k]?.value;
  const checks: FactCheck[] = [];
  // A fact the program (of an older commit) does not export is not checked; what the model implies always is.
  const add = (fact: string, source: FactCheck["source"], expected: unknown, database: unknown) => {
    if (expected !== undefined) checks.push({ fact, source, expected, database, agrees: JSON.stringify(expected) === JSON.stringify(database) });
  };
  const agree = (fact: string, expected: unknown, database: unknown) => add(fact, "output", expected, database);
  agree("creditModel", out("creditModel"), model);
  agree("orgsTotal", out("orgsTotal"), db.orgsTotal);
  add("organizations per model", "model", db.orgsTotal ? { [model]: db.orgsTotal } : {}, db.orgsByModel);
  add("functions", "model", [...(FUNCTIONS_OF[model] ?? [])].sort(), db.functions.map((f) => f.signature).sort());
  const facts = out("verification") ?? {};
  if (model === "multi") {
    agree("orgsMigrated", out("orgsMigrated"), db.orgsByModel.multi ?? 0);
  } else {
    agree("verification.orgsMulti", facts.orgsMulti, db.orgsByModel.multi ?? 0);
    if (out("rolledBack")) agree("v1DefinitionMd5", out("v1DefinitionMd5"), db.functions.find((f) => f.signature === V1)?.md5 ?? null);
  }
  return checks;
}
