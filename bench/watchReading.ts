/**
 * One reading of `npm run watch` on a large database (issue: "measure one reading on 1M organizations and 10M log
 * rows"): the reading's own code (operations/watch: openSession, sample) on a scratch database with the credit
 * engine installed (bench/rpc.ts prepareV2), `orgs` multi organizations, `logsPerOrg` log rows each, an allocation
 * per organization and a member in 1,000 of them (one a super_admin, who reads every organization). Between readings the application makes `callsBetween` real calls of
 * v2, so each reading has a window to read. Reports each reading's time and, from EXPLAIN, whether any of its
 * queries scans a large table whole (it should read an index range over the window).
 */
import type { Client } from "pg";
import { connect } from "../lib/db";
import { createDatabase, dropDatabase, type PgServer } from "../operations/shared/pgserver";
import { openSession, sample } from "../operations/watch";
import { orgUuid, prepareV2 } from "./rpc";
import { median } from "../harness/consumerFleet";

export interface WatchReadingResult {
  orgs: number;
  logRows: number;
  setupSeconds: number;
  callsBetween: number;
  readings: { ms: number; calls: number; synthetic: number; checked: number }[];
  medianMs: number;
  maxMs: number;
  /** Per query of a reading, the tables EXPLAIN shows read whole (Seq Scan): none is the target. */
  seqScans: Record<string, string[]>;
}

function seqScansIn(plan: any, out: Set<string> = new Set()): Set<string> {
  if (plan["Node Type"] === "Seq Scan" && plan["Relation Name"]) out.add(plan["Relation Name"]);
  for (const p of plan.Plans ?? []) seqScansIn(p, out);
  return out;
}

async function explainScans(c: Client, sql: string, params: unknown[]): Promise<string[]> {
  const r = await c.query(`EXPLAIN (FORMAT JSON) ${sql}`, params);
  return [...seqScansIn(r.rows[0]["QUERY PLAN"][0].Plan)].sort();
}

export async function benchWatchReading(
  server: PgServer,
  opts: { orgs: number; logsPerOrg: number; readings?: number; callsBetween?: number; log: (s: string) => void },
): Promise<WatchReadingResult> {
  const { orgs, logsPerOrg, log } = opts;
  const readings = opts.readings ?? 10;
  const callsBetween = opts.callsBetween ?? 200;
  const name = `gbench_watch_${orgs}_${Date.now().toString(36)}`;
  const url = await createDatabase(server, name);
  const c = await connect(url);
  try {
    const t0 = Date.now();
    log(`watch reading: ${orgs.toLocaleString("en-US")} multi organizations (credit engine installed as pulumi up does)`);
    await prepareV2(url, orgs);
    await c.query(
      `INSERT INTO guardian.allocations (organization_id, epoch, rule, ai, whatsapp, email, sms)
       SELECT organization_id, allocation_epoch, 'bench', ai_credits_available, whatsapp_credits_available, email_credits_available, sms_credits_available
         FROM public.organization_credits`,
    );
    await c.query(
      `INSERT INTO auth.users (id) SELECT ('10000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid FROM generate_series(1, 1000) g;
       INSERT INTO public.profiles (id, organization_id, role)
       SELECT ('10000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, ${orgUuid("g")}, CASE WHEN g = 1 THEN 'super_admin' ELSE 'user' END
         FROM generate_series(1, 1000) g`,
    );
    const rows = orgs * logsPerOrg;
    const step = 1_000_000;
    for (let from = 0; from < rows; from += step) {
      // Earlier epochs' history (epoch 0): what a year of calls leaves in the log.
      await c.query(
        `INSERT INTO public.credit_consumption_logs
           (organization_id, action_type, credits_consumed, credits_remaining, success, quantity, ai_consumed, credit_model, allocation_epoch, created_at)
         SELECT ${orgUuid("1 + g % $3")}, 'ai_chat', 1, 0, true, 1, 1, 'multi', 0, now() - interval '1 second' * ($2 - g)
           FROM generate_series($1::bigint, least($2, $1 + ${step}) - 1) g`,
        [from, rows, orgs],
      );
      log(`watch reading: log rows ${Math.min(rows, from + step).toLocaleString("en-US")}/${rows.toLocaleString("en-US")}`);
    }
    await c.query("VACUUM ANALYZE public.credit_consumption_logs");
    await c.query("VACUUM ANALYZE guardian.allocations");
    const setupSeconds = Math.round((Date.now() - t0) / 100) / 10;

    const session = await openSession(c, "role");
    const app = await connect(url);
    await app.query("SET role service_role"); // the application's calls, as the backend makes them
    const out: WatchReadingResult["readings"] = [];
    const since0 = session.lastId;
    try {
      for (let i = 0; i < readings; i++) {
        await app.query(`SELECT public.consume_credits_rpc(${orgUuid("1 + (random() * ($1::int - 1))::int")}, 'ai_chat', 1) FROM generate_series(1, $2)`, [
          orgs,
          callsBetween,
        ]);
        const t = process.hrtime.bigint();
        const s = await sample(session, 10);
        const ms = Number(process.hrtime.bigint() - t) / 1e6;
        out.push({ ms: Math.round(ms * 10) / 10, calls: s.calls, synthetic: s.r.calls, checked: s.inv.checked });
        log(`watch reading ${i + 1}/${readings}: ${ms.toFixed(1)} ms (${s.calls} log rows read, ${s.r.calls} synthetic calls, ${s.inv.checked} orgs checked)`);
      }
    } finally {
      await app.end();
    }
    const seqScans: Record<string, string[]> = {
      "log rows since the last reading": await explainScans(
        c,
        "SELECT organization_id::text AS org, action_type AS action, id::text FROM public.credit_consumption_logs WHERE id > $1 ORDER BY id DESC LIMIT 5000",
        [since0],
      ),
      "invariants (sql/watch/03_invariants.sql)": await explainScans(c, session.invariantsSql, [since0, 200]),
    };
    const ms = out.map((x) => x.ms);
    return { orgs, logRows: rows, setupSeconds, callsBetween, readings: out, medianMs: median(ms), maxMs: Math.max(...ms), seqScans };
  } finally {
    await c.end().catch(() => undefined);
    await dropDatabase(server, name).catch(() => undefined);
  }
}
