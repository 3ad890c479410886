/**
 * Crash and resume: `pulumi up` (the CLI, as an operator or CI runs it) is killed with SIGKILL at each dangerous
 * point, then recovered the documented way (docs/recovery.md):
 *
 *   pulumi cancel --yes                               # the killed run's lock; without it every command refuses
 *   pulumi up --yes                                   # the program's own resume: every create is idempotent
 *   pulumi refresh --yes --clear-pending-creates      # the checkpoint still lists the killed run's creates as
 *                                                     # pending (Pulumi 3.274.1 keeps them after a successful up)
 *
 * and the end state must be what an uninterrupted run gives on an identical database (every scenario starts from a
 * clone of one seeded template): the same organizations with the same pools, model and allocation epoch (every
 * organization flipped exactly once), the same objects, the same stack resources, nothing pending. The one
 * difference allowed: a backup interrupted after its snapshot committed leaves its guardian_backup_* schema behind
 * (recorded in guardian.backups with no export and no verified restore). Backups are never deleted, by design; the
 * next run takes a new one, verifies it, and rollback uses the latest verified one.
 *
 * The kill points, each detected while the run goes (a persistent connection polling the database every few ms,
 * and the engine's event log) and confirmed after the kill:
 *   backup      a guardian_backup_* schema exists: the snapshot committed, its export to disk is running (100,000
 *               extra log rows make the export last long enough to hit); confirmed by guardian.backups.export_dir
 *               still NULL and no manifest.json.
 *   backfill    some but not all organizations are multi (guardian:backfill = {batchSize: 10, pauseMs: 50}).
 *   switch gap  the engine has reported v2's create done (its event log, --event-log) and no organization is
 *               multi yet: between the function switch and the backfill's first batch (v2 serves the unified model
 *               meanwhile); confirmed after the kill: v2 exists, 0 multi, the backfill run's create never finished.
 *               (The checkpoint may still list v2's create as pending: it is written after the event.)
 *
 * "Kill" means the whole session (test/helpers/cli.ts): the CLI starts its plugins in process groups of their own,
 * so killing its process group alone leaves the dynamic provider running the step it was in.
 */
import * as fs from "fs";
import * as path from "path";
import type { Client } from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seed } from "../operations/seed";
import { eventTail, killSession, pendingOperations, pulumi, readEvents, repairFileBackend, startPulumi, stateUrns } from "./helpers/cli";
import { fromTemplate, type TestDb } from "./helpers/db";
import { fingerprint } from "./helpers/fingerprint";
import { seedDay } from "./helpers/migration";
import { testStack, type TestStack } from "../harness/stack";

const ORGS = 300;
const FILLER_LOGS = 100_000;
const CONFIG = { creditModel: "multi", backfill: { batchSize: 10, pauseMs: 50 } };
const V2 = "public.consume_credits_rpc(uuid,text,integer,text)";
const LOCKED = "the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file with `pulumi cancel`.";

interface KillPoint {
  name: string;
  /** True when the run is at the point to kill it (asked every few ms, with the engine events seen so far). */
  reached(c: Client, finished: Set<string>): Promise<boolean>;
}

const multiCount = async (c: Client): Promise<number | undefined> => {
  try {
    return Number((await c.query(`SELECT count(*) FILTER (WHERE credit_model = 'multi') AS n FROM public.organization_credits`)).rows[0].n);
  } catch (e: any) {
    if (e.code === "42703") return undefined; // credit_model not added yet
    throw e;
  }
};

const POINTS: KillPoint[] = [
  {
    name: "during the backup (snapshot committed, export running)",
    reached: async (c) => (await c.query(`SELECT count(*)::int n FROM pg_namespace WHERE nspname LIKE 'guardian\\_backup\\_%'`)).rows[0].n > 0,
  },
  {
    name: "mid-backfill (some organizations multi, not all)",
    reached: async (c) => {
      const n = await multiCount(c);
      return n !== undefined && n >= 20 && n < ORGS - 50;
    },
  },
  {
    name: "between the function switch and the backfill (v2 in place and recorded, no organization multi)",
    // The engine has recorded v2's create (its outputs event), and the backfill has flipped no organization yet.
    reached: async (c, finished) => [...finished].some((u) => u.endsWith("::credit-functions-consume-credits-rpc")) && (await multiCount(c)) === 0,
  },
];

