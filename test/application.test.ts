/**
 * The application around the credits keeps working (contract: "The application around the credits keeps working"),
 * on a database built like the CRM's real one, with the CRM's own policies on profiles and organizations (their
 * hole included). Acting as the real roles (a member, a new user, a super_admin, anon, the backend), each in a
 * transaction that is rolled back, before `up`, after `up` and after the rollback:
 *   - what the application's users did keeps working: a member edits its own profile's name, a new user inserts its
 *     own profile, a super_admin updates an organization, the public reads the price list;
 *   - the escalations close precisely: a member can no longer make itself super_admin or move into another
 *     organization, a new user's own profile can no longer name an organization;
 *   - nothing outside the program's tables changes: default privileges, the price list's descriptions;
 * and the backend's writes while multi is applied (an upgrade, a cycle reset) survive the rollback, and forward again
 * gives back the pools as they were (no refill).
 */
import type { Client } from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collect, testStack, type TestStack } from "../harness/stack";
import { type TestDb } from "./helpers/db";
import { freshRealCrmDb, sampleMember, sampleSuperAdmin, userWithoutProfile } from "./helpers/realCrm";
import { programAccess } from "../lib/access";
import { type AccessMatrix, cellName, probeAccess } from "../lib/accessProbe";
import { actAs, rolledBack } from "../lib/db";

/** The access matrix of lib/accessProbe.ts: evaluated without writing (as preview does), and by writing for real. */
async function matrices(db: TestDb): Promise<{ evaluated: AccessMatrix; written: AccessMatrix }> {
  const c: Client = await db.client();
  try {
    return { evaluated: await probeAccess(c, "user_role"), written: await probeAccess(c, "user_role", { write: true }) };
  } finally {
    await c.end();
  }
}
const cellsOf = (m: AccessMatrix) => Object.fromEntries(m.cells.map((x) => [`${x.role} ${cellName(x)}`, x.allowed]));

type Who = { role: "anon" | "authenticated" | "service_role"; sub?: string };
interface Answer {
  ok: boolean;
  rows: number;
  code?: string;
}

/** Runs one statement as `who`, as Supabase would, and rolls it back: what it could do, never a lasting write. */
async function probe(db: TestDb, who: Who, sql: string, params: unknown[] = []): Promise<Answer> {
  const c: Client = await db.client();
  try {
    return await rolledBack(c, async () => {
      await actAs(c, who);
      try {
        const r = await c.query(sql, params);
        return { ok: true, rows: r.command === "SELECT" ? Number(r.rows[0]?.n ?? r.rowCount) : (r.rowCount ?? 0) };
      } catch (e: any) {
        return { ok: false, rows: 0, code: e.code };
      }
    });
  } finally {
    await c.end();
  }
}

/** Commits one statement as `who` (the backend's writes while multi is applied). */
async function write(db: TestDb, who: Who, sql: string, params: unknown[] = []): Promise<any[]> {
  const c: Client = await db.client();
  try {
    await c.query("BEGIN");
    await c.query("SELECT set_config('request.jwt.claims', $1, true)", [JSON.stringify({ role: who.role })]);
    await c.query(`SET LOCAL ROLE ${who.role}`);
    const r = await c.query(sql, params);
    await c.query("COMMIT");
    return r.rows;
  } finally {
    await c.end();
  }
}

interface Users {
  member: { userId: string; organizationId: string };
  superAdmin: { userId: string };
  newUser: { userId: string };
  otherOrg: string;
}

