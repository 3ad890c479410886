/**
 * TenantPolicies through the real engine: `pulumi up` applies helpers, privileges, policies and RLS; a policy dropped
 * or RLS disabled by hand shows on `pulumi preview --refresh` and the next `up` puts it back; destroy drops the
 * policies but leaves RLS on and the privileges revoked (fail closed).
 */
import * as fs from "fs";
import * as path from "path";
import type { EngineEvent } from "@pulumi/pulumi/automation";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { POLICY_COMMANDS, TENANT_TABLES } from "../components/tenantPolicies";
import { explainSqlError, loadSql, SQL_ROOT } from "../lib/sql";
import { freshDb, type TestDb } from "./helpers/db";
import { collect, testStack, type TestStack } from "../harness/stack";

const PROGRAM = path.join(__dirname, "fixtures", "tenant-policies");
const PULUMI_YAML = "name: guardian-tenant-policies\nruntime:\n  name: nodejs\n  options:\n    typescript: true\n";

/** What TenantPolicies stands on, applied directly: the components before it in docs/architecture.md. */
async function applyPrerequisites(db: TestDb): Promise<void> {
  const c = await db.client();
  try {
    for (const dir of ["schema", "audit", "functions"]) {
      const full = path.join(SQL_ROOT, dir);
      if (!fs.existsSync(full)) continue;
      for (const f of fs
        .readdirSync(full)
        .filter((x) => x.endsWith(".sql"))
        .sort()) {
        const text = loadSql(`${dir}/${f}`).text; // rendered for the seed's shape, as the components apply it
        await c.query(text).catch((e) => Promise.reject(explainSqlError(e, `${dir}/${f}`, text)));
      }
    }
  } finally {
    await c.end();
  }
}

const policyRows = (db: TestDb) =>
  db.query<{ t: string; cmd: string; policyname: string }>(
    `SELECT format('%s.%s', schemaname, tablename) AS t, lower(cmd) AS cmd, policyname FROM pg_policies ORDER BY 1, 2, 3`,
  );

describe("TenantPolicies (real engine)", () => {
  let db: TestDb;
  let t: TestStack;

  beforeAll(async () => {
    db = await freshDb({ prefix: "tenancy" });
    await applyPrerequisites(db);
    t = await testStack(db.url, {}, { programDir: PROGRAM, pulumiYaml: PULUMI_YAML });
  });
  afterAll(async () => {
    t?.destroyWorkspace();
    await db?.drop();
  });

  it("applies one policy per table and command, RLS on every table, and replaces the live cross-tenant policy", async () => {
    const res = await t.stack.up({ onEvent: collect(t) });
    const expected = TENANT_TABLES.flatMap((x) => POLICY_COMMANDS.map((c) => `${x.table}/${c}`));
    expect(res.outputs.policies.value).toEqual(expected);
    expect(res.outputs.rlsTables.value).toEqual(TENANT_TABLES.map((x) => x.table));
    expect(res.outputs.sqlSha256.value).toMatch(/^[0-9a-f]{64}$/);
    // helpers, grants, the profiles guard, and per table four policies and the RLS switch
    expect(Object.keys(res.outputs.files.value)).toHaveLength(3 + TENANT_TABLES.length * 5);
    expect((await policyRows(db)).map((r) => `${r.t}/${r.cmd}`)).toEqual([...expected].sort());
    const rls = await db.query(`SELECT count(*)::int AS n FROM unnest($1::text[]) t JOIN pg_class c ON c.oid = to_regclass(t) WHERE c.relrowsecurity`, [
      TENANT_TABLES.map((x) => x.table),
    ]);
    expect(rls[0].n).toBe(TENANT_TABLES.length);
  });

  it("shows nothing to do on a second preview", async () => {
    const res = await t.stack.preview({ onEvent: collect(t), refresh: true });
    expect(Object.keys(res.changeSummary).filter((k) => k !== "same")).toEqual([]);
  });

  it("shows a policy dropped, a policy added and RLS disabled by hand on preview --refresh, and up repairs them", async () => {
    await db.query(`DROP POLICY guardian_select ON public.credit_consumption_logs`);
    await db.query(`CREATE POLICY "Authenticated users can view credits" ON public.organization_credits FOR SELECT TO authenticated USING (true)`);
    await db.query(`ALTER TABLE public.profiles DISABLE ROW LEVEL SECURITY`);
    const events: EngineEvent[] = [];
    const pre = await t.stack.preview({ onEvent: (e) => events.push(e), refresh: true });
    // Dropped objects are gone from state after the refresh: created again. The hand-made policy is drift: updated.
    expect(pre.changeSummary).toMatchObject({ create: 2, update: 1 });
    const planned = events
      .map((e) => e.resourcePreEvent?.metadata)
      .filter((m) => m && m.op !== "same" && m.op !== "refresh" && m.type !== "pulumi:pulumi:Stack")
      .map((m) => `${m!.op} ${m!.urn.split("::").pop()}`)
      .sort();
    expect(planned).toEqual([
      "create tenant-policies-credit_consumption_logs-select",
      "create tenant-policies-profiles-rls",
      "update tenant-policies-organization_credits-select",
    ]);

    await t.stack.up({ onEvent: collect(t), refresh: true });
    const names = (await policyRows(db)).filter((r) => r.t === "public.organization_credits" || r.t === "public.credit_consumption_logs");
    expect(names.filter((r) => r.cmd === "select").map((r) => `${r.t} ${r.policyname}`)).toEqual([
      "public.credit_consumption_logs guardian_select",
      "public.organization_credits guardian_select",
    ]);
    const [profiles] = await db.query(`SELECT relrowsecurity FROM pg_class WHERE oid = 'public.profiles'::regclass`);
    expect(profiles.relrowsecurity).toBe(true);
  });

  it("on destroy drops its policies but leaves RLS on and the credit tables' privileges revoked (fail closed)", async () => {
    await t.stack.destroy({ onEvent: collect(t) });
    expect(await policyRows(db)).toEqual([]);
    // With RLS on and no policy, no row of any of these tables is visible to the Data API roles.
    const [state] = await db.query(`SELECT bool_and(c.relrowsecurity) AS rls FROM unnest($1::text[]) t JOIN pg_class c ON c.oid = to_regclass(t)`, [
      TENANT_TABLES.filter((x) => x.table.startsWith("public.")).map((x) => x.table),
    ]);
    expect(state).toEqual({ rls: true });
    const [credit] = await db.query(
      `SELECT bool_or(has_table_privilege('authenticated', c.oid, 'INSERT, UPDATE, DELETE')) AS authenticated_writes,
              bool_or(has_table_privilege('anon', c.oid, 'SELECT')) AS anon_reads
         FROM unnest(ARRAY['public.organization_credits', 'public.credit_consumption_logs']) t JOIN pg_class c ON c.oid = to_regclass(t)`,
    );
    expect(credit).toEqual({ authenticated_writes: false, anon_reads: false });
  });
});
