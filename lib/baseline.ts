/**
 * The pre-Phase-3.5 Guardian schema (facts.md), created where missing. On a database that already has it (a real
 * Supabase) nothing changes: every file guards each object, and the v1 function and the live RLS are only created
 * together with the tables they belong to.
 */
import type { Client } from "pg";
import { inTransaction } from "./db";
import { explainSqlError, loadSql } from "./sql";

export const BASELINE_TABLES = ["organizations", "profiles", "organization_credits", "credit_actions", "credit_consumption_logs"];

export interface BaselineResult {
  /** Objects this call created (empty on a database that already had the baseline). */
  created: string[];
}

async function run(c: Client, file: string): Promise<void> {
  const f = loadSql(file);
  try {
    await c.query(f.text);
  } catch (e) {
    throw explainSqlError(e, f.file, f.text);
  }
}

export async function ensureBaseline(c: Client): Promise<BaselineResult> {
  const created: string[] = [];
  // Serialise concurrent callers (parallel tests share cluster-wide roles).
  await c.query("SELECT pg_advisory_lock(4711001)");
  try {
    await inTransaction(c, async () => {
      const before = await c.query(`SELECT t, to_regclass('public.' || t) IS NOT NULL AS present FROM unnest($1::text[]) t`, [BASELINE_TABLES]);
      const had = new Map<string, boolean>(before.rows.map((r: { t: string; present: boolean }) => [r.t, r.present]));
      const hadFn =
        (await c.query(`SELECT count(*)::int n FROM pg_proc WHERE proname = 'consume_credits_rpc' AND pronamespace = 'public'::regnamespace`)).rows[0].n > 0;
      const hadAuth = (await c.query(`SELECT to_regclass('auth.users') IS NOT NULL AS p`)).rows[0].p;
      await run(c, "baseline/01_supabase.sql");
      if (!hadAuth) created.push("auth.users");
      await run(c, "baseline/02_guardian.sql");
      for (const t of BASELINE_TABLES) if (!had.get(t)) created.push(`public.${t}`);
      if (!hadFn) {
        await run(c, "baseline/03_consume_credits_rpc_v1.sql");
        created.push("public.consume_credits_rpc(uuid,text)");
      }
      if (!had.get("organization_credits")) {
        await run(c, "baseline/04_live_rls.sql");
        created.push("live RLS policy on public.organization_credits");
      }
    });
  } finally {
    await c.query("SELECT pg_advisory_unlock(4711001)").catch(() => undefined);
  }
  return { created };
}
