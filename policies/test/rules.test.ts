/**
 * The policy pack's rules as pure functions (no engine): the SQL reader, the split and margin arithmetic, and every
 * SECURITY DEFINER function in the project's own SQL files held to the rule.
 */
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { analyzeFunctions, marginViolations, planMargins, securityDefinerProblems, splitProblems, tenantTablesHaveRls } from "../rules";

const SQL_ROOT = path.resolve(__dirname, "..", "..", "sql");
const fn = (sql: string, meta?: Record<string, unknown>) =>
  securityDefinerProblems({ name: "f", props: { kind: "function", objectName: "public.f()", sql, meta } });

describe("security-definer-pins-search-path: reading the SQL", () => {
  it("finds v1's three flaws in the live consume_credits_rpc (facts.md #6)", () => {
    const v1 = fs.readFileSync(path.join(SQL_ROOT, "baseline", "03_consume_credits_rpc_v1.sql"), "utf8");
    expect(analyzeFunctions(v1)).toEqual([
      { name: "public.consume_credits_rpc", securityDefiner: true, pinsSearchPath: false, revokedFromPublic: false, grantedTo: [] },
    ]);
  });

  it("accepts a pinned function whose EXECUTE is revoked from PUBLIC after its CREATE", () => {
    const sql = `CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$ SELECT 1 $$;
                 REVOKE ALL ON FUNCTION public.f() FROM PUBLIC;`;
    expect(fn(sql, { securityDefiner: true, searchPath: "", executeRoles: [] })).toEqual([]);
  });

  it("does not count a REVOKE made before the CREATE, nor words inside strings, comments or bodies", () => {
    const sql = `REVOKE ALL ON FUNCTION public.f() FROM PUBLIC;
                 -- SET search_path = pg_catalog
                 CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $body$
                 BEGIN SET search_path = ''; RETURN 'GRANT EXECUTE ON FUNCTION f() TO anon'; END $body$;`;
    expect(analyzeFunctions(sql)).toEqual([
      { name: "public.f", securityDefiner: true, pinsSearchPath: false, revokedFromPublic: false, grantedTo: [] },
    ]);
  });

  it("reads functions created inside DO blocks, and ALTER FUNCTION ... SET search_path", () => {
    const sql = `DO $$ BEGIN
                   CREATE FUNCTION guardian.g(uuid) RETURNS int LANGUAGE sql SECURITY DEFINER AS $f$ SELECT 1 $f$;
                 END $$;
                 ALTER FUNCTION guardian.g(uuid) SET search_path = pg_catalog, pg_temp;
                 GRANT EXECUTE ON FUNCTION guardian.g(uuid) TO authenticated, anon;`;
    expect(analyzeFunctions(sql)).toEqual([
      { name: "guardian.g", securityDefiner: true, pinsSearchPath: true, revokedFromPublic: false, grantedTo: ["anon"] },
    ]);
  });

  it("holds meta to the SQL: a definer function declared securityDefiner false is a violation", () => {
    const sql = `CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$ SELECT 1 $$;
                 REVOKE EXECUTE ON FUNCTION public.f() FROM PUBLIC, anon;`;
    expect(fn(sql, { securityDefiner: false, searchPath: null, executeRoles: ["PUBLIC"] })).toEqual([
      "function public.f(): meta.securityDefiner is false but the SQL declares SECURITY DEFINER (public.f)",
      "function public.f(): meta.executeRoles grants EXECUTE to public",
    ]);
    expect(fn(sql, { securityDefiner: true, searchPath: null, executeRoles: ["PUBLIC"] })).toEqual([
      "function public.f(): meta.securityDefiner is true but meta.searchPath is null, not a pinned search_path",
      "function public.f(): meta.executeRoles grants EXECUTE to public",
    ]);
  });

  // Every file of the project that a component applies: a SECURITY DEFINER function anywhere must pass the rule.
  // (sql/baseline is the pre-Phase-3.5 database as found, flaws included; it is not applied as a SqlObject.)
  const files = fs
    .readdirSync(SQL_ROOT)
    .filter((d) => d !== "baseline" && fs.statSync(path.join(SQL_ROOT, d)).isDirectory())
    .flatMap((d) => fs.readdirSync(path.join(SQL_ROOT, d)).filter((f) => f.endsWith(".sql")).map((f) => `${d}/${f}`))
    .filter((f) => /security\s+definer/i.test(fs.readFileSync(path.join(SQL_ROOT, f), "utf8")));
  it.each(files)("sql/%s passes the rule", (file) => {
    const sql = fs.readFileSync(path.join(SQL_ROOT, file), "utf8");
    expect(securityDefinerProblems({ name: file, props: { kind: "sql", objectName: file, sql } })).toEqual([]);
  });
});

