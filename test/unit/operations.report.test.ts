/**
 * The report's figure steps (operations/report/figures.ts), each alone, against a scripted client: which query a step
 * asks, with which parameters, and what it makes of the rows. databaseFigures composes them; test/report.test.ts runs
 * the whole report through the real engine on a real database.
 */
import * as crypto from "crypto";
import type { Client } from "pg";
import { describe, expect, it } from "vitest";
import { parseConfig, POOLS } from "../../lib/config";
import { planMargins } from "../../lib/margins";
import { suggestedRollback } from "../../operations/report";
import {
  anomalyFigures,
  catalogueFigures,
  chartFigures,
  consumptionFigures,
  conservationFigures,
  functionFigures,
  marginFigures,
  migrationColumns,
  organizationFigures,
  policyFigures,
  serverVersion,
  type BackupFigures,
} from "../../operations/report/figures";

const config = parseConfig({ databaseUrl: "postgres://u@localhost/db" });

type Row = Record<string, unknown>;
type Route = [RegExp, (params: unknown[]) => Row[]];

/** A client that answers each query with the first route whose pattern matches its SQL, and refuses any other. */
function scripted(routes: Route[], opts: { relations?: string[]; columns?: Record<string, string[]> } = {}) {
  const calls: { sql: string; params: unknown[] }[] = [];
  const relations = new Set(opts.relations ?? []);
  const all: Route[] = [
    [/to_regclass\(\$1\) IS NOT NULL AS p/, (p) => [{ p: relations.has(String(p[0])) }]],
    [/SELECT attname FROM pg_attribute/, (p) => (opts.columns?.[String(p[0])] ?? []).map((attname) => ({ attname }))],
    ...routes,
  ];
  const client = {
    query: async (sql: string, params: unknown[] = []) => {
      calls.push({ sql, params });
      const route = all.find(([re]) => re.test(sql));
      if (!route) throw new Error(`unexpected query: ${sql}`);
      const rows = route[1](params);
      return { rows, rowCount: rows.length };
    },
  };
  return { client: client as unknown as Client, calls };
}

const MIGRATED_CREDITS = [
  "organization_id",
  "plan_name",
  "credit_model",
  "allocation_epoch",
  ...POOLS.flatMap((p) => [`${p}_credits_total`, `${p}_credits_available`]),
];
const MIGRATED_LOGS = ["organization_id", "success", "credit_model", "allocation_epoch", "error_code", ...POOLS.map((p) => `${p}_consumed`)];