/** What must be equal to the uninterrupted run. */
interface EndState {
  orgs: any[];
  anomalies: any[];
  allocations: any[];
  baselines: any[];
  broughtCurrent: any[];
  actions: any[];
  /** Catalog lines of test/helpers/fingerprint.ts, without backup schemas (their names carry a timestamp). */
  catalog: string[];
  tables: Record<string, string>;
  backups: { schemas: number; verified: number; unexported: number };
  urns: string[];
  pending: { urn: string; type: string }[];
}

async function endState(db: TestDb, t: TestStack): Promise<EndState> {
  const fp = await fingerprint(db);
  // Left out: rows carrying times or ids of the run (journal, backups, anomalies' `at`, organization_credits.updated_at,
  // credit_actions.created_at of the actions the catalogue adds, guardian.allocations' `at`; compared below without them),
  // guardian.erasure_key, a random secret per installation, guardian.function_baselines, v2's latency as measured, and
  // guardian.unified_columns_current's `since`.
  const stable = (k: string) =>
    !/guardian_backup_|guardian\.(migration_journal|backups|backfill_anomalies|erasure_key|allocations|function_baselines|unified_columns_current)$|public\.(organization_credits|credit_actions)$/.test(
      k,
    );
  const [backups] = await db.query(`
    SELECT (SELECT count(*)::int FROM pg_namespace WHERE nspname LIKE 'guardian\\_backup\\_%') AS schemas,
           count(*) FILTER (WHERE restore_verified)::int AS verified, count(*) FILTER (WHERE export_dir IS NULL)::int AS unexported
      FROM guardian.backups`);
  return {
    orgs: await db.query(`
      SELECT organization_id, plan_name, total_credits, credits_remaining, credit_model, allocation_epoch,
             ai_credits_total, ai_credits_available, whatsapp_credits_total, whatsapp_credits_available,
             email_credits_total, email_credits_available, sms_credits_total, sms_credits_available
        FROM public.organization_credits ORDER BY organization_id`),
    anomalies: await db.query(`SELECT organization_id, kind, value, epoch FROM guardian.backfill_anomalies ORDER BY organization_id, epoch`),
    allocations: await db.query(
      `SELECT organization_id, epoch, rule, basis, ai, whatsapp, email, sms FROM guardian.allocations ORDER BY organization_id, epoch`,
    ),
    baselines: await db.query(`SELECT DISTINCT function_signature, calls FROM guardian.function_baselines ORDER BY function_signature`),
    broughtCurrent: await db.query(`SELECT backup_id IS NULL AS none, orgs_brought_current FROM guardian.unified_columns_current`),
    actions: await db.query(`SELECT * FROM public.credit_actions ORDER BY action_type`).then((rows) => rows.map(({ created_at, ...r }) => r)),
    catalog: fp.catalogLines.filter((l) => !l.includes("guardian_backup_")),
    tables: Object.fromEntries(Object.entries(fp.tables).filter(([k]) => stable(k))),
    backups,
    urns: await stateUrns(t),
    pending: await pendingOperations(t),
  };
}

interface Scenario {
  point: string;
  killedAt: { multi: number | undefined; v2: boolean; backupSchemas: number; unexported: number; manifest: boolean };
  /** What the file backend needed after the kill (usually nothing): the error, then the repair steps. */
  backendRepair: string[];
  pendingAfterKill: { urn: string; type: string }[];
  finishedBeforeKill: string[];
  upWhileLocked: { code: number; output: string };
  cancel: { code: number; output: string };
  resume: { code: number; output: string };
  pendingAfterResume: { urn: string; type: string }[];
  refresh: { code: number; output: string };
  end: EndState;
}

