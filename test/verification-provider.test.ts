/**
 * The Verification provider called directly (its controller, as pulumi-command tests its own): it fails an update
 * when a member reads another organization's rows, or when a SECURITY DEFINER function of the program leaves
 * search_path unpinned; it warns, without failing, about such functions that are not the program's.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ISOLATION_TABLES } from "../lib/isolation";
import { loadSql } from "../lib/sql";
import { verificationProvider } from "../providers/verification";
import type { TestDb } from "./helpers/db";
import { seededDb } from "./helpers/migration";

function inputs(db: TestDb) {
  const f = loadSql("verification/unified.sql");
  return {
    databaseUrl: db.url,
    model: "unified",
    sql: f.text,
    sqlSha256: f.sha256,
    upstream: {},
    trialCallsSql: loadSql("verification/trial_calls.sql").text,
    profileRoleColumn: "role",
    isolationTables: ISOLATION_TABLES,
  };
}

describe("verification provider (providers/verification.ts)", () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await seededDb(20, 3);
  });
  afterAll(() => db?.drop());

  it("fails on the seed's live cross-tenant policy, naming the member and the table, and on an unpinned function of its own", async () => {
    await db.query(`CREATE SCHEMA IF NOT EXISTS guardian`);
    await db.query(`CREATE FUNCTION guardian.unpinned() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'`);
    try {
      const e = await verificationProvider.create!(inputs(db)).then(
        () => undefined,
        (x: Error) => x,
      );
      expect(e?.message).toMatch(/verification of the unified model FAILED/);
      expect(e?.message).toMatch(/tenant isolation: member1 \(authenticated\) reads \d+ row\(s\) of other organizations of public\.organization_credits/);
      expect(e?.message).toContain("security definer: guardian.unpinned() has search_path unset, not ending with pg_temp");
      // v1 (the CRM's own, not the program's) is a warning, not a violation.
      expect(e?.message).not.toMatch(/security definer: consume_credits_rpc/);
    } finally {
      await db.query(`DROP FUNCTION guardian.unpinned()`);
    }
  });

  it("answers on refresh (read) with what fails now, so the next update re-verifies", async () => {
    const r = await verificationProvider.read!("verification:unified", { ...inputs(db), liveCheck: "ok" });
    expect(r.props.liveCheck).toMatch(/^failed: tenant isolation: anon \(anon\) reads \d+ row\(s\)/); // the seed grants anon SELECT
    expect(r.props.liveCheck).toMatch(/member1 \(authenticated\) reads \d+ row\(s\) of other organizations of public\.organization_credits/);
    const d = await verificationProvider.diff!("verification:unified", r.props, inputs(db));
    expect(d.changes).toBe(true);
    expect(Object.keys((d as { detailedDiff?: object }).detailedDiff ?? {})).toEqual(["liveCheck"]); // untyped in the SDK's DiffResult
  });
});
