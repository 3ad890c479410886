/**
 * The application runs beside the migration (contract: "The application around the credits keeps working"), on our
 * seed's database and on one built like the CRM's real one: harness/applicationFleet.ts plays the backend (plan
 * changes, cycle resets, grants, refunds, consumption) and the members (profile edits, reads of their credits) as the
 * real roles, on organizations of its own, while harness/consumerFleet.ts keeps the zero-downtime load on the others,
 * through up (multi) -> rollback (unified) -> forward again. At each switch's end both fleets pause and:
 *   - every organization of the application holds what the application wrote, minus the unified cost of every
 *     success since (the oracle, exact: each organization's story is a sequence);
 *   - every capability of the access matrix found before up still answers, unless a leak, an escalation or a
 *     required restriction closed it (acting as the roles, writes made and rolled back: this is a scratch database);
 *   - in multi, every organization's pools balance in its epoch (plan changes allocated, grants left the pools alone).
 * One-off steps during multi: a backend signup (organization, credit row, profile), a client-side signup, deleting an
 * organization without consumption records (allowed) and one with records (refused: the audit is append-only).
 */
import * as crypto from "crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AppOrg, ApplicationFleet } from "../harness/applicationFleet";
import { checkMulti, ConsumerFleet, mulberry } from "../harness/consumerFleet";
import { collect, testStack, type TestStack } from "../harness/stack";
import { compareAccess } from "../lib/access";
import { type AccessMatrix, probeAccess } from "../lib/accessProbe";
import { inTransaction } from "../lib/db";
import type { TestDb } from "./helpers/db";
import { seededDb } from "./helpers/migration";
import { freshRealCrmDb } from "./helpers/realCrm";

const ORGS = 160;

interface Phase {
  oracle: string[];
  lostAccess: string[];
  pools?: { orgs: number; violations: string[] };
}

async function matrix(db: TestDb, roleColumn: string): Promise<AccessMatrix> {
  const c = await db.client();
  try {
    return await probeAccess(c, roleColumn, { write: true });
  } finally {
    await c.end();
  }
}

