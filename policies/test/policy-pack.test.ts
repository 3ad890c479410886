/**
 * The policy pack, run by the real engine: for each rule a tiny program that breaks it (policies/test/fixtures/<rule>)
 * is previewed with `--policy-pack policies/run-policy-pack`; the violation must be reported under the rule's name,
 * a mandatory one must fail the preview, and nothing else may be reported. A compliant program (with the real
 * TenantPolicies component) passes.
 */
import * as path from "path";
import type { EngineEvent } from "@pulumi/pulumi/automation";
import { afterAll, describe, expect, it } from "vitest";
import { testStack, type TestStack } from "../../harness/stack";

const PACK = path.resolve(__dirname, "..", "run-policy-pack");
const FIXTURES = path.join(__dirname, "fixtures");
const PULUMI_YAML = "name: guardian-policy-fixture\nruntime:\n  name: nodejs\n  options:\n    typescript: true\n";

interface Reported {
  policy: string;
  level: string;
  message: string;
  urn?: string;
}

interface PreviewResult {
  failed: boolean;
  error: string;
  violations: Reported[];
}

const stacks: TestStack[] = [];
afterAll(() => {
  for (const t of stacks) t.destroyWorkspace();
});

async function previewWithPack(fixture: string): Promise<PreviewResult> {
  const t = await testStack(undefined, {}, { programDir: path.join(FIXTURES, fixture), pulumiYaml: PULUMI_YAML });
  stacks.push(t);
  const events: EngineEvent[] = [];
  let failed = false;
  let error = "";
  try {
    await t.stack.preview({ policyPacks: [PACK], onEvent: (e) => events.push(e) });
  } catch (e: any) {
    failed = true;
    error = String(e?.message ?? e);
  }
  const violations = events
    .filter((e) => e.policyEvent)
    // The engine prefixes each message with the policy's description line.
    .map((e) => ({
      policy: e.policyEvent!.policyName,
      level: e.policyEvent!.enforcementLevel,
      message: e.policyEvent!.message.split("\n").slice(1).join("\n").trim(),
      urn: e.policyEvent!.resourceUrn,
    }));
  return { failed, error, violations };
}

const byPolicy = (r: PreviewResult, name: string) =>
  r.violations
    .filter((v) => v.policy === name)
    .map((v) => v.message)
    .sort();
const policiesReported = (r: PreviewResult) => [...new Set(r.violations.map((v) => v.policy))].sort();

