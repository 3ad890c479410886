/**
 * Zero downtime, proven (CI size): consumer connections call consume_credits_rpc back to back, with mixed actions,
 * two- and four-argument calls and retried idempotency keys, while the real engine runs
 *   seed -> up (multi) -> up (unified: the rollback) -> up (multi again).
 * Afterwards: no call failed except genuine INSUFFICIENT_CREDITS (v2) / 'Insufficient credits' (v1), every success and
 * refusal has exactly one log row, and every organization's books balance in the model it is in.
 * The rules the fleet follows (disjoint orgs, when a four-argument refusal is expected) are in harness/consumerFleet.ts.
 * The same harness runs at scale with `npm run bench -- --zero-downtime`.
 */
import * as crypto from "crypto";
import type { Client } from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  checkLedger,
  checkMulti,
  checkUnifiedAfterRollback,
  ConsumerFleet,
  type FleetReport,
  fleetOrgs,
  maxLogId,
  mulberry,
  phaseStats,
} from "../harness/consumerFleet";
import { POOLS } from "../lib/config";
import { loadSql } from "../lib/sql";
import { expectedPools } from "./helpers/allocation";
import { freshDb, type TestDb } from "./helpers/db";
import { installCreditEngine, makeOrg } from "./helpers/engine";
import { type Migrated, orgs, seededStack, teardown, up } from "./helpers/migration";

const ORGS = 300;