describe("report figure steps", () => {
  it("serverVersion reads server_version", async () => {
    const { client } = scripted([[/current_setting\('server_version'\)/, () => [{ v: "15.8" }]]]);
    expect(await serverVersion(client)).toBe("15.8");
  });

  it("catalogueFigures: the database's guardian.plan_catalogue when it has rows, else the stack config's", async () => {
    const fromDb = scripted([[/FROM guardian\.plan_catalogue/, () => [{ plan_name: "gold", ai: 1, whatsapp: 2, email: 3, sms: 4 }]]], {
      relations: ["guardian.plan_catalogue"],
    });
    expect(await catalogueFigures(fromDb.client, config)).toEqual({
      catalogue: { gold: { ai: 1, whatsapp: 2, email: 3, sms: 4 } },
      catalogueSource: "guardian.plan_catalogue",
      planNames: ["gold"],
    });

    const empty = scripted([[/FROM guardian\.plan_catalogue/, () => []]], { relations: ["guardian.plan_catalogue"] });
    const missing = scripted([]);
    for (const { client } of [empty, missing]) {
      const f = await catalogueFigures(client, config);
      expect(f.catalogueSource).toBe("config");
      expect(f.planNames).toEqual(Object.keys(config.plans));
      expect(f.catalogue.starter).toEqual({
        ai: config.plans.starter.ai,
        whatsapp: config.plans.starter.whatsapp,
        email: config.plans.starter.email,
        sms: config.plans.starter.sms,
      });
    }
    expect(missing.calls.some((c) => /plan_catalogue ORDER BY/.test(c.sql))).toBe(false);
  });

  it("migrationColumns: migrated only with credit_model and every pool's available column; logs with every _consumed, credit_model and allocation_epoch", async () => {
    const before = scripted([], {
      columns: { "public.organization_credits": ["organization_id", "plan_name"], "public.credit_consumption_logs": ["success"] },
    });
    expect(await migrationColumns(before.client)).toMatchObject({ migrated: false, logMigrated: false });

    const after = scripted([], { columns: { "public.organization_credits": MIGRATED_CREDITS, "public.credit_consumption_logs": MIGRATED_LOGS } });
    const cols = await migrationColumns(after.client);
    expect(cols).toMatchObject({ migrated: true, logMigrated: true });
    expect(cols.credits.has("allocation_epoch")).toBe(true);

    const noSms = scripted([], {
      columns: {
        "public.organization_credits": MIGRATED_CREDITS.filter((c) => c !== "sms_credits_available"),
        "public.credit_consumption_logs": MIGRATED_LOGS,
      },
    });
    expect((await migrationColumns(noSms.client)).migrated).toBe(false);

    for (const missing of ["credit_model", "allocation_epoch", "email_consumed"]) {
      const partLogs = scripted([], {
        columns: { "public.organization_credits": MIGRATED_CREDITS, "public.credit_consumption_logs": MIGRATED_LOGS.filter((c) => c !== missing) },
      });
      expect(await migrationColumns(partLogs.client), missing).toMatchObject({ migrated: true, logMigrated: false });
    }
  });

  it("organizationFigures: counts per rule and per model, and every organization 'unified' before the column exists", async () => {
    const rows = [
      { rule: "plan:starter", model: "multi", n: "3" },
      { rule: "plan:starter", model: "unified", n: "2" },
      { rule: "split", model: "unified", n: "4" },
    ];
    const { client, calls } = scripted([
      [/count\(\*\)::bigint AS n\s+FROM public\.organization_credits GROUP BY 1, 2/, () => rows],
      [/FROM public\.organizations o\s+WHERE NOT EXISTS/, () => [{ n: "2" }]],
    ]);
    const f = await organizationFigures(client, ["starter"], { credits: new Set(["credit_model"]) });
    expect(f).toEqual({
      orgsByModel: { multi: 3, unified: 6 },
      orgsTotal: 9,
      orgsWithoutCredits: 2,
      orgsPerRule: { "plan:starter": { orgs: 5, multi: 3, unified: 2 }, split: { orgs: 4, multi: 0, unified: 4 } },
    });
    expect(calls[0].params).toEqual([["starter"]]);
    expect(calls[0].sql).toMatch(/credit_model AS model/);

    const unmigrated = scripted([
      [/FROM public\.organization_credits GROUP BY 1, 2/, () => []],
      [/FROM public\.organizations o\s+WHERE NOT EXISTS/, () => [{ n: "0" }]],
    ]);
    await organizationFigures(unmigrated.client, [], { credits: new Set() });
    expect(unmigrated.calls[0].sql).toMatch(/'unified'::text AS model/);
  });

  it("conservationFigures: nothing asked before the migration; after it, per rule, the catalogue's amounts as parameters", async () => {
    const cat = { catalogue: { starter: { ai: 200, whatsapp: 150, email: 1000, sms: 50 } }, planNames: ["starter"] };
    const none = scripted([]);
    expect(await conservationFigures(none.client, cat, { credits: new Set(), logs: new Set(), migrated: false, logMigrated: false })).toEqual({});
    expect(none.calls).toHaveLength(0);

    const { client, calls } = scripted([
      [
        /WITH cons AS/,
        () => [
          { rule: "split", n: "4", totals_ok: "4", available_ok: "3", bad: ["o-1"] },
          { rule: "plan:starter", n: "2", totals_ok: "2", available_ok: "2", bad: null },
        ],
      ],
    ]);
    const f = await conservationFigures(client, cat, { credits: new Set(MIGRATED_CREDITS), logs: new Set(MIGRATED_LOGS), migrated: true, logMigrated: true });
    expect(f).toEqual({
      split: { orgs: 4, totalsConserved: 4, availableConserved: 3, violations: ["o-1"] },
      "plan:starter": { orgs: 2, totalsConserved: 2, availableConserved: 2, violations: [] },
    });
    expect(calls[0].params).toEqual([["starter"], "starter", 200, 150, 1000, 50]);
    expect(calls[0].sql).toMatch(/sum\(ai_consumed\) AS c_ai/);
  });

  it("anomalyFigures: [] without the table; the recorded anomalies, value as a number, otherwise", async () => {
    expect(await anomalyFigures(scripted([]).client)).toEqual([]);
    const { client } = scripted(
      [
        [
          /FROM guardian\.backfill_anomalies/,
          () => [
            { id: "o-1", kind: "negative_balance", value: "-3", epoch: 1 },
            { id: "o-2", kind: "other", value: null, epoch: null },
          ],
        ],
      ],
      { relations: ["guardian.backfill_anomalies"] },
    );
    expect(await anomalyFigures(client)).toEqual([
      { organizationId: "o-1", kind: "negative_balance", value: -3, epoch: 1 },
      { organizationId: "o-2", kind: "other", value: null, epoch: null },
    ]);
  });

  it("functionFigures: matchesBackupV1 only where the backup recorded that exact definition", async () => {
    const rows = [
      { signature: "consume_credits_rpc(uuid,text)", md5: "aaa", secdef: true, config: ["search_path=public"] },
      { signature: "consume_credits_batch(uuid,text[])", md5: "bbb", secdef: false, config: [] },
    ];
    const { client } = scripted([[/FROM pg_proc p/, () => rows]]);
    const backup = { recordedFunctionMd5: { "consume_credits_rpc(uuid,text)": "aaa", "consume_credits_batch(uuid,text[])": "zzz" } };
    const f = await functionFigures(client, backup as unknown as BackupFigures);
    expect(f.map((x) => x.matchesBackupV1)).toEqual([true, false]);
    expect(f[0]).toEqual({
      signature: "consume_credits_rpc(uuid,text)",
      definitionMd5: "aaa",
      securityDefiner: true,
      config: ["search_path=public"],
      matchesBackupV1: true,
    });
    expect((await functionFigures(client, null)).map((x) => x.matchesBackupV1)).toEqual([false, false]);
  });

  it("policyFigures: each policy, one md5 over them in order, and where row-level security is on", async () => {
    const { client } = scripted([
      [
        /FROM pg_policies/,
        () => [
          { tbl: "public.profiles", policyname: "own", cmd: "SELECT", roles: ["authenticated"], permissive: "PERMISSIVE", md5: "p1" },
          { tbl: "public.organizations", policyname: "mine", cmd: "ALL", roles: ["authenticated"], permissive: "PERMISSIVE", md5: "p2" },
        ],
      ],
      [
        /relrowsecurity/,
        () => [
          { tbl: "public.profiles", on: true },
          { tbl: "public.organizations", on: false },
        ],
      ],
    ]);
    const f = await policyFigures(client);
    expect(f.policies.map((p) => [p.table, p.policy, p.command, p.md5])).toEqual([
      ["public.profiles", "own", "SELECT", "p1"],
      ["public.organizations", "mine", "ALL", "p2"],
    ]);
    expect(f.policiesMd5).toBe(crypto.createHash("md5").update("public.profiles/own:p1\npublic.organizations/mine:p2").digest("hex"));
    expect(f.rlsEnabled).toEqual({ "public.profiles": true, "public.organizations": false });
  });

  it("consumptionFigures: null without a backup; else what was logged since it, per pool, per model and per refusal", async () => {
    const none = scripted([]);
    expect(await consumptionFigures(none.client, null, { logs: new Set(), logMigrated: false })).toBeNull();
    expect(none.calls).toHaveLength(0);

    const totals: Row = { successes: "10", refusals: "2", unified_cost: "17" };
    for (const p of POOLS)
      Object.assign(totals, { [`${p}_successes`]: p === "ai" ? "6" : "0", [`${p}_credits`]: p === "ai" ? "9" : "0", [`${p}_refusals`]: "1" });
    const { client, calls } = scripted(
      [
        [/unified_cost/, () => [totals]],
        [
          /AS m, count\(\*\)/,
          () => [
            { m: "multi", n: "6" },
            { m: "unified", n: "4" },
          ],
        ],
        [/AS code, count\(\*\)/, () => [{ code: "insufficient_ai", n: "2" }]],
      ],
      { columns: { "public.credit_actions": POOLS.map((p) => `${p}_credits_required`) } },
    );
    const since = "2026-01-01T00:00:00.000Z";
    const f = await consumptionFigures(client, { createdAt: since }, { logs: new Set(MIGRATED_LOGS), logMigrated: true });
    expect(f).toEqual({
      since,
      perPool: {
        ai: { successes: 6, credits: 9, refusals: 1 },
        whatsapp: { successes: 0, credits: 0, refusals: 1 },
        email: { successes: 0, credits: 0, refusals: 1 },
        sms: { successes: 0, credits: 0, refusals: 1 },
      },
      successes: 10,
      refusals: 2,
      successesByModel: { multi: 6, unified: 4 },
      unifiedCost: 17,
      refusalsByCode: { insufficient_ai: 2 },
    });
    const queries = calls.filter((c) => /credit_consumption_logs/.test(c.sql));
    expect(queries.map((c) => c.params)).toEqual([[since], [since], [since]]);
    expect(queries[0].sql).toMatch(/sum\(l\.ai_consumed\)/);
    expect(queries[2].sql).toMatch(/coalesce\(l\.error_code, l\.error_message, 'unknown'\)/);

    // Before the migration: no pool columns, no credit_model, no error_code.
    const old = scripted([
      [/unified_cost/, () => [totals]],
      [/AS m, count\(\*\)/, () => []],
      [/AS code, count\(\*\)/, () => []],
    ]);
    await consumptionFigures(old.client, { createdAt: since }, { logs: new Set(["success"]), logMigrated: false });
    const sqls = old.calls.map((c) => c.sql).join("\n");
    expect(sqls).not.toMatch(/l\.ai_consumed|l\.credit_model|l\.error_code|a\.ai_credits_required/);
    expect(sqls).toMatch(/'unified' AS m/);
  });

  it("marginFigures: public.plan_margins when it exists (below target against the stack's target), else lib/margins.ts sorted by plan", async () => {
    const { client } = scripted(
      [
        [
          /FROM public\.plan_margins/,
          () => [
            { plan_name: "premium", price_eur: "149", cost_eur: "51.34", margin_pct: "65.54" },
            { plan_name: "enterprise", price_eur: null, cost_eur: "51.34", margin_pct: null },
            { plan_name: "gold", price_eur: "100", cost_eur: "10", margin_pct: "90" },
          ],
        ],
      ],
      { relations: ["public.plan_margins"] },
    );
    const db = await marginFigures(client, config);
    expect(db.source).toBe("public.plan_margins");
    expect(db.target).toBe(config.marginTarget);
    expect(db.plans).toEqual([
      { plan: "premium", priceEur: 149, costEur: 51.34, marginPct: 65.54, belowTarget: 0.6554 < config.marginTarget },
      { plan: "enterprise", priceEur: null, costEur: 51.34, marginPct: null, belowTarget: null },
      { plan: "gold", priceEur: 100, costEur: 10, marginPct: 90, belowTarget: 0.9 < config.marginTarget },
    ]);

    const fromConfig = await marginFigures(scripted([]).client, config);
    expect(fromConfig.source).toBe("lib/margins.ts");
    expect(fromConfig.plans.map((p) => p.plan)).toEqual(
      planMargins(config)
        .map((m) => m.plan)
        .sort((a, b) => a.localeCompare(b)),
    );
    const starter = planMargins(config).find((m) => m.plan === "starter")!;
    expect(fromConfig.plans.find((p) => p.plan === "starter")).toEqual({
      plan: "starter",
      priceEur: starter.priceEur,
      costEur: starter.costEur,
      marginPct: starter.marginPct,
      belowTarget: starter.belowTarget,
    });
  });

  it("chartFigures: before from the backup's copy when it is there, after from the multi organizations once migrated", async () => {
    const none = scripted([]);
    expect(await chartFigures(none.client, null, ["starter"], false)).toEqual({ before: {}, after: {} });
    expect(none.calls).toHaveLength(0);

    const { client, calls } = scripted(
      [
        [
          /FROM bk_1\.organization_credits/,
          () => [
            { rule: "plan:starter", n: "1400" },
            { rule: "split", n: "7" },
          ],
        ],
        [/FROM public\.organization_credits WHERE credit_model = 'multi'/, () => [{ rule: "split", ai: "2", whatsapp: "2", email: "2", sms: "1" }]],
      ],
      { relations: ["bk_1.organization_credits"] },
    );
    const f = await chartFigures(client, { schemaPresent: true, schemaName: "bk_1" }, ["starter"], true);
    expect(f).toEqual({ before: { "plan:starter": 1400, split: 7 }, after: { split: { ai: 2, whatsapp: 2, email: 2, sms: 1 } } });
    expect(calls.filter((c) => /organization_credits/.test(c.sql) && !/to_regclass/.test(c.sql)).map((c) => c.params)).toEqual([[["starter"]], [["starter"]]]);

    // A backup whose schema is gone: no before.
    const gone = scripted([]);
    expect(await chartFigures(gone.client, { schemaPresent: false, schemaName: "bk_1" }, [], false)).toEqual({ before: {}, after: {} });
  });
});

describe("the report's rollback commands", () => {
  it("suggest npm run rollback only when an earlier successful update exists; the config switch always", () => {
    expect(suggestedRollback("staging", "multi", null)).toEqual([
      "pulumi config set guardian:creditModel unified --stack staging && pulumi up --stack staging",
    ]);
    expect(suggestedRollback("staging", "multi", 3, " --config-file x.yaml")).toEqual([
      "npm run rollback -- --stack staging --to 3",
      "pulumi config set guardian:creditModel unified --stack staging --config-file x.yaml && pulumi up --stack staging --config-file x.yaml",
    ]);
    expect(suggestedRollback("dev", "unified", 1)[1]).toBe("pulumi config set guardian:creditModel multi --stack dev && pulumi up --stack dev");
  });
});