describe("policy pack (real engine, pulumi preview --policy-pack)", () => {
  it("passes a compliant program that uses the real TenantPolicies component", async () => {
    const r = await previewWithPack("compliant");
    expect(r.violations).toEqual([]);
    expect(r.failed, r.error).toBe(false);
  });

  it("tenant-tables-have-rls: fails the preview when a tenant table has no policy or no RLS", async () => {
    const r = await previewWithPack("tenant-tables-have-rls");
    expect(policiesReported(r)).toEqual(["tenant-tables-have-rls"]);
    expect(byPolicy(r, "tenant-tables-have-rls")).toEqual([
      'table credit_actions holds tenant data but has no rls resource (SqlObject kind "rls", meta.table) and no policy resource (SqlObject kind "policy", meta.table)',
      'table organization_credits holds tenant data but has no policy resource (SqlObject kind "policy", meta.table)',
    ]);
    expect(r.violations.every((v) => v.level === "mandatory")).toBe(true);
    expect(r.failed).toBe(true);
  });

  it("security-definer-pins-search-path: fails the preview for v1's SECURITY DEFINER flaws, an empty search_path and anon left to default privileges", async () => {
    const r = await previewWithPack("security-definer-pins-search-path");
    expect(policiesReported(r)).toEqual(["security-definer-pins-search-path"]);
    const where = "function public.fixture_fn(uuid) (sql/functions/fixture.sql)";
    const anon =
      "(Supabase's default privileges grant new functions to anon, which a REVOKE ... FROM PUBLIC leaves in place: add REVOKE EXECUTE ON FUNCTION ... FROM anon after its CREATE)";
    expect(byPolicy(r, "security-definer-pins-search-path")).toEqual([
      `${where}: SECURITY DEFINER function public.fixture_empty_path does not revoke EXECUTE from anon explicitly ${anon}`,
      `${where}: SECURITY DEFINER function public.fixture_empty_path pins search_path = "", which does not end with pg_temp (an empty search_path still searches the temporary schema first): ` +
        "PostgreSQL searches the caller's temporary schema first for tables and types unless pg_temp is named, so the caller's objects can stand in for the function's (SET search_path = pg_catalog, pg_temp)",
      `${where}: SECURITY DEFINER function public.fixture_fn does not pin search_path (add SET search_path = pg_catalog, pg_temp to its definition)`,
      `${where}: SECURITY DEFINER function public.fixture_fn does not revoke EXECUTE from anon explicitly ${anon}`,
      `${where}: SECURITY DEFINER function public.fixture_fn is granted EXECUTE to anon`,
      `${where}: SECURITY DEFINER function public.fixture_fn stays executable by PUBLIC (no REVOKE EXECUTE ... FROM PUBLIC after its CREATE)`,
      `${where}: meta.executeRoles grants EXECUTE to anon`,
      `${where}: meta.securityDefiner is false but the SQL declares SECURITY DEFINER (public.fixture_fn, public.fixture_empty_path)`,
    ]);
    expect(r.failed).toBe(true);
  });

  it("backfill-after-verified-backup: fails the preview when the backfill could run before a verified backup", async () => {
    const r = await previewWithPack("backfill-after-verified-backup");
    expect(policiesReported(r)).toEqual(["backfill-after-verified-backup"]);
    expect(byPolicy(r, "backfill-after-verified-backup")).toEqual([
      "backfill backfill does not depend on a Backup resource (pass the backup in dependsOn or use its backupId as an input)",
      "backfill backfill: input requireVerifiedBackup is false, expected true (the backfill must refuse to run without a verified restore)",
    ]);
    expect(r.failed).toBe(true);
  });

  it("allocation-shares-valid: fails the preview for shares summing to 110% with sms left out", async () => {
    const r = await previewWithPack("allocation-shares-valid");
    expect(policiesReported(r)).toEqual(["allocation-shares-valid"]);
    expect(byPolicy(r, "allocation-shares-valid")).toEqual(
      [
        "backfill: split shares sum to 1.1 (ai 0.4 + whatsapp 0.4 + email 0.3 + sms undefined), more than 1",
        "backfill: split.sms is undefined, expected a share from 0 to 1 (every pool must be stated, 0 included)",
      ].map((m) => m.replace(/^backfill:/, "backfill backfill:")),
    );
    expect(r.failed).toBe(true);
  });

  it("plan-margins: reports plans below target with SMS counted, at advisory level, which does not stop the preview", async () => {
    const r = await previewWithPack("plan-margins");
    expect(policiesReported(r)).toEqual(["plan-margins"]);
    expect(byPolicy(r, "plan-margins")).toEqual([
      "public.plan_margins: plan premium: margin 65.5% is below the target 82.0% (price €149.00, cost €51.34: ai €7.50 + whatsapp €18.84 + email €0.00 + sms €25.00)",
      "public.plan_margins: plan starter: margin 69.2% is below the target 82.0% (price €19.00, cost €5.86: ai €1.00 + whatsapp €2.36 + email €0.00 + sms €2.50)",
    ]);
    expect(r.violations.map((v) => v.level)).toEqual(["advisory", "advisory"]);
    expect(r.failed, r.error).toBe(false);
  });

  it("plan-margins-mandatory: the same margins fail the preview when guardian:marginGate is mandatory", async () => {
    const r = await previewWithPack("plan-margins-mandatory");
    expect(policiesReported(r)).toEqual(["plan-margins-mandatory"]);
    expect(byPolicy(r, "plan-margins-mandatory")).toHaveLength(2);
    expect(byPolicy(r, "plan-margins-mandatory")[1]).toMatch(/^public\.plan_margins: plan starter: margin 69\.2% is below the target 82\.0%/);
    expect(r.failed).toBe(true);
  });
});
