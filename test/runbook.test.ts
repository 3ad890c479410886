/**
 * The runbook's (docs/runbook.md) recovery and secret-rotation steps, with the real CLI on a real Postgres:
 *
 *   crash   `pulumi up` killed (SIGKILL, whole process group) in the middle of the backfill -> the next `up` is refused
 *           because the stack is locked -> `pulumi cancel` -> `pulumi up` resumes (with a warning about the pending
 *           operation) and migrates every organization -> `pulumi refresh --clear-pending-creates` clears the warning.
 *   rotate  `pulumi config set --secret guardian:databaseUrl <new>` -> preview shows [secret] updates -> up records the
 *           new URL in every resource's inputs and outputs (what refresh and delete connect with) and runs no SQL.
 */
import { type ChildProcess, execFile, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { promisify } from "util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Migrated, seededStack, teardown } from "./helpers/migration";

const run = promisify(execFile);

async function pulumi(m: Migrated, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run("pulumi", [...args, "--stack", "test", "--non-interactive"], {
      cwd: m.t.dir,
      env: { ...process.env, ...m.t.env },
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e: any) {
    return { code: typeof e.code === "number" ? e.code : 1, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

/** Processes (the plugins a crashed CLI left behind) whose environment points at this test stack's export root. */
function pluginProcessesOf(exportRoot: string): number[] {
  const mine: number[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const env = fs.readFileSync(`/proc/${d}/environ`, "utf8").split("\0");
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, "utf8");
      if (env.includes(`GUARDIAN_EXPORT_ROOT=${exportRoot}`) && /pulumi-language-nodejs|dynamic-provider/.test(cmd)) mine.push(Number(d));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return mine;
}

/** The "Resources:" summary at the end of a CLI run, for readable assertions. */
function summary(out: string): string {
  const i = out.lastIndexOf("Resources:");
  return i < 0 ? out.slice(-2000) : out.slice(i, i + 400);
}

async function until(what: string, f: () => Promise<boolean> | boolean, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe("runbook: recover from a crash, rotate the database secret", () => {
  let m: Migrated;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    // 2,000 orgs in batches of 100 with a 400 ms pause: the backfill takes ~8 s, time to crash in the middle of it.
    m = await seededStack(2000, { backfill: { batchSize: 100, pauseMs: 400 } });
  }, 600_000);
  afterAll(async () => {
    if (child?.pid && child.exitCode === null && child.signalCode === null) process.kill(-child.pid, "SIGKILL");
    await teardown(m);
  });

  // Generous waits: on a busy machine (CI shares it with whatever else runs there) the backup, schema and function steps
  // before the backfill can take minutes; the assertions are about what happens, not how fast.
  it("after a crash mid-backfill: up is refused (locked), pulumi cancel, up resumes and migrates every organization", { timeout: 900_000 }, async () => {
    const log = path.join(m.t.stateDir, "crashed-up.log");
    const out = fs.openSync(log, "w");
    child = spawn("pulumi", ["up", "--yes", "--skip-preview", "--stack", "test", "--non-interactive"], {
      cwd: m.t.dir,
      env: { ...process.env, ...m.t.env },
      detached: true, // its own process group, so the kill takes the CLI and what it started
      stdio: ["ignore", out, out],
    });
    const upLog = () => fs.readFileSync(log, "utf8");
    const upFailed = () => child!.exitCode !== null || child!.signalCode !== null;
    await until(
      "a backfill progress line",
      () => {
        if (upFailed()) throw new Error(`pulumi up ended (exit ${child!.exitCode}) before the backfill started:\n${upLog().slice(-4000)}`);
        return /backfill: [\d,]+\/2,000 orgs/.test(upLog());
      },
      600_000,
    );
    await until(
      "some organizations migrated",
      async () => (await m.db.query(`SELECT count(*)::int n FROM public.organization_credits WHERE credit_model = 'multi'`))[0].n >= 300,
      300_000,
    );
    process.kill(-child.pid!, "SIGKILL");
    await until("the CLI to die", () => child!.exitCode !== null || child!.signalCode !== null);
    fs.closeSync(out);
    // The CLI starts its plugins (language host, dynamic provider) in process groups of their own: they outlive it and
    // the provider keeps a session on the database. Runbook: find them and stop them before `pulumi cancel`.
    const leftovers = pluginProcessesOf(path.join(m.t.stateDir, "exports"));
    expect(leftovers.length).toBeGreaterThan(0);
    for (const pid of leftovers) process.kill(pid, "SIGTERM");
    await until(
      "no guardian-credits session left on the database",
      async () =>
        (await m.db.query(`SELECT count(*)::int n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'guardian-credits:%'`))[0]
          .n === 0,
    );
    const [{ unified }] = await m.db.query(`SELECT count(*) FILTER (WHERE credit_model = 'unified')::int AS unified FROM public.organization_credits`);
    expect(unified).toBeGreaterThan(0); // the crash left work to resume

    const locked = await pulumi(m, ["up", "--yes", "--skip-preview"]);
    expect(locked.code).not.toBe(0);
    expect(locked.out).toMatch(
      /error: the stack is currently locked by 1 lock\(s\)\. Either wait for the other process\(es\) to end or delete the lock file with `pulumi cancel`\./,
    );

    const cancel = await pulumi(m, ["cancel", "--yes"]);
    expect(cancel.code).toBe(0);
    expect(cancel.out).toContain("The currently running update for 'test' has been canceled!");

    const resumed = await pulumi(m, ["up", "--yes", "--skip-preview"]);
    expect(resumed.code, resumed.out).toBe(0);
    expect(resumed.out).toContain("warning: Attempting to deploy or update resources with 1 pending operations from previous deployment.");
    expect(resumed.out).toMatch(/backfill-run, interrupted while creating/);
    expect(resumed.out).toMatch(new RegExp(`backfill: will migrate ${unified.toLocaleString("en-US")} organizations`));
    const [{ multi }] = await m.db.query(`SELECT count(*) FILTER (WHERE credit_model = 'multi')::int AS multi FROM public.organization_credits`);
    expect(multi).toBe(2000);
    expect(resumed.out).toMatch(/orgsMigrated\s*: 2000/);
  });

  it("pulumi refresh --clear-pending-creates clears the pending operation; then preview creates and deletes nothing", { timeout: 600_000 }, async () => {
    const refresh = await pulumi(m, ["refresh", "--yes", "--clear-pending-creates"]);
    expect(refresh.code, refresh.out).toBe(0);
    const preview = await pulumi(m, ["preview"]);
    expect(preview.code, preview.out).toBe(0);
    expect(preview.out).not.toContain("pending operations");
    expect(summary(preview.out)).not.toMatch(/to create|to delete|to replace/);
    // Each probe fingerprints only what its own file enforces, so the refresh found no drift: nothing to do.
    expect(summary(preview.out)).toMatch(/^Resources:\n\s+\d+ unchanged\n/);
  });

  it("rotating guardian:databaseUrl: preview shows each resource's connection as a secret update, up re-runs no SQL, and the state then holds the new URL", {
    timeout: 600_000,
  }, async () => {
    const u = new URL(m.db.url);
    u.hostname = "localhost"; // the same server under another name (a trust-auth server takes any password)
    if (!u.password) u.password = "rotated-Secret-2026";
    const rotated = u.toString();
    const set = await pulumi(m, ["config", "set", "--secret", "guardian:databaseUrl", rotated]);
    expect(set.code, set.out).toBe(0);
    const preview = await pulumi(m, ["preview", "--diff"]);
    expect(preview.code, preview.out).toBe(0);
    expect(preview.out).toMatch(/~ \d+ to update/);
    expect(preview.out).toMatch(/~ pulumi-nodejs:dynamic\/guardian:SqlObject: \(update\)\n(.*\n)*?\s+databaseUrl\s*: \[secret\]/);
    expect(preview.out).not.toMatch(/to create|to delete/);
    expect(preview.out).not.toContain(u.password);
    const [{ applies: before }] = await m.db.query(
      `SELECT count(*)::int AS applies FROM guardian.migration_journal WHERE step IN ('apply', 'backfill_batch', 'backup')`,
    );
    const upRes = await pulumi(m, ["up", "--yes", "--skip-preview"]);
    expect(upRes.code, upRes.out).toBe(0);
    const [{ applies: after }] = await m.db.query(
      `SELECT count(*)::int AS applies FROM guardian.migration_journal WHERE step IN ('apply', 'backfill_batch', 'backup')`,
    );
    expect(after).toBe(before); // no SQL object re-applied, no backfill, no new backup
    expect(summary((await pulumi(m, ["preview"])).out)).toMatch(/^Resources:\n\s+\d+ unchanged\n/);
    const state = JSON.parse((await pulumi(m, ["stack", "export", "--show-secrets"])).out);
    // Every resource that connects (the ModelSwitch record touches no database).
    const dynamic = state.deployment.resources.filter(
      (r: any) => String(r.type).startsWith("pulumi-nodejs:dynamic/guardian:") && !String(r.type).endsWith(":ModelSwitch"),
    );
    expect(dynamic.length).toBeGreaterThan(10);
    const plain = (v: any) => (typeof v === "string" ? v : v?.plaintext ? JSON.parse(v.plaintext) : v);
    for (const r of dynamic) {
      expect(plain(r.inputs.databaseUrl), r.urn).toBe(rotated);
      expect(plain(r.outputs.databaseUrl), r.urn).toBe(rotated); // what read (refresh) and delete connect with
    }
  });
});