describe("zero downtime: consumers keep calling through migrate, roll back, migrate again", () => {
  let m: Migrated;
  let fleet: ConsumerFleet;
  let report: FleetReport;
  const windows: Record<string, { from: number; to: number; successes: number }> = {};
  let phases: Record<string, ReturnType<typeof phaseStats> & { successes: number }>;
  const checks: Record<string, { orgs: number; violations: string[] }> = {};
  let ledger: Awaited<ReturnType<typeof checkLedger>>;
  const outs: Record<string, any> = {};
  let ownedOrgs: number;

  /** Runs fn as a phase: the calls started meanwhile are its calls. */
  async function phase(name: string, fn: () => Promise<void>) {
    const from = Date.now();
    const successes = fleet.report.successes;
    await fn();
    windows[name] = { from, to: Date.now(), successes: fleet.report.successes - successes };
  }

  beforeAll(async () => {
    m = await seededStack(ORGS);
    const orgs = await fleetOrgs(m.db.url);
    ownedOrgs = orgs.length;
    const since = await maxLogId(m.db.url);
    fleet = new ConsumerFleet({ url: m.db.url, orgs, consumers: 4, thinkMs: 4, tag: crypto.randomBytes(3).toString("hex"), random: mulberry(42) });
    await fleet.start();
    await phase("before (v1)", () => new Promise((r) => setTimeout(r, 1500)));
    await phase("up multi", async () => {
      outs.migrate = (await up(m.t)).outputs;
    });
    await fleet.pause();
    checks.multi = await checkMulti(m.db.url);
    const boundary = await maxLogId(m.db.url);
    fleet.resume();
    await phase("up unified (rollback)", async () => {
      await m.t.setConfig({ creditModel: "unified" });
      outs.rollback = (await up(m.t)).outputs;
    });
    await phase("after rollback (v1)", () => new Promise((r) => setTimeout(r, 1500)));
    await fleet.pause();
    checks.unified = await checkUnifiedAfterRollback(m.db.url, outs.migrate.backupId.value, boundary);
    fleet.resume();
    await phase("up multi again", async () => {
      await m.t.setConfig({ creditModel: "multi" });
      outs.again = (await up(m.t)).outputs;
    });
    await phase("after (v2)", () => new Promise((r) => setTimeout(r, 1000)));
    report = await fleet.stop();
    checks.again = await checkMulti(m.db.url);
    ledger = await checkLedger(m.db.url, report, since);
    phases = Object.fromEntries(Object.entries(windows).map(([k, w]) => [k, { ...phaseStats(report, w.from, w.to), successes: w.successes }]));
    console.log(
      `zero-downtime: ${report.calls} calls (${report.twoArg} two-argument, ${report.fourArg} four-argument), ` +
        `${report.successes} successes, ${report.refusals} genuine refusals, ${report.replays} replays, ` +
        `${report.fourArgRefusedWithoutV2} four-argument calls refused while v2 was absent, ${report.failureCount} failures\n` +
        Object.entries(phases)
          .map(
            ([k, p]) =>
              `  ${k}: ${p.calls} calls (${p.fourArg} four-argument, ${p.refusedWithoutV2} refused without v2), latency ms ${JSON.stringify(p.latency)}`,
          )
          .join("\n"),
    );
  }, 360_000);
  afterAll(async () => {
    await fleet?.stop().catch(() => undefined);
    await teardown(m);
  });

  it("kept calling in every phase, with two and four arguments, and the stack did each step", () => {
    expect(ownedOrgs).toBeGreaterThan(ORGS * 0.8);
    for (const [name, p] of Object.entries(phases)) {
      expect(p.calls, name).toBeGreaterThan(20);
      expect(p.successes, name).toBeGreaterThan(0);
    }
    expect(report.twoArg).toBeGreaterThan(100);
    expect(report.fourArg).toBeGreaterThan(100);
    expect(outs.migrate.rowsBackfilled.value).toBe(ORGS);
    expect(outs.rollback.orgsSwitched.value).toBe(ORGS);
    expect(outs.again.orgsMigrated.value).toBe(ORGS);
  });

  it("no call failed: every refusal was a genuine INSUFFICIENT_CREDITS (v2) or 'Insufficient credits' (v1)", () => {
    expect(report.failures).toEqual([]);
    expect(report.failureCount).toBe(0);
    expect(report.refusals).toBeGreaterThan(0); // balances run out: the refusals were checked, not absent
  });

  it("four-argument calls were refused only while v2 did not exist (before the migration and after the rollback)", () => {
    expect(phases["before (v1)"].refusedWithoutV2).toBe(phases["before (v1)"].fourArg);
    expect(phases["after rollback (v1)"].refusedWithoutV2).toBe(phases["after rollback (v1)"].fourArg);
    expect(phases["after (v2)"].refusedWithoutV2).toBe(0);
    expect(phases["after (v2)"].fourArg).toBeGreaterThan(0);
  });

  it("a retried idempotency key returns the first result and adds no log row", () => {
    expect(report.replays).toBeGreaterThan(0);
    expect(report.replayMismatches).toEqual([]);
  });

  it("lost and double-counted nothing: one log row per success and per refusal, per org, with the unified cost", () => {
    expect(ledger.mismatches).toEqual([]);
    expect(ledger.logSuccesses).toBe(ledger.clientSuccesses);
    expect(ledger.logRefusals).toBe(ledger.clientRefusals);
  });

  it("after the migration every org balances: available + consumed in its epoch = allocation", () => {
    expect(checks.multi.violations).toEqual([]);
    expect(checks.multi.orgs).toBe(ORGS);
  });

  it("after the rollback every org balances: backup value minus consumption since (floored at the flip back)", () => {
    expect(checks.unified.violations).toEqual([]);
    expect(checks.unified.orgs).toBe(ORGS);
  });

  it("after migrating again every org balances in its new epoch", () => {
    expect(checks.again.violations).toEqual([]);
    expect(checks.again.orgs).toBe(ORGS);
  });
});

/**
 * The two places where a migration batch and an application call meet on one row, made to happen on purpose: the
 * call holds the row (its transaction is open) when the batch starts, the batch waits, the call commits. The batch
 * must then work from the row and the log as they are after the call, not from what it saw when it started.
 */
