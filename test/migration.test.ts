/**
 * The Phase 3.5 migration through the real engine on a real Postgres: preview explains, up does, verification
 * proves, a second up changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { POOLS } from "../lib/config";
import { expectedPools } from "./helpers/allocation";
import { changed, type Migrated, orgs, preview, seededStack, teardown, up } from "./helpers/migration";

describe("migration to the multi model", () => {
  let m: Migrated;
  let before: Awaited<ReturnType<typeof orgs>>;
  let previewResult: Awaited<ReturnType<typeof preview>>;
  let upResult: Awaited<ReturnType<typeof up>>;
  let afterPreview: { guardian: boolean; poolColumns: number; v2: boolean };

  beforeAll(async () => {
    m = await seededStack(300);
    before = await orgs(m.db);
    previewResult = await preview(m.t);
    [afterPreview] = await m.db.query(`
      SELECT to_regnamespace('guardian') IS NOT NULL AS guardian,
             (SELECT count(*)::int FROM information_schema.columns
               WHERE table_name = 'organization_credits' AND column_name LIKE '%_credits_%') AS "poolColumns",
             to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)') IS NOT NULL AS v2`);
    upResult = await up(m.t);
  });
  afterAll(() => teardown(m));

  it("preview plans every step as a create and changes nothing in the database", async () => {
    const kinds = previewResult.changeSummary;
    expect(kinds.create).toBeGreaterThan(10);
    expect(previewResult.stdout).toMatch(/guardian:components:Backup/);
    expect(previewResult.stdout).toMatch(/guardian:components:Backfill/);
    expect(previewResult.stdout).toMatch(/guardian:components:Verification/);
    expect(afterPreview).toEqual({ guardian: false, poolColumns: 0, v2: false });
  });

  it("preview states how many organizations the backfill will change, per plan", () => {
    const expected: Record<string, number> = {};
    for (const o of before) {
      const rule = expectedPools(o.plan_name, o.total_credits, o.credits_remaining).rule;
      expected[rule] = (expected[rule] ?? 0) + 1;
    }
    // The engine reports it as a diagnostic of the stack, and the preview shows it as the backfillPlan output.
    const line = m.t
      .logText()
      .split("\n")
      .find((l) => l.includes("backfill: will migrate"))!;
    expect(previewResult.stdout).toMatch(/backfillPlan\s*:/);
    expect(line).toContain(`will migrate ${before.length} organizations`);
    for (const [rule, n] of Object.entries(expected)) expect(line).toContain(`${rule} ${n}`);
  });

  it("allocates every organization by the contract's rule, odd plan names and balances included", async () => {
    const after = await orgs(m.db);
    expect(after).toHaveLength(before.length);
    for (const o of after) {
      const want = expectedPools(o.plan_name, o.total_credits, o.credits_remaining);
      expect(o.credit_model, o.organization_id).toBe("multi");
      for (const pool of POOLS) {
        expect(o[`${pool}_credits_total`], `${o.organization_id} ${o.plan_name} ${pool}_total`).toBe(want.total[pool]);
        expect(o[`${pool}_credits_available`], `${o.organization_id} ${o.plan_name} ${pool}_available`).toBe(want.available[pool]);
      }
    }
    // The odd spellings of the seed are matched to their plan.
    const odd = after.filter(
      (o) => o.plan_name !== o.plan_name.trim().toLowerCase() && ["premium", "starter", "professional"].includes(o.plan_name.trim().toLowerCase()),
    );
    expect(odd.length).toBeGreaterThan(0);
    for (const o of odd) expect(o.ai_credits_total).toBe(expectedPools(o.plan_name.trim().toLowerCase(), 0, 0).total.ai);
  });

  it("conserves credits for split organizations: the pools add up to total_credits and credits_remaining", async () => {
    const split = (await orgs(m.db)).filter((o) => expectedPools(o.plan_name, 0, 0).rule === "split");
    expect(split.length).toBeGreaterThan(10);
    for (const o of split) {
      const total = POOLS.reduce((s, p) => s + o[`${p}_credits_total`], 0);
      const avail = POOLS.reduce((s, p) => s + o[`${p}_credits_available`], 0);
      expect(total).toBe(Math.max(0, o.total_credits));
      expect(avail).toBe(Math.max(0, o.credits_remaining));
    }
  });

  it("counts a negative balance as 0 and reports the organization", async () => {
    const neg = before.filter((o) => o.credits_remaining < 0);
    expect(neg).toHaveLength(1);
    expect(upResult.outputs.negativeBalanceOrgs.value).toEqual([neg[0].organization_id]);
    const anomalies = await m.db.query(`SELECT organization_id, value FROM guardian.backfill_anomalies`);
    expect(anomalies).toEqual([{ organization_id: neg[0].organization_id, value: String(neg[0].credits_remaining) }]);
  });

  it("exports facts computed from the database: orgs per plan, migrated vs total, conservation", () => {
    const o = upResult.outputs;
    expect(o.orgsTotal.value).toBe(before.length);
    expect(o.orgsMigrated.value).toBe(before.length);
    expect(o.rowsBackfilled.value).toBe(before.length);
    expect(o.restoreVerified.value).toBe(true);
    expect(o.backupId.value).toMatch(/^guardian_backup_\d{14}_[0-9a-f]{6}$/);
    const perPlan = o.orgsPerPlan.value as Record<string, number>;
    expect(Object.values(perPlan).reduce((a, b) => a + b, 0)).toBe(before.length);
    expect(o.conservation.value.splitOrgs).toBe(o.conservation.value.splitOrgsConserved);
  });

  it("keeps the backup: a schema guardian_backup_* with the row counts of the manifest", async () => {
    const id = upResult.outputs.backupId.value;
    const counts = upResult.outputs.backupRowCounts.value;
    const [{ n }] = await m.db.query(`SELECT count(*)::int n FROM ${id}.organization_credits`);
    expect(n).toBe(before.length);
    expect(counts.organization_credits).toBe(before.length);
  });

  it("journals every step", async () => {
    const steps = (await m.db.query(`SELECT DISTINCT step FROM guardian.migration_journal`)).map((r) => r.step);
    for (const s of ["backup", "restore_check", "apply", "backfill_batch", "verification"]) expect(steps).toContain(s);
  });

  it("a second up changes nothing", async () => {
    const p = await preview(m.t);
    expect(changed(p.changeSummary)).toEqual({});
    const r = await up(m.t);
    expect(changed(r.summary.resourceChanges)).toEqual({});
  });

  it("a change to the action catalogue in config shows in preview as an update of the catalogue, with the SQL", async () => {
    const { DEFAULT_ACTIONS } = await import("../lib/config");
    await m.t.setConfig({ actions: { ...DEFAULT_ACTIONS, sms_send: { ...DEFAULT_ACTIONS.sms_send, sms: 2 } } });
    const p = await preview(m.t);
    expect(changed(p.changeSummary)).toEqual({ update: 1 });
    expect(p.stdout).toMatch(/guardian:components:Catalogue/);
    expect(p.stdout).toMatch(/'sms_send'/);
  });
});