/** The capabilities the application relies on, and the two escalations, as their users try them. */
async function capabilities(db: TestDb, u: Users) {
  const m: Who = { role: "authenticated", sub: u.member.userId };
  const fresh: Who = { role: "authenticated", sub: u.newUser.userId };
  const admin: Who = { role: "authenticated", sub: u.superAdmin.userId };
  return {
    memberEditsOwnName: await probe(db, m, `UPDATE public.profiles SET full_name = 'Renamed' WHERE id = auth.uid()`),
    memberReadsOwnProfile: await probe(db, m, `SELECT count(*) n FROM public.profiles WHERE id = auth.uid()`),
    memberReadsOwnOrganization: await probe(db, m, `SELECT count(*) n FROM public.organizations WHERE id = $1`, [u.member.organizationId]),
    memberRaisesOwnRole: await probe(db, m, `UPDATE public.profiles SET user_role = 'super_admin' WHERE id = auth.uid()`),
    memberMovesOrganization: await probe(db, m, `UPDATE public.profiles SET organization_id = $1 WHERE id = auth.uid()`, [u.otherOrg]),
    newUserSignsUp: await probe(db, fresh, `INSERT INTO public.profiles (id, email, full_name) VALUES (auth.uid(), 'new@example.com', 'New')`),
    newUserNamesOrganization: await probe(db, fresh, `INSERT INTO public.profiles (id, organization_id) VALUES (auth.uid(), $1)`, [u.otherOrg]),
    superAdminUpdatesOrganization: await probe(db, admin, `UPDATE public.organizations SET name = name || ' (renamed)' WHERE id = $1`, [u.otherOrg]),
    superAdminMovesMember: await probe(db, admin, `UPDATE public.profiles SET organization_id = $1 WHERE id = $2`, [u.otherOrg, u.member.userId]),
    anonReadsPriceList: await probe(db, { role: "anon" }, `SELECT count(*) n FROM public.credit_actions`),
    memberReadsPriceList: await probe(db, m, `SELECT count(*) n FROM public.credit_actions`),
    backendUpdatesCredits: await probe(
      db,
      { role: "service_role" },
      `UPDATE public.organization_credits SET total_credits = total_credits WHERE organization_id = $1`,
      [u.member.organizationId],
    ),
  };
}

async function defaultPrivileges(db: TestDb) {
  return db.query(`SELECT defaclrole::regrole::text AS role, defaclobjtype AS kind, defaclacl::text AS acl
                     FROM pg_default_acl WHERE defaclnamespace = 'public'::regnamespace ORDER BY 1, 2`);
}

