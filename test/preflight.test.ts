/**
 * Go/no-go: every gate against real databases, every failure in one NoGoError, and no password in any message.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../lib/config";
import { NoGoError, preflight, type PreflightReport, serverVersionFailure } from "../lib/preflight";
import { freshDb, type TestDb } from "./helpers/db";
import { refusingServer } from "./helpers/refusingServer";

const config = (databaseUrl: string, extra: Record<string, unknown> = {}) => parseConfig({ databaseUrl, creditModel: "multi", ...extra });

async function noGo(p: Promise<unknown>): Promise<NoGoError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof NoGoError) return e;
    throw e;
  }
  throw new Error("expected a NoGoError, but preflight said go");
}

describe("go/no-go (lib/preflight.ts)", () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await freshDb({ prefix: "preflight" });
  });
  afterAll(() => db?.drop());

  it("says go on a database with the baseline, reporting what it checked", async () => {
    const report = await preflight(config(db.url));
    expect(report.go).toBe(true);
    expect(report.failures).toEqual([]);
    expect(report.passed).toEqual(["connection", "session", "server", "baseline", "shape", "access", "locks", "catalogue"]);
    expect(report.notes).toContain("shape: profile role column profiles.role; trials by organization_credits.is_trial");
    expect(report.serverVersionNum).toBeGreaterThanOrEqual(140000);
    expect(report.notes.join("\n")).toMatch(/^server: PostgreSQL \d+/m);
    expect(report.notes.join("\n")).toMatch(/^connection: (TLSv[\d.]+, certificate not verified|not encrypted) \(sslmode prefer from libpq's default/m);
    expect(report.notes.join("\n")).toMatch(/^session: a session setting and an advisory lock survive from one transaction to the next/m);
    expect(report.notes).toContain("catalogue: all 8 action types of public.credit_actions are mapped in guardian:actions");
  });

  it("refuses an unreachable server, naming host and port, without the password", async () => {
    const e = await noGo(preflight(config("postgres://guardian:s3cr3t-pw@127.0.0.1:1/guardian")));
    expect(e.message).toBe(
      "NO-GO: 1 gate failed:\n" +
        "  - connection: cannot connect to the Guardian database at postgres://guardian:***@127.0.0.1:1/guardian: " +
        "connection refused (is the server running and listening there?) [ECONNREFUSED]; the other gates were not evaluated",
    );
    expect(e.report.skipped.map((s) => s.gate)).toEqual(["session", "server", "baseline", "shape", "access", "locks", "catalogue"]);
  });

  it("refuses a host name that does not resolve", async () => {
    const e = await noGo(preflight(config("postgres://guardian:s3cr3t-pw@guardian-db.invalid:5432/guardian")));
    expect(e.message).toMatch(
      /^NO-GO: 1 gate failed:\n {2}- connection: cannot connect to the Guardian database at postgres:\/\/guardian:\*\*\*@guardian-db\.invalid:5432\/guardian: host name does not resolve \[(ENOTFOUND|EAI_AGAIN)\]/,
    );
    expect(e.message).not.toContain("s3cr3t-pw");
  });

  it("refuses a wrong password without echoing it (server asking for a password, speaking the real protocol)", async () => {
    const srv = await refusingServer();
    try {
      const e = await noGo(preflight(config(`postgres://guardian:wr0ng-pw@127.0.0.1:${srv.port}/guardian`)));
      expect(e.message).toBe(
        "NO-GO: 1 gate failed:\n" +
          `  - connection: cannot connect to the Guardian database at postgres://guardian:***@127.0.0.1:${srv.port}/guardian: ` +
          "password authentication failed [28P01]; the other gates were not evaluated",
      );
      expect(e.message).not.toContain("wr0ng-pw");
    } finally {
      srv.close();
    }
  });

  it("lists every failed gate at once: a missing baseline table and an unmapped action", async () => {
    const broken = await freshDb({ prefix: "preflight" });
    try {
      await broken.query(`DROP TABLE public.credit_consumption_logs`);
      await broken.query(`INSERT INTO public.credit_actions (action_type, credits_cost) VALUES ('foo', 1), ('voice_call', 3)`);
      const e = await noGo(preflight(config(broken.url)));
      expect(e.message).toBe(
        "NO-GO: 2 gates failed:\n" +
          "  - baseline: table public.credit_consumption_logs is missing\n" +
          '  - catalogue: action "foo" has no pool mapping in guardian:actions\n' +
          '  - catalogue: action "voice_call" has no pool mapping in guardian:actions',
      );
      expect(e.report.passed).toEqual(["connection", "session", "server", "shape", "locks"]);
    } finally {
      await broken.drop();
    }
  });

  it("refuses a database without the Supabase auth functions or consume_credits_rpc", async () => {
    const bare = await freshDb({ prefix: "preflight" });
    try {
      await bare.query(`DROP FUNCTION auth.uid() CASCADE; DROP FUNCTION public.consume_credits_rpc(uuid, text)`);
      const e = await noGo(preflight(config(bare.url)));
      expect(e.message).toBe(
        "NO-GO: 1 gate failed:\n" +
          "  - baseline: function auth.uid() is missing (is this a Supabase database?)\n" +
          "  - baseline: function public.consume_credits_rpc is missing (neither v1 nor v2)",
      );
    } finally {
      await bare.drop();
    }
  });

  it("refuses while another session has held a lock on a credit table for too long, naming it", async () => {
    const holder = await db.client();
    try {
      await holder.query(`SET application_name = 'long-report-job'`);
      await holder.query(`BEGIN`);
      await holder.query(`LOCK TABLE public.organization_credits IN ROW EXCLUSIVE MODE`);
      const pid = (await holder.query(`SELECT pg_backend_pid() AS pid`)).rows[0].pid;
      await new Promise((r) => setTimeout(r, 2100));
      const e = await noGo(preflight(config(db.url), { maxTransactionAgeSeconds: 1 }));
      expect(e.message).toMatch(
        new RegExp(
          `^NO-GO: 1 gate failed:\\n  - locks: pid ${pid} \\(user postgres, application "long-report-job", idle in transaction\\) ` +
            `has held a transaction open for [2-9] s \\(limit 1 s\\) with locks on public\\.organization_credits \\(RowExclusiveLock\\); ` +
            `the migration's DDL would wait behind it: end that transaction or run again when it is done$`,
        ),
      );
      // The same transaction within the limit is no reason to stop.
      const report: PreflightReport = await preflight(config(db.url), { maxTransactionAgeSeconds: 600 });
      expect(report.go).toBe(true);
    } finally {
      await holder.query(`ROLLBACK`).catch(() => undefined);
      await holder.end();
    }
  });

  it("returns the failures instead of throwing when asked (throwOnNoGo: false)", async () => {
    const report = await preflight(config("postgres://guardian:pw@127.0.0.1:1/guardian"), { throwOnNoGo: false });
    expect(report.go).toBe(false);
    expect(report.failures.map((f) => f.gate)).toEqual(["connection"]);
  });

  it("does not check the catalogue when rolling back to unified (no action needs a pool then)", async () => {
    await db.query(`INSERT INTO public.credit_actions (action_type, credits_cost) VALUES ('legacy_unmapped', 1) ON CONFLICT DO NOTHING`);
    try {
      const report = await preflight(config(db.url, { creditModel: "unified" }));
      expect(report.go).toBe(true);
      expect(report.skipped).toEqual([{ gate: "catalogue", reason: "creditModel is unified: no action needs a pool" }]);
    } finally {
      await db.query(`DELETE FROM public.credit_actions WHERE action_type = 'legacy_unmapped'`);
    }
  });

  it("names every column the program's SQL reads that the database lacks, and an ambiguous or unknown role column", async () => {
    const other = await freshDb({ prefix: "preflight_shape" });
    try {
      await other.query(`ALTER TABLE public.organization_credits DROP COLUMN cycle_end_date`);
      await other.query(`ALTER TABLE public.profiles ADD COLUMN user_role text`);
      const e = await noGo(preflight(config(other.url)));
      expect(e.report.failures.filter((f) => f.gate === "shape").map((f) => f.message)).toEqual([
        "column public.organization_credits.cycle_end_date is missing (the program's SQL reads it)",
        "public.profiles has both role and user_role: set guardian:schema.profileRoleColumn to the one that holds super_admin",
      ]);
      await other.query(`ALTER TABLE public.profiles DROP COLUMN role, DROP COLUMN user_role`);
      const e2 = await noGo(preflight(config(other.url)));
      expect(e2.message).toContain("public.profiles has neither a role nor a user_role column: set guardian:schema.profileRoleColumn");
    } finally {
      await other.drop();
    }
  });

  it("adapts to user_role and to trials by plan name where is_trial is missing, and takes overrides", async () => {
    const other = await freshDb({ prefix: "preflight_shape" });
    try {
      await other.query(`ALTER TABLE public.profiles RENAME COLUMN role TO user_role`);
      await other.query(`ALTER TABLE public.organization_credits DROP COLUMN is_trial`);
      const r = await preflight(config(other.url));
      expect(r.discovery?.shape).toEqual({ profileRoleColumn: "user_role", trial: { plans: ["trial_14"] } });
      const o = await preflight(config(other.url, { schema: { trialPlans: ["trial_14", "trial_30"] } }));
      expect(o.discovery?.shape.trial).toEqual({ plans: ["trial_14", "trial_30"] });
      const bad = await noGo(preflight(config(other.url, { schema: { profileRoleColumn: "role", trialColumn: "is_trial" } })));
      expect(bad.report.failures.map((f) => f.message)).toEqual([
        "guardian:schema.profileRoleColumn names public.profiles.role, which does not exist",
        "guardian:schema.trialColumn names public.organization_credits.is_trial, which does not exist",
      ]);
    } finally {
      await other.drop();
    }
  });

  it("refuses servers older than PostgreSQL 14", () => {
    expect(serverVersionFailure(130009, "13.9")).toBe("PostgreSQL 13.9 (server_version_num 130009) is not supported; 14 or later is required");
    expect(serverVersionFailure(140000, "14.0")).toBeUndefined();
  });
});