for (const kind of ["our seed", "the CRM's real schema"] as const) {
  describe(`the application beside the migration, on ${kind}`, () => {
    const roleColumn = kind === "our seed" ? "role" : "user_role";
    let db: TestDb;
    let t: TestStack;
    let app: ApplicationFleet;
    let load: ConsumerFleet;
    let before: AccessMatrix;
    const phases: Record<string, Phase> = {};
    const oneOff: Record<string, { ok: boolean; code?: string; message?: string; detail?: unknown }> = {};

    async function settle(name: string, multi: boolean) {
      await Promise.all([app.pause(), load.pause()]);
      phases[name] = {
        oracle: await app.check(db.url),
        lostAccess: compareAccess(before, await matrix(db, roleColumn)).lost.map((l) => `${l.role} ${l.cell}`),
        pools: multi ? await checkMulti(db.url) : undefined,
      };
    }
    function resume() {
      app.resume();
      load.resume();
    }
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    /** The backend's statements, in one transaction: the last one's rows, or the error. */
    async function asBackend(name: string, ...statements: [string, unknown[]][]) {
      const c = await db.client();
      try {
        const rows = await inTransaction(c, async () => {
          await c.query("SET LOCAL ROLE service_role");
          let last: unknown[] = [];
          for (const [sql, params] of statements) last = (await c.query(sql, params)).rows;
          return last;
        });
        oneOff[name] = { ok: true, detail: rows };
      } catch (e: any) {
        oneOff[name] = { ok: false, code: e.code, message: e.message };
      } finally {
        await c.end();
      }
    }

    beforeAll(async () => {
      if (kind === "our seed") {
        db = await seededDb(ORGS, 11);
      } else {
        db = await freshRealCrmDb({ orgs: ORGS, seed: 11 });
      }
      const candidates: { id: string; member: string | null }[] = await db.query(
        `SELECT oc.organization_id::text AS id,
                (SELECT p.id::text FROM public.profiles p
                  WHERE p.organization_id = oc.organization_id AND coalesce(p.${roleColumn}::text, 'user') = 'user' ORDER BY p.id LIMIT 1) AS member
           FROM public.organization_credits oc JOIN public.organizations o ON o.id = oc.organization_id
          WHERE oc.cycle_end_date >= now() ORDER BY 1`,
      );
      const mine: AppOrg[] = candidates.filter((_, i) => i % 2 === 0).map((x) => ({ organization_id: x.id, member: x.member ?? undefined }));
      const theirs = candidates.filter((_, i) => i % 2 === 1).map((x) => x.id);
      before = await matrix(db, roleColumn);
      t = await testStack(db.url, { creditModel: "multi" });
      app = new ApplicationFleet({
        url: db.url,
        orgs: mine,
        workers: 2,
        random: mulberry(7),
        plans: { business: 3000, professional: 1500, starter: 500 },
        nameColumn: kind === "our seed" ? "email" : "full_name",
      });
      load = new ConsumerFleet({ url: db.url, orgs: theirs, consumers: 2, thinkMs: 5, tag: crypto.randomBytes(3).toString("hex"), random: mulberry(8) });
      await app.start();
      await load.start();
      await sleep(800);

      await t.stack.up({ onEvent: collect(t) });
      await settle("after up (multi)", true);
      resume();
      // The backend signs an organization up while multi is applied; a new user signs itself up; organizations leave.
      const org = crypto.randomUUID();
      await asBackend("backend signup", [
        `INSERT INTO public.organizations (id, name, slug) VALUES ($1::uuid, 'New org', 'new-' || $1::text) RETURNING id`,
        [org],
      ]);
      await asBackend("backend signup: credit row", [
        `INSERT INTO public.organization_credits (organization_id, plan_name, total_credits, credits_remaining, cycle_start_date, cycle_end_date)
         VALUES ($1, 'business', 3000, 3000, now(), now() + interval '30 days')
         RETURNING credit_model, ai_credits_total, ai_credits_available, sms_credits_available`,
        [org],
      ]);
      await asBackend("deleting an organization without consumption records", [`DELETE FROM public.organizations WHERE id = $1`, [org]]);
      // The backend's "delete this organization": its members' profiles first, then the organization.
      const [withLogs] = await db.query(`SELECT organization_id::text AS id FROM public.credit_consumption_logs ORDER BY id LIMIT 1`);
      await asBackend(
        "deleting an organization with consumption records",
        [`DELETE FROM public.profiles WHERE organization_id = $1`, [withLogs.id]],
        [`DELETE FROM public.organizations WHERE id = $1`, [withLogs.id]],
      );
      await sleep(800);

      await t.setConfig({ creditModel: "unified" });
      await t.stack.up({ onEvent: collect(t) });
      await settle("after rollback (unified)", false);
      resume();
      await sleep(800);

      await t.setConfig({ creditModel: "multi" });
      await t.stack.up({ onEvent: collect(t) });
      await settle("after forward again (multi)", true);
      await Promise.all([app.stop(), load.stop()]);
    });
    afterAll(async () => {
      await app?.stop().catch(() => undefined);
      await load?.stop().catch(() => undefined);
      t?.destroyWorkspace();
      await db?.drop();
    });

    it("the application did each kind of thing in every phase, as the real roles, and nothing it did failed", () => {
      for (const step of ["consume (served)", "plan change", "cycle reset", "grant", "refund", "member edits its profile and reads its credits"]) {
        expect(app.report.steps[step] ?? 0, step).toBeGreaterThan(2);
      }
      expect(app.report.failures).toEqual([]);
      expect(load.report.failures).toEqual([]);
    });

    it("after every switch, every organization holds what the application wrote, minus what it consumed since", () => {
      expect(Object.keys(phases)).toEqual(["after up (multi)", "after rollback (unified)", "after forward again (multi)"]);
      for (const [name, p] of Object.entries(phases)) expect(p.oracle, name).toEqual([]);
    });

    it("after every switch, every capability found before up still answers, unless named closed", () => {
      expect(before.cells.length).toBeGreaterThan(150);
      for (const [name, p] of Object.entries(phases)) expect(p.lostAccess, name).toEqual([]);
    });

    it("in multi, every organization's pools balance in its epoch: plan changes allocated, grants and refunds left the pools", () => {
      for (const name of ["after up (multi)", "after forward again (multi)"]) {
        expect(phases[name].pools!.violations, name).toEqual([]);
        expect(phases[name].pools!.orgs).toBeGreaterThan(ORGS / 2);
      }
    });

    it("while multi is applied, a backend signup is allocated on write, and an organization without records can leave", () => {
      expect(oneOff["backend signup"]).toMatchObject({ ok: true });
      expect(oneOff["backend signup: credit row"]).toMatchObject({
        ok: true,
        detail: [{ credit_model: "multi", ai_credits_total: 800, ai_credits_available: 800 }],
      });
      expect(oneOff["deleting an organization without consumption records"], JSON.stringify(oneOff)).toMatchObject({ ok: true });
    });

    it("an organization with consumption records cannot be deleted: the audit is append-only, and says so", () => {
      const r = oneOff["deleting an organization with consumption records"];
      expect(r.ok).toBe(false);
      // The CRM's records cascade from their organization, and the append-only audit refuses; our seed's do not
      // cascade, and its foreign key refuses first.
      expect(r.message).toMatch(kind === "our seed" ? /foreign key/ : /audit is append-only/);
    });
  });
}
