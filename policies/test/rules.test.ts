/**
 * The policy pack's rules as pure functions (no engine): the SQL reader, the split and margin arithmetic, and every
 * SECURITY DEFINER function in the project's own SQL files held to the rule.
 */
import * as fs from "fs";
import * as path from "path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadSql } from "../../lib/sql";
import {
  analyzeFunctions,
  loadSqlParser,
  marginViolations,
  parseSearchPath,
  planMargins,
  searchPathEndsWithPgTemp,
  securityDefinerProblems,
  splitProblems,
  tenantTablesHaveRls,
  ownerOnlyTriggerTruncate,
} from "../rules";

const SQL_ROOT = path.resolve(__dirname, "..", "..", "sql");
beforeAll(loadSqlParser);
const fn = (sql: string, meta?: Record<string, unknown>) =>
  securityDefinerProblems({ name: "f", props: { kind: "function", objectName: "public.f()", sql, meta } });
/** The SQL alone (an object that is not kind "function", so no meta is read). */
const sqlOnly = (sql: string) => securityDefinerProblems({ name: "f", props: { kind: "sql", objectName: "public.f()", sql } });

describe("security-definer-pins-search-path: reading the SQL", () => {
  it("finds v1's three flaws in the live consume_credits_rpc (facts.md #6)", () => {
    const v1 = fs.readFileSync(path.join(SQL_ROOT, "baseline", "03_consume_credits_rpc_v1.sql"), "utf8");
    expect(analyzeFunctions(v1)).toEqual([
      {
        name: "public.consume_credits_rpc",
        securityDefiner: true,
        pinsSearchPath: false,
        searchPath: null,
        revokedFromPublic: false,
        revokedFromAnon: false,
        grantedTo: [],
      },
    ]);
  });

  it("accepts a function pinned to a path ending with pg_temp whose EXECUTE is revoked from PUBLIC and anon after its CREATE", () => {
    const sql = `CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$;
                 REVOKE ALL ON FUNCTION public.f() FROM PUBLIC, anon;`;
    expect(fn(sql, { securityDefiner: true, searchPath: "pg_catalog, pg_temp", executeRoles: [] })).toEqual([]);
  });

  it("does not count a REVOKE made before the CREATE, nor words inside strings, comments or bodies", () => {
    const sql = `REVOKE ALL ON FUNCTION public.f() FROM PUBLIC;
                 -- SET search_path = pg_catalog
                 CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $body$
                 BEGIN SET search_path = ''; RETURN 'GRANT EXECUTE ON FUNCTION f() TO anon'; END $body$;`;
    expect(analyzeFunctions(sql)).toEqual([
      { name: "public.f", securityDefiner: true, pinsSearchPath: false, searchPath: null, revokedFromPublic: false, revokedFromAnon: false, grantedTo: [] },
    ]);
  });

  it("reads functions created inside DO blocks, and ALTER FUNCTION ... SET search_path", () => {
    const sql = `DO $$ BEGIN
                   CREATE FUNCTION guardian.g(uuid) RETURNS int LANGUAGE sql SECURITY DEFINER AS $f$ SELECT 1 $f$;
                 END $$;
                 ALTER FUNCTION guardian.g(uuid) SET search_path = pg_catalog, pg_temp;
                 GRANT EXECUTE ON FUNCTION guardian.g(uuid) TO authenticated, anon;`;
    expect(analyzeFunctions(sql)).toEqual([
      {
        name: "guardian.g",
        securityDefiner: true,
        pinsSearchPath: true,
        searchPath: ["pg_catalog", "pg_temp"],
        revokedFromPublic: false,
        revokedFromAnon: false,
        grantedTo: ["anon"],
      },
    ]);
  });

  it("holds meta to the SQL: a definer function declared securityDefiner false is a violation", () => {
    const sql = `CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$;
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

  const PG_TEMP_WHY =
    "PostgreSQL searches the caller's temporary schema first for tables and types unless pg_temp is named, so the caller's " +
    "objects can stand in for the function's (SET search_path = pg_catalog, pg_temp)";

  it("refuses an empty search_path: it still searches the temporary schema first", () => {
    const sql = `CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$ SELECT 1 $$;
                 REVOKE ALL ON FUNCTION public.f() FROM PUBLIC, anon;`;
    expect(fn(sql, { securityDefiner: true, searchPath: "''", executeRoles: [] })).toEqual([
      `function public.f(): SECURITY DEFINER function public.f pins search_path = "", which does not end with pg_temp (an empty search_path still searches the temporary schema first): ${PG_TEMP_WHY}`,
      `function public.f(): meta.searchPath "''" does not end with pg_temp (an empty search_path still searches the temporary schema first): ${PG_TEMP_WHY}`,
    ]);
  });

  it.each([
    ["pg_catalog, pg_temp", true],
    ["pg_temp", true],
    ["public, PG_TEMP", true], // unquoted names fold to lower case
    ["'pg_temp'", true], // a literal is one schema name
    ["pg_catalog, 'pg_temp'", true],
    ["''", false],
    ["pg_catalog", false],
    ["pg_temp, pg_catalog", false], // pg_temp first is the attack itself
    ["'pg_catalog, pg_temp'", false], // ONE schema named "pg_catalog, pg_temp"
    ['"PG_TEMP"', false], // quoted: a schema named PG_TEMP
    ["pg_catalog, pg_temp_3", false],
    ["DEFAULT", false],
  ] as const)("search_path = %s ends with pg_temp: %s", (value, ok) => {
    const sql = `CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = ${value}
                 AS $$ SELECT 1 $$;
                 REVOKE ALL ON FUNCTION public.f() FROM PUBLIC, anon;`;
    expect(searchPathEndsWithPgTemp(analyzeFunctions(sql)[0].searchPath)).toBe(ok);
    expect(fn(sql, { securityDefiner: true, searchPath: value, executeRoles: [] }).length === 0).toBe(ok);
  });

  it("parses a search_path as PostgreSQL stores it", () => {
    expect(parseSearchPath("pg_catalog, pg_temp")).toEqual(["pg_catalog", "pg_temp"]);
    expect(parseSearchPath("''")).toEqual([""]);
    expect(parseSearchPath("'pg_catalog, pg_temp'")).toEqual(["pg_catalog, pg_temp"]);
    expect(parseSearchPath('"My Schema", PG_TEMP')).toEqual(["My Schema", "pg_temp"]);
    expect(parseSearchPath("'it''s'")).toEqual(["it's"]);
    expect(parseSearchPath("DEFAULT")).toBeNull();
    expect(parseSearchPath("'unterminated")).toBeNull();
  });

  it("follows ALTER FUNCTION ... SET search_path and RESET", () => {
    const base = `CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$ SELECT 1 $$;
                  REVOKE ALL ON FUNCTION public.f() FROM PUBLIC, anon;`;
    expect(analyzeFunctions(`${base} ALTER FUNCTION public.f() SET search_path TO pg_catalog, pg_temp;`)[0].searchPath).toEqual(["pg_catalog", "pg_temp"]);
    expect(sqlOnly(`${base} ALTER FUNCTION public.f() SET search_path TO pg_catalog, pg_temp;`)).toEqual([]);
    const reset = analyzeFunctions(`${base} ALTER FUNCTION public.f() SET search_path = pg_catalog, pg_temp; ALTER FUNCTION public.f() RESET search_path;`)[0];
    expect(reset).toMatchObject({ pinsSearchPath: false, searchPath: null });
  });

  it("requires EXECUTE revoked from anon explicitly: revoking from PUBLIC leaves Supabase's default grant to anon", () => {
    const create = `CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$;`;
    const anonWhy =
      "sql public.f(): SECURITY DEFINER function public.f does not revoke EXECUTE from anon explicitly (Supabase's default " +
      "privileges grant new functions to anon, which a REVOKE ... FROM PUBLIC leaves in place: add REVOKE EXECUTE ON FUNCTION ... FROM anon after its CREATE)";
    expect(sqlOnly(`${create} REVOKE ALL ON FUNCTION public.f() FROM PUBLIC;`)).toEqual([anonWhy]);
    expect(sqlOnly(`${create} REVOKE ALL ON FUNCTION public.f() FROM PUBLIC; REVOKE EXECUTE ON FUNCTION public.f() FROM anon;`)).toEqual([]);
    expect(sqlOnly(`${create} REVOKE ALL ON FUNCTION public.f() FROM PUBLIC; REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM anon;`)).toEqual([]);
    // A revoke made before the CREATE does not count; a grant after the revoke gives it back.
    expect(sqlOnly(`REVOKE ALL ON FUNCTION public.f() FROM anon; ${create} REVOKE ALL ON FUNCTION public.f() FROM PUBLIC;`)).toEqual([anonWhy]);
    expect(sqlOnly(`${create} REVOKE ALL ON FUNCTION public.f() FROM PUBLIC, anon; GRANT EXECUTE ON FUNCTION public.f() TO anon;`)).toEqual([
      "sql public.f(): SECURITY DEFINER function public.f is granted EXECUTE to anon",
    ]);
    // And the other way round: a grant taken back by a later revoke is no longer a grant.
    expect(sqlOnly(`${create} GRANT EXECUTE ON FUNCTION public.f() TO anon; REVOKE ALL ON FUNCTION public.f() FROM PUBLIC, anon;`)).toEqual([]);
  });

  // Every file of the project that a component applies: a SECURITY DEFINER function anywhere must pass the rule.
  // (sql/baseline is the pre-Phase-3.5 database as found, flaws included; it is not applied as a SqlObject.)
  const files = fs
    .readdirSync(SQL_ROOT)
    .filter((d) => d !== "baseline" && fs.statSync(path.join(SQL_ROOT, d)).isDirectory())
    .flatMap((d) =>
      fs
        .readdirSync(path.join(SQL_ROOT, d))
        .filter((f) => f.endsWith(".sql"))
        .map((f) => `${d}/${f}`),
    )
    .filter((f) => /security\s+definer/i.test(fs.readFileSync(path.join(SQL_ROOT, f), "utf8")));
  it.each(files)("sql/%s passes the rule", (file) => {
    const sql = loadSql(file).text; // rendered, as the component passes it ({{profile_role:p}} is not SQL)
    expect(securityDefinerProblems({ name: file, props: { kind: "sql", objectName: file, sql } })).toEqual([]);
  });
});

describe("security-definer-pins-search-path: SQL shapes a regular expression reads wrongly (PostgreSQL's parser)", () => {
  const pinned = "SET search_path = pg_catalog, pg_temp";
  const facts = (sql: string) =>
    analyzeFunctions(sql).map((f) => [f.name, f.securityDefiner, f.searchPath, f.revokedFromPublic, f.revokedFromAnon, f.grantedTo]);

  it("holds each overload to its own REVOKE and ALTER: revoking f(text) leaves f(uuid) executable", () => {
    const sql = `CREATE FUNCTION public.f(p uuid) RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
                 CREATE FUNCTION public.f(p text) RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
                 ALTER FUNCTION public.f(text) ${pinned};
                 REVOKE ALL ON FUNCTION public.f(text) FROM PUBLIC, anon;`;
    expect(facts(sql)).toEqual([
      ["public.f", true, null, false, false, []],
      ["public.f", true, ["pg_catalog", "pg_temp"], true, true, []],
    ]);
    expect(sqlOnly(sql)).toHaveLength(3); // f(uuid): not pinned, PUBLIC, anon
  });

  it('does not count REVOKE GRANT OPTION FOR (EXECUTE stays) nor a quoted "ANON" (another role)', () => {
    const sql = `CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER ${pinned} AS 'SELECT 1';
                 REVOKE GRANT OPTION FOR ALL ON FUNCTION public.f() FROM PUBLIC, anon;
                 REVOKE EXECUTE ON FUNCTION public.f() FROM "ANON";`;
    expect(facts(sql)).toEqual([["public.f", true, ["pg_catalog", "pg_temp"], false, false, []]]);
  });

  it('keeps quoted names apart: public."Get Org" is not public."get org"', () => {
    const sql = `CREATE FUNCTION public."Get Org"(uuid) RETURNS int LANGUAGE sql SECURITY DEFINER ${pinned} AS 'SELECT 1';
                 CREATE FUNCTION public."get org"(uuid) RETURNS int LANGUAGE sql SECURITY DEFINER ${pinned} AS 'SELECT 1';
                 REVOKE ALL ON FUNCTION public."Get Org"(uuid) FROM PUBLIC, anon;`;
    expect(facts(sql)).toEqual([
      ['public."Get Org"', true, ["pg_catalog", "pg_temp"], true, true, []],
      ['public."get org"', true, ["pg_catalog", "pg_temp"], false, false, []],
    ]);
  });

  it("reads search_path values written over lines with comments, TO or =, and SECURITY DEFINER only where it is a clause", () => {
    const sql = `CREATE OR REPLACE FUNCTION public.f() RETURNS int AS $$ SELECT 1 /* SECURITY INVOKER */ $$
                 SET search_path TO pg_catalog, -- the catalogue first
                                    pg_temp     /* and the temporary schema, named, last */
                 LANGUAGE sql SECURITY DEFINER;
                 CREATE FUNCTION public.g() RETURNS text LANGUAGE sql /* SECURITY DEFINER */ SET search_path = '' AS 'SELECT ''SECURITY DEFINER''';
                 REVOKE ALL ON FUNCTION public.f(), public.g() FROM PUBLIC, anon;`;
    expect(facts(sql)).toEqual([
      ["public.f", true, ["pg_catalog", "pg_temp"], true, true, []],
      ["public.g", false, [""], true, true, []],
    ]);
    expect(sqlOnly(sql)).toEqual([]);
  });

  it("checks procedures too, and functions a DO block creates with a constant EXECUTE", () => {
    const sql = `CREATE PROCEDURE public.p() LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
                 DO $do$ BEGIN
                   EXECUTE 'CREATE FUNCTION public.q() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$';
                   RAISE NOTICE 'REVOKE ALL ON FUNCTION public.q() FROM PUBLIC, anon';
                 END $do$;
                 REVOKE ALL ON ALL PROCEDURES IN SCHEMA public FROM PUBLIC, anon;`;
    expect(facts(sql)).toEqual([
      ["public.p", true, null, true, true, []],
      ["public.q", true, null, false, false, []],
    ]);
  });

  it("refuses SECURITY DEFINER in SQL built at run time, and SQL that does not parse", () => {
    const dynamic = `DO $$ BEGIN
                       EXECUTE format('CREATE FUNCTION %I.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS ''SELECT 1''', 'public');
                     END $$;`;
    expect(sqlOnly(dynamic)).toEqual([
      "sql public.f(): says SECURITY DEFINER outside a CREATE FUNCTION the policy can read (line 1: EXECUTE format('CREATE FUNCTION %I.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS ''SELECT 1''', 'public')); declare the function with a literal CREATE FUNCTION",
    ]);
    const create = `CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER ${pinned} AS 'SELECT 1';`;
    expect(sqlOnly(`${create}\nREVOKE ALL ON FUNCTION public.f() FROM PUBLIC, anon`)).toEqual([]);
    expect(sqlOnly(`${create}\nREVOKE ALL ON FUNCTION public.f() FROM PUBLIC anon`)).toEqual([
      'sql public.f(): its SQL does not parse (syntax error at or near "anon" (line 2, column 47)), so its SECURITY DEFINER functions cannot be checked',
    ]);
  });

  it("reads every project SQL file with PostgreSQL's parser once rendered (sql/baseline included)", () => {
    const all = fs
      .readdirSync(SQL_ROOT)
      .filter((d) => fs.statSync(path.join(SQL_ROOT, d)).isDirectory())
      .flatMap((d) =>
        fs
          .readdirSync(path.join(SQL_ROOT, d))
          .filter((f) => f.endsWith(".sql"))
          .map((f) => `${d}/${f}`),
      );
    expect(all.length).toBeGreaterThan(40);
    for (const f of all) expect(() => analyzeFunctions(loadSql(f).text), f).not.toThrow();
  });
});

describe("tenant-tables-have-rls: reading the SQL with PostgreSQL's parser", () => {
  const obj = (name: string, kind: string, sql: string, meta: Record<string, unknown> = {}) => ({
    type: "pulumi-nodejs:dynamic/guardian:SqlObject",
    name,
    urn: `urn:${name}`,
    props: { kind, objectName: name, sql, meta },
    dependencies: [],
  });
  const complete = ["organizations", "organization_credits", "credit_consumption_logs", "credit_actions"].flatMap((t) => [
    obj(`rls-${t}`, "rls", `ALTER TABLE public.${t} ENABLE ROW LEVEL SECURITY;`, { table: `public.${t}`, tenantData: true }),
    obj(`policy-${t}`, "policy", `CREATE POLICY guardian_select ON public.${t} FOR SELECT TO authenticated USING (false);`, { table: `public.${t}` }),
  ]);
  const messages = (extra: ReturnType<typeof obj>[], replace: Record<string, string> = {}) =>
    tenantTablesHaveRls([...complete.map((r) => (replace[r.name] ? { ...r, props: { ...r.props, sql: replace[r.name] } } : r)), ...extra]).map(
      (v) => v.message,
    );

  it("accepts the tables each enabled by its rls object", () => {
    expect(messages([])).toEqual([]);
  });

  it("sees RLS disabled in a DO block, and not enabled when the words are only in a comment, a string or on another table", () => {
    expect(messages([obj("cleanup", "sql", "DO $$ BEGIN ALTER TABLE public.organization_credits DISABLE ROW LEVEL SECURITY; END $$;")])).toEqual([
      "sql cleanup disables row level security",
    ]);
    expect(
      messages([], {
        "rls-organizations":
          "-- ALTER TABLE public.organizations ENABLE ROW LEVEL SECURITY;\nSELECT 'ALTER TABLE public.organizations ENABLE ROW LEVEL SECURITY';",
        "rls-credit_actions": "ALTER TABLE public.organizations ENABLE ROW LEVEL SECURITY;",
      }),
    ).toEqual([
      "rls resource rls-organizations (public.organizations): its SQL does not ENABLE ROW LEVEL SECURITY on organizations",
      "rls resource rls-credit_actions (public.credit_actions): its SQL does not ENABLE ROW LEVEL SECURITY on credit_actions",
    ]);
  });

  it("refuses SQL it cannot read: a statement that does not parse, NO FORCE built at run time", () => {
    expect(messages([], { "rls-organizations": "ALTER TABLE public.organizations ENABLE ROW LEVEL" })).toEqual([
      "rls rls-organizations: its SQL does not parse (syntax error at end of input (line 1, column 50)), so the policy cannot tell what it does to row level security",
    ]);
    expect(messages([obj("dyn", "sql", "DO $$ BEGIN EXECUTE 'ALTER TABLE ' || 'public.organizations' || ' NO FORCE ROW LEVEL SECURITY'; END $$;")])).toEqual([
      "sql dyn may disable row level security in SQL built at run time (line 1: EXECUTE 'ALTER TABLE ' || 'public.organizations' || ' NO FORCE ROW LEVEL SECURITY')",
    ]);
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
    expect(margins.map((m) => [m.plan, m.marginPct, m.costEur])).toEqual([
      ["premium", 65.54, 51.34],
      ["starter", 69.18, 5.855],
    ]);
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

describe("owner-only-trigger-truncate", () => {
  const obj = (sql: string) => ({
    type: "pulumi-nodejs:dynamic/guardian:SqlObject",
    name: "g",
    urn: "urn:g",
    dependencies: [],
    props: { kind: "grants", objectName: "grants", sql },
  });
  it("refuses a grant of TRIGGER, TRUNCATE or ALL on a table the SECURITY DEFINER functions touch, to any role", () => {
    for (const sql of [
      "GRANT TRIGGER ON public.organization_credits TO service_role",
      "GRANT TRUNCATE ON TABLE credit_consumption_logs TO authenticated",
      "GRANT ALL ON public.profiles TO anon",
      "DO $$ BEGIN GRANT ALL PRIVILEGES ON public.organizations TO service_role; END $$",
      "GRANT ALL ON ALL TABLES IN SCHEMA public TO service_role",
    ]) {
      const v = ownerOnlyTriggerTruncate([obj(sql)]);
      expect(v.length, sql).toBeGreaterThan(0);
      expect(v[0].message).toMatch(/only the owner may hold TRIGGER and TRUNCATE/);
    }
  });
  it("lets other grants and revokes pass, and the project's own SQL", () => {
    for (const sql of [
      "GRANT SELECT ON public.organization_credits TO authenticated",
      "REVOKE TRIGGER, TRUNCATE ON public.organization_credits FROM service_role",
      "GRANT TRIGGER ON public.some_other_table TO service_role",
    ]) {
      expect(ownerOnlyTriggerTruncate([obj(sql)]), sql).toEqual([]);
    }
    const own = fs.readdirSync(path.join(SQL_ROOT, "tenancy")).map((f) => obj(loadSql(`tenancy/${f}`).text));
    expect(ownerOnlyTriggerTruncate(own)).toEqual([]);
  });
});