describe("a call that commits while a batch waits for its row is counted by the batch", () => {
  let db: TestDb;
  let org: string;
  const backup = "guardian_backup_20260101000000_abcdef";

  /** Runs `call` in an open transaction, starts `batch` (which must wait for the row), then commits the call. */
  async function race(call: (c: Client) => Promise<any>, batch: (c: Client) => Promise<any>) {
    const a = await db.client();
    const b = await db.client();
    try {
      await a.query("BEGIN");
      const called = await call(a);
      const pending = batch(b);
      for (let i = 0; i < 100; i++) {
        const [{ waiting }] = await db.query(`SELECT count(*)::int AS waiting FROM pg_locks WHERE NOT granted AND pid = $1`, [(b as any).processID]);
        if (waiting > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await a.query("COMMIT");
      return { called, batched: await pending };
    } finally {
      await a.end();
      await b.end();
    }
  }

  beforeAll(async () => {
    db = await freshDb({ prefix: "zdrace" });
    await installCreditEngine(db);
    org = await makeOrg(db, { plan: "custom", totalCredits: 20001, creditsRemaining: 12345 });
    await db.query(`CREATE SCHEMA ${backup};
                    CREATE TABLE ${backup}.organization_credits AS TABLE public.organization_credits;
                    CREATE TABLE ${backup}.credit_consumption_logs AS TABLE public.credit_consumption_logs`);
    // After the org exists: the allocation trigger would migrate a row inserted after it.
    for (const f of ["backfill/01_allocate_pools.sql", "backfill/02_allocation_trigger.sql"]) await db.query(loadSql(f).text);
  });
  afterAll(() => db?.drop());

  it("the backfill allocates a split org from its balance after the debit it waited for", async () => {
    const { called, batched } = await race(
      (c) => c.query(`SELECT public.consume_credits_rpc($1, 'bulk_email') AS r`, [org]).then((r) => r.rows[0].r),
      (c) => c.query(loadSql("backfill/batch.sql").text, [0, 1000, 10]).then((r) => r.rows[0]), // heap pages [0, 1000), 10 orgs at most
    );
    expect(called).toMatchObject({ success: true, credit_model: "unified", credits_consumed: 10, remaining_credits: 12335 });
    expect(batched.flipped).toBe(1);
    const want = expectedPools("custom", 20001, 12335);
    const [o] = await orgs(db);
    expect(o).toMatchObject({ credit_model: "multi", credits_remaining: 12335, allocation_epoch: 1 });
    for (const pool of POOLS) expect(o[`${pool}_credits_available`], pool).toBe(want.available[pool]);
  });

  it("the rollback switch keeps the unified balance of the multi call it waited for", async () => {
    await db.query(`DROP TRIGGER IF EXISTS guardian_allocate_on_write ON public.organization_credits`); // rollback step 1
    const { called, batched } = await race(
      (c) => c.query(`SELECT public.consume_credits_rpc($1, 'bulk_email') AS r`, [org]).then((r) => r.rows[0].r),
      async (c) => {
        await c.query("BEGIN");
        const ids = (await c.query(loadSql("rollback/02_lock_batch.sql").text, [0, 1000, 10])).rows.map((r) => r.organization_id);
        const sw = (await c.query(loadSql("rollback/03_switch_batch.sql").text, [ids])).rows[0];
        await c.query("COMMIT");
        return { ids, unifiedChanged: sw.unified_changed };
      },
    );
    expect(called).toMatchObject({ success: true, credit_model: "multi", consumed: { email: 10 } });
    expect(batched).toEqual({ ids: [org], unifiedChanged: 0 });
    // The backup's 12,345 minus the unified debit before the flip (10) and the multi one it waited for (10), which v2
    // took from credits_remaining too: the switch changes nothing.
    const [o] = await orgs(db);
    expect(o).toMatchObject({ credit_model: "unified", credits_remaining: 12325 });
  });
});

/**
 * The hot case: few organizations, many connections, every connection calling any organization (as the CRM's edge
 * functions do), through migrate -> roll back -> migrate again. Every call must get an answer, every `pulumi up` must
 * succeed (the rollback switches organizations back without recomputing them and checks that no unified value
 * changed, so v1's own lost updates afterwards cannot fail it).
 */
describe("zero downtime, hot: 40 organizations, 8 connections calling any of them, through up, rollback, up", () => {
  const HOT_ORGS = 40;
  const CONNECTIONS = 8;
  let m: Migrated;
  let orgIds: string[];
  const failures: string[] = [];
  const calls: Record<string, number> = {};
  let phaseName = "before (v1)";
  let stop = false;
  let loops: Promise<void>[] = [];
  const outs: Record<string, any> = {};

  async function consumer(i: number): Promise<void> {
    const { connect } = await import("../lib/db");
    const c = await connect(m.db.url, { application_name: `guardian-hot-${i}` });
    try {
      await c.query(`SELECT set_config('request.jwt.claims', '{"role": "service_role"}', false)`);
      await c.query(`SET ROLE service_role`);
      const rnd = mulberry(1000 + i);
      const actions = ["ai_chat", "email_send", "whatsapp_message", "sms_send"];
      while (!stop) {
        const org = orgIds[Math.floor(rnd() * orgIds.length)];
        const action = actions[Math.floor(rnd() * actions.length)];
        const phase = phaseName;
        try {
          const r = (await c.query(`SELECT public.consume_credits_rpc(p_organization_id => $1, p_action_type => $2) AS r`, [org, action])).rows[0].r;
          if (r === null || typeof r.success !== "boolean") failures.push(`${phase}: no answer for ${org} ${action}: ${JSON.stringify(r)}`);
          calls[phase] = (calls[phase] ?? 0) + 1;
        } catch (e: any) {
          failures.push(`${phase}: ${org} ${action}: ${e.message}`);
        }
      }
    } finally {
      await c.end();
    }
  }

  beforeAll(async () => {
    m = await seededStack(HOT_ORGS);
    orgIds = (await m.db.query(`SELECT organization_id::text AS id FROM organization_credits ORDER BY 1`)).map((r) => r.id);
    // Enough credits that the calls keep succeeding through all three updates.
    await m.db.query(`UPDATE organization_credits SET plan_name = 'free', is_trial = false, total_credits = 1000000, credits_remaining = 1000000`);
    loops = Array.from({ length: CONNECTIONS }, (_, i) => consumer(i));
    await new Promise((r) => setTimeout(r, 1000));
    phaseName = "up multi";
    outs.migrate = (await up(m.t)).outputs;
    phaseName = "up unified (rollback)";
    await m.t.setConfig({ creditModel: "unified" });
    outs.rollback = (await up(m.t)).outputs;
    phaseName = "after rollback (v1)";
    await new Promise((r) => setTimeout(r, 1500));
    phaseName = "up multi again";
    await m.t.setConfig({ creditModel: "multi" });
    outs.again = (await up(m.t)).outputs;
    stop = true;
    await Promise.all(loops);
    console.log(`zero-downtime (hot): ${JSON.stringify(calls)}; rollback: ${JSON.stringify(outs.rollback.verification.value.rollback ?? null)}`);
  }, 360_000);
  afterAll(async () => {
    stop = true;
    await Promise.all(loops).catch(() => undefined);
    await teardown(m);
  });

  it("every call got an answer in every phase", () => {
    expect(failures).toEqual([]);
    for (const p of ["before (v1)", "up multi", "up unified (rollback)", "after rollback (v1)", "up multi again"]) expect(calls[p], p).toBeGreaterThan(20);
  });

  it("every update succeeded, the rollback switched every org back and changed no unified value", () => {
    expect(outs.migrate.orgsMigrated.value).toBe(HOT_ORGS);
    expect(outs.rollback.unifiedValuesKept.value).toBe(true);
    expect(outs.rollback.unifiedValuesChanged.value).toBe(0);
    expect(outs.rollback.orgsSwitched.value).toBe(HOT_ORGS);
    expect(outs.again.orgsMigrated.value).toBe(HOT_ORGS);
  });

  it("the rollback's verification records the switch as a fact: every org switched, no unified value changed", () => {
    const f = outs.rollback.verification.value.rollback;
    expect(f).toMatchObject({ orgsSwitched: HOT_ORGS, unifiedValuesChanged: 0, function: "v1" });
    expect(outs.rollback.verification.value.trialCalls).toBe("every call answered");
  });
});