describe("crash and resume: SIGKILL at each dangerous point, recover, same end state as an uninterrupted run", () => {
  const dbs: TestDb[] = [];
  const stacks: TestStack[] = [];
  let reference: EndState;
  const scenarios: Scenario[] = [];

  /** The starting point: the seed, and refused attempts (they change no balance), a consumption log big enough for the
   *  backup's export to take a while. Built once per test run, then copied for each scenario. */
  async function build(db: TestDb): Promise<void> {
    await seed({ databaseUrl: db.url, orgs: ORGS, seed: 11 });
    await db.query(
      `INSERT INTO public.credit_consumption_logs (organization_id, action_type, credits_consumed, credits_remaining, success, error_message, created_at)
       SELECT o.organization_id, 'bulk_email', 0, 0, false, 'Insufficient credits', timestamptz '2026-01-01' + g * interval '1 second'
         FROM generate_series(1, $1) g
         JOIN (SELECT organization_id, row_number() OVER (ORDER BY organization_id) - 1 AS k FROM public.organization_credits) o ON o.k = g % $2`,
      [FILLER_LOGS, ORGS],
    );
  }

  /** A database copied from the template, and a stack on it. */
  async function clone(): Promise<{ db: TestDb; t: TestStack }> {
    const db = await fromTemplate(`crash-resume:${ORGS}:${FILLER_LOGS}:${seedDay()}`, build, "crash");
    dbs.push(db);
    const t = await testStack(db.url, CONFIG);
    stacks.push(t);
    return { db, t };
  }

  beforeAll(async () => {
    const ref = await clone();
    const r = await pulumi(ref.t, ["up", "--yes", "--skip-preview"]);
    expect(r.code, r.output).toBe(0);
    reference = await endState(ref.db, ref.t);

    for (const point of POINTS) {
      const { db, t } = await clone();
      const eventLog = path.join(t.stateDir, "events.jsonl");
      const poll = await db.client();
      let killedAt: Scenario["killedAt"];
      let finishedBeforeKill: string[];
      try {
        const run = startPulumi(t, ["up", "--yes", "--skip-preview"], { eventLog });
        const started = Date.now();
        const tail = eventTail(eventLog);
        const finished = new Set<string>();
        for (;;) {
          for (const e of tail()) if (e.resOutputsEvent) finished.add(e.resOutputsEvent.metadata.urn);
          if (await point.reached(poll, finished)) break;
          const code = await Promise.race([run.exited, new Promise((r) => setTimeout(() => r("running"), 5))]);
          if (code !== "running") throw new Error(`${point.name}: the update ended (exit ${code}) before the kill point:\n${run.output().slice(-3000)}`);
          if (Date.now() - started > 120_000) throw new Error(`${point.name}: not reached in 120 s:\n${run.output().slice(-3000)}`);
        }
        await killSession(run);
        finishedBeforeKill = readEvents(eventLog)
          .filter((e) => e.resOutputsEvent)
          .map((e) => e.resOutputsEvent.metadata.urn);
        const [b] = await db.query(`
          SELECT (SELECT count(*)::int FROM pg_namespace WHERE nspname LIKE 'guardian\\_backup\\_%') AS schemas,
                 to_regprocedure('${V2}') IS NOT NULL AS v2`);
        const backups = b.schemas > 0 ? await db.query(`SELECT export_dir, schema_name FROM guardian.backups`) : [];
        const exportRoot = path.join(t.stateDir, "exports");
        killedAt = {
          multi: await multiCount(poll),
          v2: b.v2,
          backupSchemas: b.schemas,
          unexported: backups.filter((x: any) => x.export_dir === null).length,
          manifest: backups.some((x: any) => fs.existsSync(path.join(exportRoot, x.schema_name, "manifest.json"))),
        };
      } finally {
        await poll.end();
      }
      // A kill while the CLI rewrote its checkpoint's metadata leaves the file backend unreadable (repairFileBackend).
      const readable = await pulumi(t, ["stack", "export"]);
      const backendRepair = readable.code === 0 ? [] : [readable.output.trim(), ...repairFileBackend(t.stateDir)];
      const pendingAfterKill = await pendingOperations(t);
      // The documented recovery.
      const upWhileLocked = await pulumi(t, ["up", "--yes", "--skip-preview"]);
      const cancel = await pulumi(t, ["cancel", "--yes"]);
      const resume = await pulumi(t, ["up", "--yes", "--skip-preview"]);
      const pendingAfterResume = await pendingOperations(t);
      const refresh = await pulumi(t, ["refresh", "--yes", "--clear-pending-creates"]);
      scenarios.push({
        point: point.name,
        killedAt,
        backendRepair,
        pendingAfterKill,
        finishedBeforeKill,
        upWhileLocked,
        cancel,
        resume,
        pendingAfterResume,
        refresh,
        end: await endState(db, t),
      });
    }
    for (const s of scenarios) {
      console.log(
        `crash ${s.point}: killed at ${JSON.stringify(s.killedAt)}; pending ${s.pendingAfterKill.map((p) => `${p.type} ${p.urn.split("::").pop()}`).join(", ")}` +
          (s.backendRepair.length ? `; file backend repaired: ${s.backendRepair.join("; ")}` : ""),
      );
    }
  }, 600_000);

  afterAll(async () => {
    for (const t of stacks) t.destroyWorkspace();
    for (const d of dbs) await d.drop().catch(() => undefined);
  });

  it("the uninterrupted run migrates every organization once and leaves nothing pending", () => {
    expect(reference.orgs).toHaveLength(ORGS);
    expect(reference.orgs.every((o) => o.credit_model === "multi" && o.allocation_epoch === 1)).toBe(true);
    expect(reference.pending).toEqual([]);
    expect(reference.backups).toEqual({ schemas: 1, verified: 1, unexported: 0 });
  });

  it("each kill landed where it was meant to", () => {
    const [backup, backfill, gap] = scenarios;
    expect(backup.killedAt).toMatchObject({ backupSchemas: 1, unexported: 1, manifest: false, v2: false });
    expect(backup.pendingAfterKill.map((p) => p.urn.split("::").pop())).toContain("backup-snapshot");

    expect(backfill.killedAt.v2).toBe(true);
    expect(backfill.killedAt.multi).toBeGreaterThan(0);
    expect(backfill.killedAt.multi).toBeLessThan(ORGS);
    expect(backfill.pendingAfterKill.map((p) => p.urn.split("::").pop())).toContain("backfill-run");

    expect(gap.killedAt).toMatchObject({ v2: true, multi: 0 });
    expect(gap.finishedBeforeKill.some((u) => u.endsWith("::credit-functions-consume-credits-rpc"))).toBe(true);
    expect(gap.finishedBeforeKill.some((u) => u.endsWith("::backfill-run"))).toBe(false);
  });

  it("after the kill the stack is locked, and `pulumi cancel --yes` releases it", () => {
    for (const s of scenarios) {
      // When the kill hit a checkpoint write, the only error may be the unreadable backend, repaired before this.
      if (s.backendRepair.length) expect(s.backendRepair[0]).toContain("failed to load checkpoint");
      expect(s.upWhileLocked.code, s.point).not.toBe(0);
      expect(s.upWhileLocked.output, s.point).toContain(LOCKED);
      expect(s.cancel.code, s.point).toBe(0);
      expect(s.cancel.output, s.point).toContain("The currently running update for 'test' has been canceled!");
    }
  });

  it("`pulumi up` resumes and completes, warning about the pending creates, which it leaves in the checkpoint", () => {
    for (const s of scenarios) {
      expect(s.resume.code, `${s.point}\n${s.resume.output.slice(-3000)}`).toBe(0);
      const n = s.pendingAfterKill.length;
      expect(s.resume.output, s.point).toContain(`warning: Attempting to deploy or update resources with ${n} pending operations from previous deployment.`);
      expect(s.resume.output, s.point).toContain("Note that `pulumi refresh` will need to be run interactively to clear pending CREATE operations.");
      expect(s.pendingAfterResume, s.point).toEqual(s.pendingAfterKill);
    }
  });

  it("`pulumi refresh --yes --clear-pending-creates` then clears them: nothing pending, the same resources as the uninterrupted run", () => {
    for (const s of scenarios) {
      expect(s.refresh.code, `${s.point}\n${s.refresh.output.slice(-3000)}`).toBe(0);
      expect(s.end.pending, s.point).toEqual([]);
      expect(s.end.urns, s.point).toEqual(reference.urns);
    }
  });

  it("every organization ends as in the uninterrupted run: same pools, model and epoch (flipped exactly once)", () => {
    for (const s of scenarios) {
      expect(s.end.orgs, s.point).toEqual(reference.orgs);
      expect(s.end.anomalies, s.point).toEqual(reference.anomalies);
      expect(s.end.allocations, s.point).toEqual(reference.allocations);
    }
  });

  it("the same objects and the same data elsewhere (functions, policies, triggers, columns, logs, catalogue)", () => {
    for (const s of scenarios) {
      expect(s.end.catalog, s.point).toEqual(reference.catalog);
      expect(s.end.tables, s.point).toEqual(reference.tables);
      expect(s.end.baselines, s.point).toEqual(reference.baselines);
      expect(s.end.broughtCurrent, s.point).toEqual([{ none: true, orgs_brought_current: "0" }]);
      expect(s.end.actions, s.point).toEqual(reference.actions);
    }
  });

  it("an interrupted backup leaves its schema (never deleted, never used); the run after it takes and verifies a new one", () => {
    const [backup, backfill, gap] = scenarios;
    expect(backup.end.backups).toEqual({ schemas: 2, verified: 1, unexported: 1 });
    expect(backfill.end.backups).toEqual(reference.backups);
    expect(gap.end.backups).toEqual(reference.backups);
  });
});
