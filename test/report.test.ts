/**
 * The migration report (scripts/report.ts) through the real engine on a real Postgres: after `up` and some
 * consumption, every figure the report gives equals the test's own query, the password never appears, and the chart
 * is well-formed SVG whose bars carry the same figures.
 */
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { POOLS } from "../lib/config";
import { redactUrl } from "../lib/db";
import { buildReport, type Report } from "../operations/report";
import { expectedPools } from "./helpers/allocation";
import { type Migrated, orgs, seededStack, teardown, up } from "./helpers/migration";

const ROOT = path.resolve(__dirname, "..");

describe("migration report", () => {
  let m: Migrated;
  let report: Report;
  let backupId: string;
  /** What the calls made after the migration returned, tallied by the test. */
  const tally = {
    successes: 0,
    refusals: 0,
    perPool: Object.fromEntries(POOLS.map((p) => [p, { successes: 0, credits: 0 }])) as Record<string, { successes: number; credits: number }>,
  };

  beforeAll(async () => {
    m = await seededStack(300);
    const r = await up(m.t);
    backupId = r.outputs.backupId.value;
    // Consumption after the migration: every pool, a few quantities, and refusals (a split org has no sms pool).
    const all = await orgs(m.db);
    const split = all.filter((o) => expectedPools(o.plan_name, 0, 0).rule === "split" && o.credit_model === "multi").slice(0, 3);
    const calls: [string, string, number][] = [];
    const actions = ["ai_chat", "whatsapp_message", "email_send", "sms_send", "bulk_email", "form_generation"];
    for (const [i, o] of all.slice(0, 24).entries()) calls.push([o.organization_id, actions[i % actions.length], 1 + (i % 3)]);
    for (const o of split) calls.push([o.organization_id, "sms_send", 1]);
    calls.push([all[0].organization_id, "ai_chat", 100000]);
    for (const [org, action, qty] of calls) {
      const [{ r: res }] = await m.db.query(`SELECT public.consume_credits_rpc($1, $2, $3) AS r`, [org, action, qty]);
      if (res.success) {
        tally.successes++;
        for (const p of POOLS) {
          if (res.consumed[p] > 0) {
            tally.perPool[p].successes++;
            tally.perPool[p].credits += res.consumed[p];
          }
        }
      } else tally.refusals++;
    }
    expect(tally.refusals).toBeGreaterThanOrEqual(split.length + 1);
    report = await buildReport({ stack: m.t.stack });
  });
  afterAll(() => teardown(m));

  it("states the stack, the update version from pulumi stack history, the database (redacted) and its server version", async () => {
    const f = report.figures;
    const history = await m.t.stack.history(undefined, undefined, false);
    expect(f.stack).toBe("test");
    expect(f.updateVersion).toBe(history[0].version > 0 ? history[0].version : history.length);
    expect(f.lastUpdate).toMatchObject({ kind: "update", result: "succeeded" });
    const [{ server_version }] = await m.db.query(`SHOW server_version`);
    expect(f.serverVersion).toBe(server_version);
    expect(f.database).toBe(redactUrl(m.db.url));
    expect(report.markdown).toContain(`PostgreSQL ${server_version}`);
  });

  it("counts organizations per allocation rule and per model as the test's own query does", async () => {
    const want: Record<string, { orgs: number; multi: number; unified: number }> = {};
    for (const o of await orgs(m.db)) {
      const rule = expectedPools(o.plan_name, 0, 0).rule;
      const w = (want[rule] ??= { orgs: 0, multi: 0, unified: 0 });
      w.orgs++;
      if (o.credit_model === "multi") w.multi++;
      else w.unified++;
    }
    expect(report.figures.orgsPerRule).toEqual(want);
    expect(report.figures.orgsByModel).toEqual({ multi: 300 });
    expect(report.markdown).toMatch(/\| \*\*all\*\* \| 300 \| 300 \| 0 \|/);
  });

  it("gives the backup's row counts and checksums from the backup schema, guardian.backups and the manifest, and the restore check", async () => {
    const b = report.figures.backup!;
    expect(b.backupId).toBe(backupId);
    const [row] = await m.db.query(`SELECT export_dir, restore_verified, created_at FROM guardian.backups WHERE backup_id = $1`, [backupId]);
    expect(b.restoreVerified).toBe(row.restore_verified);
    expect(b.restoreVerified).toBe(true);
    expect(b.createdAt).toBe(new Date(row.created_at).toISOString());
    const manifest = JSON.parse(fs.readFileSync(path.join(row.export_dir, "manifest.json"), "utf8"));
    expect(Object.keys(b.tables).sort()).toEqual(Object.keys(manifest.tables).sort());
    for (const [t, x] of Object.entries(b.tables)) {
      const [{ n }] = await m.db.query(`SELECT count(*)::int n FROM ${backupId}.${t}`);
      expect(x.rowsInSchema, t).toBe(n);
      expect(x.rowsInManifest, t).toBe(manifest.tables[t].rows);
      expect(x.checksumInManifest, t).toBe(manifest.tables[t].checksum);
      expect(x.fileSha256Now, t).toBe(manifest.tables[t].sha256);
      expect(x.consistent, t).toBe(true);
      expect(report.markdown).toContain(`| ${t} | ${n.toLocaleString("en-US")} |`);
    }
    expect(b.tables.organization_credits.rowsInSchema).toBe(300);
  });

  it("counts consumption since the migration per pool, successes and refusals, as the log says and as the calls returned", async () => {
    const c = report.figures.consumption!;
    const since = report.figures.backup!.createdAt;
    expect(c.since).toBe(since);
    const [own] = await m.db.query(
      `SELECT count(*) FILTER (WHERE success)::int AS successes, count(*) FILTER (WHERE NOT success)::int AS refusals,
              ${POOLS.map((p) => `count(*) FILTER (WHERE success AND ${p}_consumed > 0)::int AS ${p}_n, coalesce(sum(${p}_consumed) FILTER (WHERE success), 0)::int AS ${p}_c`).join(", ")}
         FROM public.credit_consumption_logs WHERE created_at >= $1`,
      [since],
    );
    expect(c.successes).toBe(own.successes);
    expect(c.refusals).toBe(own.refusals);
    expect(c.successes).toBe(tally.successes);
    expect(c.refusals).toBe(tally.refusals);
    for (const p of POOLS) {
      expect(c.perPool[p].successes, p).toBe(own[`${p}_n`]);
      expect(c.perPool[p].credits, p).toBe(own[`${p}_c`]);
      expect(c.perPool[p], p).toMatchObject(tally.perPool[p]);
    }
    expect(c.perPool.sms.refusals).toBeGreaterThanOrEqual(3);
    expect(c.successesByModel).toEqual({ multi: tally.successes });
  });

  it("gives function and policy versions as md5 of the live definitions", async () => {
    const fns = await m.db.query(
      `SELECT oid::regprocedure::text AS signature, md5(pg_get_functiondef(oid)) AS md5 FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace AND proname IN ('consume_credits_rpc', 'consume_credits_batch') ORDER BY 1`,
    );
    expect(report.figures.functions.map((f) => ({ signature: f.signature, md5: f.definitionMd5 }))).toEqual(fns);
    expect(report.figures.functions.map((f) => f.signature)).toEqual(["consume_credits_batch(uuid,jsonb)", "consume_credits_rpc(uuid,text,integer,text)"]);
    const [{ n }] = await m.db.query(
      `SELECT count(*)::int n FROM pg_policies WHERE (schemaname = 'public' AND tablename IN
         ('organizations', 'profiles', 'organization_credits', 'credit_actions', 'credit_consumption_logs'))
         OR (schemaname = 'guardian' AND tablename = 'migration_journal')`,
    );
    expect(report.figures.policies).toHaveLength(n);
    expect(n).toBeGreaterThan(0);
  });

  it("shows every plan's margin from public.plan_margins against the target", async () => {
    const own = await m.db.query(`SELECT plan_name, margin_pct FROM public.plan_margins ORDER BY plan_name`);
    const f = report.figures.margins;
    expect(f.source).toBe("public.plan_margins");
    expect(f.plans.map((p) => [p.plan, p.marginPct])).toEqual(own.map((r) => [r.plan_name, r.margin_pct === null ? null : Number(r.margin_pct)]));
    expect(
      f.plans
        .filter((p) => p.belowTarget)
        .map((p) => p.plan)
        .sort(),
    ).toEqual(["business", "premium", "professional", "starter"]);
  });

  it("draws the chart as well-formed SVG: one bar per rule and series with the report's figures, one margin bar per priced plan", async () => {
    expect(XMLValidator.validate(report.svg)).toBe(true);
    const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "" }).parse(report.svg);
    const rects: any[] = [].concat(doc.svg.rect).filter((r: any) => r.class === "bar");
    const credits = rects.filter((r) => r["data-panel"] === "credits");
    const chart = report.figures.chart;
    const rules = Object.keys(report.figures.orgsPerRule);
    expect(credits).toHaveLength(rules.length * 5);
    for (const r of credits) {
      const want = r["data-series"] === "before" ? chart.before[r["data-group"]] : chart.after[r["data-group"]][r["data-series"] as "ai"];
      expect(Number(r["data-value"]), `${r["data-group"]} ${r["data-series"]}`).toBe(want);
    }
    // The chart's figures are the database's: the before sums from the backup schema, the after sums from the pools now.
    const before = await m.db.query(`SELECT plan_name, greatest(credits_remaining, 0) AS c FROM ${backupId}.organization_credits`);
    const wantBefore: Record<string, number> = {};
    for (const o of before) {
      const rule = expectedPools(o.plan_name, 0, 0).rule;
      wantBefore[rule] = (wantBefore[rule] ?? 0) + o.c;
    }
    expect(chart.before).toEqual(wantBefore);
    const wantAfter: Record<string, Record<string, number>> = {};
    for (const o of await orgs(m.db)) {
      const rule = expectedPools(o.plan_name, 0, 0).rule;
      const w = (wantAfter[rule] ??= { ai: 0, whatsapp: 0, email: 0, sms: 0 });
      for (const p of POOLS) w[p] += o[`${p}_credits_available`];
    }
    expect(chart.after).toEqual(wantAfter);
    const margins = rects.filter((r) => r["data-panel"] === "margins");
    const priced = report.figures.margins.plans.filter((p) => p.marginPct !== null);
    expect(margins.map((r) => [r["data-group"], Number(r["data-value"])])).toEqual(priced.map((p) => [p.plan, p.marginPct]));
    const target = [].concat(doc.svg.line).find((l: any) => l.class === "target") as any;
    expect(Number(target["data-value"])).toBe(0.82);
  });

  it("names an organization whose balance no longer adds up (the figures are the database's, not the outputs')", async () => {
    const clean = report.figures.conservation;
    for (const [rule, c] of Object.entries(clean)) {
      expect(c.totalsConserved, rule).toBe(c.orgs);
      expect(c.availableConserved, rule).toBe(c.orgs);
    }
    const [victim] = await m.db.query(`SELECT organization_id FROM public.organization_credits WHERE credit_model = 'multi' ORDER BY organization_id LIMIT 1`);
    await m.db.query(`UPDATE public.organization_credits SET ai_credits_available = ai_credits_available + 7 WHERE organization_id = $1`, [
      victim.organization_id,
    ]);
    const again = await buildReport({ stack: m.t.stack });
    const broken = Object.values(again.figures.conservation).find((c) => c.violations.length)!;
    expect(broken.violations).toEqual([victim.organization_id]);
    expect(broken.availableConserved).toBe(broken.orgs - 1);
    expect(again.markdown).toContain(victim.organization_id);
    // The stack's outputs did not change; the report still cross-checks them against the database.
    expect(again.figures.outputsCheck.find((c) => c.output === "orgsMigrated")).toMatchObject({ stack: 300, database: 300, agrees: true });
  });

  it("never shows the database password", async () => {
    const u = new URL(m.db.url);
    // On a trust-auth server any password is accepted: use one that cannot be mistaken for a word of the report.
    if (!u.password) u.password = "Gu4rdian-s3cret-pw";
    const password = decodeURIComponent(u.password);
    await m.t.setConfig({ databaseUrl: u.toString() }, ["databaseUrl"]);
    const r = await buildReport({ stack: m.t.stack });
    for (const text of [r.markdown, r.svg, JSON.stringify(r.figures)]) expect(text).not.toContain(`:${password}@`);
    if (password.length >= 8) expect(r.markdown).not.toContain(password);
    expect(r.markdown).toContain(`${u.username}:***@${u.host}`);
  });

  it("the CLI writes the Markdown and, beside it, the SVG", async () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "guardian-report-")), "test.md");
    const { stdout } = await promisify(execFile)(
      "node",
      ["-r", "ts-node/register/transpile-only", path.join(ROOT, "scripts", "report.ts"), "--stack", "test", "--out", out],
      { cwd: m.t.dir, env: { ...process.env, ...m.t.env } },
    );
    expect(stdout).toMatch(/report: stack test, update version \d+, 300\/300 orgs multi, backup guardian_backup_\w+ \(restore verified\)/);
    expect(fs.readFileSync(out, "utf8")).toMatch(/^# Guardian credits migration report: stack `test`/);
    expect(XMLValidator.validate(fs.readFileSync(out.replace(/\.md$/, ".svg"), "utf8"))).toBe(true);
    expect(fs.readFileSync(out, "utf8")).toContain("](test.svg)");
    fs.rmSync(path.dirname(out), { recursive: true, force: true });
  });
});
