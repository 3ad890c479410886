/**
 * What preview says about the database it met, before anything is written: the shape it adapted to, the price
 * changes the config makes, the policies the program will replace, what changes for v1's callers, and (rolling back)
 * what the restored v1 brings back. One line each, printed by index.ts as diagnostics of the update.
 */
import type { Client } from "pg";
import { priceChanges } from "./catalogueSql";
import type { GuardianConfig } from "./config";
import type { Discovery } from "./preflight";
import { describeShape } from "./shape";
import { v1Facts } from "./v1";

export function discoveryLines(d: Discovery, config: GuardianConfig, multi: boolean): string[] {
  const out = [`database ${describeShape(d.shape)}`];
  const changes = priceChanges(d.livePrices, config);
  if (multi) {
    for (const p of changes) {
      out.push(`catalogue: price change ${p.action} ${p.live} -> ${p.config} (guardian:actions.${p.action}.creditsCost); rollback restores ${p.live}`);
    }
    const kept = Object.keys(d.livePrices).length - changes.length;
    out.push(`catalogue: ${kept} live price(s) kept as they are${changes.length ? `, ${changes.length} changed by config` : ""}`);
  } else if (changes.length) {
    out.push(`catalogue: ${changes.length} price change(s) in guardian:actions take effect only with creditModel multi`);
  }
  const flat = (x: string | null) => (x ?? "-").replace(/\s+/g, " ");
  for (const p of d.foreignPolicies) {
    out.push(
      `tenant isolation: policy "${p.name}" on public.${p.table} (${p.command}, ${p.permissive.toLowerCase()}, ${p.roles}, USING ${flat(p.using)}${p.check ? `, WITH CHECK ${flat(p.check)}` : ""}) ` +
        `was not written by this program: it is recorded in the backup and dropped when the program's own policy for ${p.command === "ALL" ? "every command" : p.command} is created`,
    );
  }
  if (multi && d.v1) {
    for (const c of d.v1.behaviourChanges) out.push(`consume_credits_rpc v1 -> v2, for callers: ${c}`);
  }
  return out;
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
  return [
    `rollback: consume_credits_rpc(uuid,text) becomes backup ${bk.backup_id}'s v1 again, byte for byte; set guardian:rollback.function = safe to keep a locked, caller-checked function with v1's signature instead`,
    ...v1Facts(bk.def, bk.acl).weaknesses.map((w) => `rollback: v1 brings back a weakness: ${w}`),
  ];
}