describe("allocation-shares-valid", () => {
  it("accepts the Phase 3.5 split and refuses 110% with sms left out", () => {
    expect(splitProblems({ ai: 0.4, whatsapp: 0.3, email: 0.3, sms: 0 }, "b")).toEqual([]);
    expect(splitProblems({ ai: 0.4, whatsapp: 0.4, email: 0.3 }, "b")).toEqual([
      "backfill b: split.sms is undefined, expected a share from 0 to 1 (every pool must be stated, 0 included)",
      "backfill b: split shares sum to 1.1 (ai 0.4 + whatsapp 0.4 + email 0.3 + sms undefined), more than 1",
    ]);
    expect(splitProblems({ ai: -0.1, whatsapp: 1.2, email: 0, sms: 0, voice: 0.1 }, "b")).toEqual([
      "backfill b: split.voice is not a pool (pools are ai, whatsapp, email, sms)",
      "backfill b: split.ai = -0.1 is outside 0..1",
      "backfill b: split.whatsapp = 1.2 is outside 0..1",
    ]);
  });
});

describe("plan margins, every pool counted", () => {
  const meta = {
    plans: {
      starter: { priceEur: 19, ai: 200, whatsapp: 150, email: 1000, sms: 50 },
      premium: { priceEur: 149, ai: 1500, whatsapp: 1200, email: 20000, sms: 500 },
      enterprise: { priceEur: null, ai: 1500, whatsapp: 1200, email: 20000, sms: 500 },
      trial_14: { priceEur: 0, ai: 50, whatsapp: 25, email: 200, sms: 5 },
    },
    providerCosts: { ai: 0.005, whatsapp: 0.0157, email: 0, sms: 0.05 },
    marginTarget: 0.82,
  };

  it("computes starter at 69.2% and premium at 65.5% with SMS (facts.md), skipping custom and free plans", () => {
    const { margins, skipped } = planMargins(meta);
    expect(margins.map((m) => [m.plan, m.marginPct, m.costEur])).toEqual([["premium", 65.54, 51.34], ["starter", 69.18, 5.855]]);
    expect(skipped).toEqual(["enterprise (price custom)", "trial_14 (price 0)"]);
  });

  it("refuses a margin that leaves a pool out: a pool without a provider cost, a plan without a pool", () => {
    const noSmsCost = { ...meta, providerCosts: { ai: 0.005, whatsapp: 0.0157, email: 0 }, marginTarget: 0.1 };
    expect(marginViolations(noSmsCost)).toEqual(["pool sms has no provider cost (guardian:providerCosts.sms); a margin that leaves a pool out is false"]);
    const planWithoutSms = { ...meta, plans: { starter: { priceEur: 19, ai: 200, whatsapp: 150, email: 1000 } }, marginTarget: 0.1 };
    expect(marginViolations(planWithoutSms)).toEqual(["plan starter states no sms allocation; a margin that leaves a pool out is false"]);
  });
});

describe("tenant-tables-have-rls", () => {
  it("requires the fixed tenant tables even when no resource mentions them", () => {
    expect(tenantTablesHaveRls([]).map((v) => v.message)).toHaveLength(4);
  });
});