describe("the application around the credits keeps working, on the CRM's real schema", () => {
  let db: TestDb;
  let t: TestStack;
  let users: Users;
  let before: Awaited<ReturnType<typeof capabilities>>;
  let afterUp: Awaited<ReturnType<typeof capabilities>>;
  let defaclBefore: any[];
  let descriptionsBefore: any[];
  let previewText: string;
  let expiredTrials: number;
  let withoutCredits: number;
  let matrixBefore: Awaited<ReturnType<typeof matrices>>;
  let matrixAfterUp: Awaited<ReturnType<typeof matrices>>;
  let upOutputs: Record<string, any>;

  beforeAll(async () => {
    db = await freshRealCrmDb({ orgs: 60, seed: 31 });
    const member = await sampleMember(db);
    const [{ id: otherOrg }] = await db.query(`SELECT id FROM public.organizations WHERE id <> $1 ORDER BY id LIMIT 1`, [member.organizationId]);
    users = { member, superAdmin: await sampleSuperAdmin(db), newUser: await userWithoutProfile(db), otherOrg };
    before = await capabilities(db, users);
    matrixBefore = await matrices(db);
    defaclBefore = await defaultPrivileges(db);
    descriptionsBefore = await db.query(`SELECT action_type, description FROM public.credit_actions ORDER BY 1`);
    t = await testStack(db.url, { creditModel: "multi" });
    const p = await t.stack.preview({ onEvent: collect(t), diff: true });
    previewText = t.logText() + p.stdout;
    [{ n: withoutCredits }] = await db.query(
      `SELECT count(*)::int AS n FROM public.organizations o WHERE NOT EXISTS (SELECT 1 FROM public.organization_credits c WHERE c.organization_id = o.id)`,
    );
    [{ n: expiredTrials }] = await db.query(
      `SELECT count(*)::int AS n FROM public.organization_credits WHERE lower(btrim(plan_name)) = 'trial_14' AND cycle_end_date < now()`,
    );
    upOutputs = (await t.stack.up({ onEvent: collect(t) })).outputs;
    afterUp = await capabilities(db, users);
    matrixAfterUp = await matrices(db);
  });
  afterAll(async () => {
    t?.destroyWorkspace();
    await db?.drop();
  });

  it("preview says what callers and users will see: every access change with its reason, expired trials, each action's pools", () => {
    expect(previewText).toContain("access: kept: a member edits its own profile (name and the like)");
    expect(previewText).toMatch(
      /access matrix \(probed as anon, a member, .*read-only\): \d+ cells, \d+ kept, \d+ closed, \d+ appear, 0 lost without a reason/,
    );
    expect(previewText).toMatch(
      /access: closed: a member sets its own profile's role \(e\.g\. to super_admin\) or moves it into another organization \(escalation:[^\n]*\): member UPDATE tenancy profiles \(own\)/,
    );
    expect(previewText).toMatch(
      /access: closed: a user other than a super_admin reads another organization's rows[^\n]*member SELECT organization_credits \(other\)/,
    );
    expect(previewText).toMatch(/access: appears: a super_admin reads, inserts and changes any profile[^\n]*super_admin UPDATE tenancy profiles \(other\)/);
    expect(expiredTrials).toBeGreaterThan(0);
    expect(previewText).toContain(`${expiredTrials} organization(s) on a trial whose cycle has ended get TRIAL_EXPIRED`);
    expect(previewText).toMatch(/catalogue: pools \| action +\| unified \| ai \| whatsapp \| email \| sms/);
    expect(previewText).toMatch(/catalogue: pools \| ai_chat +\| +1 \| +1 \| +0 \| +0 \| +0/);
    // The CRM has organizations without a credit row (the fixture holds one at least): preview counts them.
    expect(withoutCredits).toBeGreaterThan(0);
    expect(previewText).toContain(
      `backfill: ${withoutCredits} organization(s) have no credit row: nothing to migrate there; consume_credits_rpc answers them NO_CREDIT_ACCOUNT`,
    );
  });

  it("acting as the roles without writing finds what writing finds, cell by cell, before and after up", () => {
    expect(matrixBefore.evaluated.cells.length).toBeGreaterThan(150);
    expect(matrixBefore.evaluated.roles).toEqual(["anon", "member", "org_admin", "super_admin", "no_profile", "service_role"]);
    expect(cellsOf(matrixBefore.evaluated)).toEqual(cellsOf(matrixBefore.written));
    expect(cellsOf(matrixAfterUp.evaluated)).toEqual(cellsOf(matrixAfterUp.written));
  });

  it("after up, every cell is what the program's policies allow, and the verification found the same", () => {
    const after = cellsOf(matrixAfterUp.written);
    for (const x of matrixBefore.written.cells) expect(after[`${x.role} ${cellName(x)}`], `${x.role} ${cellName(x)}`).toBe(programAccess(x));
    expect(upOutputs.verification.value.accessMatrix).toMatchObject({ cells: matrixAfterUp.evaluated.cells.length, mismatches: 0 });
  });

  it("before up, the CRM's own policies have the hole: a member raises its role or changes organization, a new user names one", () => {
    expect(before.memberRaisesOwnRole).toMatchObject({ ok: true, rows: 1 });
    expect(before.memberMovesOrganization).toMatchObject({ ok: true, rows: 1 });
    expect(before.newUserNamesOrganization).toMatchObject({ ok: true, rows: 1 });
  });

  it("after up, what the application's users did still works", () => {
    for (const k of [
      "memberEditsOwnName",
      "memberReadsOwnProfile",
      "memberReadsOwnOrganization",
      "newUserSignsUp",
      "superAdminUpdatesOrganization",
      "anonReadsPriceList",
      "memberReadsPriceList",
      "backendUpdatesCredits",
    ] as const) {
      expect(before[k], `before: ${k}`).toMatchObject({ ok: true });
      expect(afterUp[k], `after up: ${k}`).toEqual(before[k]);
    }
    expect(afterUp.anonReadsPriceList.rows).toBe(26);
  });

  it("after up, what appears is named by the contract: a super_admin changes a member's organization", () => {
    // The CRM's own policies let super_admins read every profile, not write one; the contract makes changing the
    // tenancy and rank columns the backend's or a super_admin's.
    expect(before.superAdminMovesMember).toMatchObject({ ok: true, rows: 0 });
    expect(afterUp.superAdminMovesMember).toMatchObject({ ok: true, rows: 1 });
  });

  it("after up, the escalations are closed, and only they", () => {
    expect(afterUp.memberRaisesOwnRole).toMatchObject({ ok: false, code: "42501" });
    expect(afterUp.memberMovesOrganization).toMatchObject({ ok: false, code: "42501" });
    expect(afterUp.newUserNamesOrganization).toMatchObject({ ok: false, code: "42501" });
  });

  it("changes no default privilege and no description of the price list", async () => {
    expect(await defaultPrivileges(db)).toEqual(defaclBefore);
    expect(await db.query(`SELECT action_type, description FROM public.credit_actions ORDER BY 1`)).toEqual(descriptionsBefore);
  });

  it("leaves TRIGGER and TRUNCATE on the program's tables to their owner alone", async () => {
    const rows = await db.query(`SELECT c.relname, r.rolname, a.privilege_type
                                   FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
                                  WHERE c.oid IN ('public.organizations'::regclass, 'public.profiles'::regclass,
                                                  'public.organization_credits'::regclass, 'public.credit_actions'::regclass,
                                                  'public.credit_consumption_logs'::regclass)
                                    AND a.privilege_type IN ('TRIGGER', 'TRUNCATE') AND r.oid <> c.relowner`);
    expect(rows).toEqual([]);
    const created = await probe(
      db,
      { role: "service_role" },
      `CREATE TRIGGER x BEFORE UPDATE ON public.organization_credits FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()`,
    );
    expect(created).toMatchObject({ ok: false, code: "42501" });
  });

  describe("the backend's writes while multi is applied survive the rollback, and forward again refills nothing", () => {
    let upgraded: string;
    let reset: string;
    let atRollback: Map<string, any>;
    let rollbackOuts: any;
    const row = async (org: string) => (await db.query(`SELECT * FROM public.organization_credits WHERE organization_id = $1`, [org]))[0];
    const call = (org: string) =>
      write(db, { role: "service_role" }, `SELECT public.consume_credits_rpc(p_organization_id => $1, p_action_type => 'ai_chat') AS r`, [org]).then(
        (r) => r[0].r,
      );

    beforeAll(async () => {
      const orgs = await db.query(
        `SELECT oc.organization_id FROM public.organization_credits oc
                                     JOIN public.organizations o ON o.id = oc.organization_id
                                    WHERE lower(btrim(oc.plan_name)) NOT IN ('business', 'trial_14') AND oc.ai_credits_available >= 5
                                      AND oc.organization_id <> $1
                                    ORDER BY 1 LIMIT 2`,
        [users.member.organizationId],
      );
      expect(orgs).toHaveLength(2);
      [upgraded, reset] = orgs.map((o) => o.organization_id);
      // An upgrade and a cycle reset, written by the backend as it always did, then one call each.
      await write(
        db,
        { role: "service_role" },
        `UPDATE public.organization_credits SET plan_name = 'business', total_credits = 3000, credits_remaining = 3000 WHERE organization_id = $1`,
        [upgraded],
      );
      await write(db, { role: "service_role" }, `UPDATE public.organization_credits SET credits_remaining = 0 WHERE organization_id = $1`, [reset]);
      await write(db, { role: "service_role" }, `UPDATE public.organization_credits SET credits_remaining = 1500 WHERE organization_id = $1`, [reset]);
    });

    it("while multi is applied: the upgrade allocates the business pools, the reset leaves them, and v2 keeps credits_remaining current", async () => {
      const resetBefore = await row(reset);
      expect((await call(upgraded)).success).toBe(true);
      expect((await call(reset)).success).toBe(true);
      const u = await row(upgraded);
      expect([u.ai_credits_total, u.ai_credits_available, u.credits_remaining]).toEqual([800, 799, 2999]);
      const r = await row(reset);
      expect(r.credits_remaining).toBe(1499);
      expect(r.ai_credits_available).toBe(resetBefore.ai_credits_available - 1);
    });

    it("rollback switches back and recomputes nothing: 2,999 and 1,499 stay", async () => {
      atRollback = new Map((await db.query(`SELECT * FROM public.organization_credits`)).map((x) => [x.organization_id, x]));
      await t.setConfig({ creditModel: "unified" });
      rollbackOuts = (await t.stack.up({ onEvent: collect(t) })).outputs;
      expect(rollbackOuts.unifiedValuesChanged.value).toBe(0);
      expect(rollbackOuts.v1SearchPathPinned.value).toBe(true);
      for (const x of await db.query(`SELECT * FROM public.organization_credits`)) {
        const was = atRollback.get(x.organization_id);
        expect([x.plan_name, x.total_credits, x.credits_remaining], x.organization_id).toEqual([was.plan_name, was.total_credits, was.credits_remaining]);
        expect(x.credit_model).toBe("unified");
      }
      expect((await row(upgraded)).credits_remaining).toBe(2999);
      expect((await row(reset)).credits_remaining).toBe(1499);
    });

    it("after the rollback, a member's temporary table with a trigger never runs as the restored v1's owner", async () => {
      const c: Client = await db.client();
      let answer: any;
      try {
        await c.query("SELECT set_config('request.jwt.claims', $1, false)", [JSON.stringify({ sub: users.member.userId, role: "authenticated" })]);
        await c.query("SET ROLE authenticated");
        // The attack of an unpinned SECURITY DEFINER v1: its unqualified INSERT INTO credit_consumption_logs would
        // find this table first, and the trigger would run as v1's owner.
        await c.query(`CREATE TEMP TABLE credit_consumption_logs (organization_id uuid, action_type text, credits_consumed int,
                         credits_remaining int, success boolean, error_message text)`);
        await c.query(`CREATE FUNCTION pg_temp.take() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN UPDATE public.organization_credits SET credits_remaining = 1000000 WHERE organization_id = NEW.organization_id;
                               RETURN NEW; END $$`);
        await c.query(`CREATE TRIGGER take BEFORE INSERT ON pg_temp.credit_consumption_logs FOR EACH ROW EXECUTE FUNCTION pg_temp.take()`);
        answer = (await c.query(`SELECT public.consume_credits_rpc($1, 'ai_chat') AS r`, [users.member.organizationId])).rows[0].r;
        const [{ n }] = (await c.query(`SELECT count(*)::int AS n FROM pg_temp.credit_consumption_logs`)).rows;
        expect(n).toBe(0); // v1 wrote to public.credit_consumption_logs, not to the member's table
      } finally {
        await c.end();
      }
      expect(answer.success).toBe(true);
      expect((await row(users.member.organizationId)).credits_remaining).not.toBe(1000000);
      const [{ last }] = await db.query(`SELECT action_type AS last FROM public.credit_consumption_logs WHERE organization_id = $1 ORDER BY id DESC LIMIT 1`, [
        users.member.organizationId,
      ]);
      expect(last).toBe("ai_chat");
    });

    it("after the rollback the program's access fixes stay: the same capabilities and the same matrix as after up", async () => {
      expect(await capabilities(db, users)).toEqual(afterUp);
      const now = await matrices(db);
      expect(cellsOf(now.written)).toEqual(cellsOf(matrixAfterUp.written));
      expect(cellsOf(now.evaluated)).toEqual(cellsOf(matrixAfterUp.written));
      expect(rollbackOuts.verification.value.accessMatrix).toMatchObject({ mismatches: 0 });
    });

    it("forward again gives back the pools as rolled back, minus what v1 served meanwhile", async () => {
      expect((await call(upgraded)).success).toBe(true); // v1: 2,999 -> 2,998
      await t.setConfig({ creditModel: "multi" });
      await t.stack.up({ onEvent: collect(t) });
      const u = await row(upgraded);
      expect([u.credit_model, u.ai_credits_total, u.ai_credits_available, u.credits_remaining]).toEqual(["multi", 800, 798, 2998]);
      for (const x of await db.query(`SELECT * FROM public.organization_credits`)) {
        const was = atRollback.get(x.organization_id);
        for (const pool of ["ai", "whatsapp", "email", "sms"]) {
          expect(x[`${pool}_credits_available`], `${x.organization_id} ${pool}`).toBeLessThanOrEqual(was[`${pool}_credits_available`]);
        }
      }
    });
  });
});
