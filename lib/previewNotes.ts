/**
 * What preview says about the database it met, before anything is written: the shape it adapted to, the price
 * changes the config makes, the policies the program will replace, what changes for v1's callers, and (rolling back)
 * what the restored v1 brings back. One line each, printed by index.ts as diagnostics of the update.
 */
import type { Client } from "pg";
import { accessLines } from "./access";
import { priceChanges } from "./catalogueSql";
import { type GuardianConfig, POOLS } from "./config";
import type { Discovery } from "./preflight";
import { describeShape } from "./shape";
import { v1Facts } from "./v1Behaviour";

export function discoveryLines(d: Discovery, config: GuardianConfig, multi: boolean): string[] {
  const out = [`database ${describeShape(d.shape)}`];
  const changes = priceChanges(d.livePrices, config);
  if (multi) {
    for (const p of changes) {
      out.push(`catalogue: price change ${p.action} ${p.live} -> ${p.config} (guardian:actions.${p.action}.creditsCost); rollback restores ${p.live}`);
    }
    const kept = Object.keys(d.livePrices).length - changes.length;
    out.push(`catalogue: ${kept} live price(s) kept as they are${changes.length ? `, ${changes.length} changed by config` : ""}`);
    out.push(...poolRequirementLines(d.livePrices, config));
  } else if (changes.length) {
    out.push(`catalogue: ${changes.length} price change(s) in guardian:actions take effect only with creditModel multi`);
  }
  const flat = (x: string | null) => (x ?? "-").replace(/\s+/g, " ");
  for (const p of d.foreignPolicies) {
    out.push(
      `tenant isolation: policy "${p.name}" on public.${p.table} (${p.command}, ${p.permissive.toLowerCase()}, ${p.roles}, USING ${flat(p.using)}${p.check ? `, WITH CHECK ${flat(p.check)}` : ""}) ` +
        `was not written by this program: it is recorded in the backup and replaced by the program's own policy for ${p.command === "ALL" ? "every command" : p.command}; what that keeps and closes is listed under "access:"`,
    );
  }
  // What changes for the application's users and backend (lib/access.ts), every change with its reason.
  out.push(...accessLines(d.access));
  if (multi && d.v1) {
    for (const c of d.v1.behaviourChanges) out.push(`consume_credits_rpc v1 -> v2, for callers: ${c}`);
  }
  if (multi) {
    out.push(
      `consume_credits_rpc v1 -> v2, for callers: ${d.expiredTrials} organization(s) on a trial whose cycle has ended get TRIAL_EXPIRED ` +
        "(logged, nothing debited) where v1 served them",
    );
  }
  return out;
}

/**
 * Each live action's pool requirements as v2 will read them (guardian:actions), one aligned row each under a header:
 * what a call costs in each pool, and its unified cost (the live price, or config's).
 */
export function poolRequirementLines(livePrices: Record<string, number>, config: GuardianConfig): string[] {
  const rows = Object.keys(livePrices)
    .sort()
    .map((a) => {
      const m = config.actions[a];
      const cost = m?.creditsCost ?? livePrices[a];
      return [a, String(cost), ...POOLS.map((p) => (m ? String(m[p]) : "?"))];
    });
  const head = ["action", "unified", ...POOLS];
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `catalogue: pools | ${r.map((x, i) => (i === 0 ? x.padEnd(width[i]) : x.padStart(width[i]))).join(" | ")}`;
  return [line(head), ...rows.map(line)];
}

/** In the unified model: what a rollback would restore, from the latest verified backup (nothing when none). */
export async function rollbackPreview(c: Client, config: GuardianConfig): Promise<string[]> {
  const has = (
    await c.query(
      `SELECT to_regclass('guardian.backups') IS NOT NULL AND to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)') IS NOT NULL AS p`,
    )
  ).rows[0].p;
  if (!has) return [];
  const bk = (
    await c.query(
      `SELECT b.backup_id, f ->> 'definition' AS def, f ->> 'acl' AS acl
       FROM guardian.backups b CROSS JOIN LATERAL jsonb_array_elements(b.functions) f
      WHERE b.restore_verified AND f ->> 'signature' = 'consume_credits_rpc(uuid,text)' AND to_regnamespace(b.schema_name) IS NOT NULL
      ORDER BY b.created_at DESC LIMIT 1`,
    )
  ).rows[0];
  if (!bk) return [];
  if (config.rollback.function === "safe") {
    return [`rollback: consume_credits_rpc(uuid,text) becomes the safe unified function (guardian:rollback.function = safe), not backup ${bk.backup_id}'s v1`];
  }
  const switched =
    "rollback: balances: nothing is recomputed; every organization is switched back with the unified values the application and v2 kept current (credits_remaining, total_credits, plan_name, cycle dates), so nothing written while multi was applied is lost";
  if (config.rollback.function === "verbatim") {
    return [
      `rollback: consume_credits_rpc(uuid,text) becomes backup ${bk.backup_id}'s v1 VERBATIM (guardian:rollback.function = verbatim): SECURITY DEFINER with no pinned search_path, so a caller's temporary objects can run as its owner; verification and the report flag it`,
      switched,
      ...v1Facts(bk.def, bk.acl).weaknesses.map((w) => `rollback: v1 brings back a weakness: ${w}`),
    ];
  }
  // The pin (sql/rollback/06_pin_v1.sql) closes the unpinned search_path; the other weaknesses come back.
  const pinned = bk.def.replace(/\n(\s*)SECURITY DEFINER/i, "\n$1SECURITY DEFINER\n SET search_path TO 'public', 'pg_temp'");
  return [
    `rollback: consume_credits_rpc(uuid,text) becomes backup ${bk.backup_id}'s v1 again: body, signature, result and COMMENT byte for byte, with a pinned search_path ending with pg_temp; set guardian:rollback.function = safe to keep a locked, caller-checked function with v1's signature instead`,
    switched,
    ...v1Facts(pinned, bk.acl).weaknesses.map((w) => `rollback: v1 brings back a weakness: ${w}`),
  ];
}
