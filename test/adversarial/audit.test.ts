/**
 * Adversarial suite (issue 12), the audit: forged consumption records (finding 6) and erasure aimed at what is not a
 * user (finding 4). One test per attack; each asserts what was refused and that nothing changed, the backup schemas
 * rollback uses included.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APPEND_ONLY_PROBE } from "../../components/audit";
import { attempt, battlefield, type Battlefield, refused, state, uuid, type Who } from "./fixture";

let bf: Battlefield;
beforeAll(async () => {
  bf = await battlefield("adv_audit");
});
afterAll(() => bf?.drop());

const service: Who = { role: "service_role" };

describe("forged consumption records are refused", () => {
  it("service_role cannot INSERT a forged success into credit_consumption_logs (rollback would count it)", async () => {
    const before = await state(bf.db);
    const e = await refused(
      bf.db,
      service,
      `INSERT INTO public.credit_consumption_logs (organization_id, action_type, credits_consumed, credits_remaining, success, quantity,
                                                   ai_consumed, credit_model, allocation_epoch)
       VALUES ($1, 'bulk_email', 100000, 0, true, 10000, 0, 'multi', 0)`,
      [bf.org.A],
    );
    expect(e.code).toBe("42501");
    expect(e.message).toBe("permission denied for table credit_consumption_logs");
    expect(await state(bf.db)).toEqual(before);
  });

  it("service_role cannot forge records in bulk with COPY either", async () => {
    const before = await state(bf.db);
    const e = await refused(
      bf.db,
      service,
      `COPY public.credit_consumption_logs (organization_id, action_type, credits_consumed, credits_remaining, success) FROM STDIN`,
    );
    expect(e.message).toBe("permission denied for table credit_consumption_logs");
    expect(await state(bf.db)).toEqual(before);
  });

  it("service_role cannot forge a migration journal entry", async () => {
    const before = await state(bf.db);
    const e = await refused(bf.db, service, `INSERT INTO guardian.migration_journal (step, object_name) VALUES ('rollback', 'nothing to see')`);
    expect(e.message).toMatch(/^permission denied for table migration_journal$/);
    expect(await state(bf.db)).toEqual(before);
  });

  it("service_role still records consumption the only way there is: consume_credits_rpc writes exactly one row", async () => {
    const before = await state(bf.db);
    const r = await attempt(bf.db, service, `SELECT public.consume_credits_rpc($1, 'ai_chat', 2) AS r`, [bf.org.A]);
    expect(r.rows![0].r).toMatchObject({ success: true, consumed: { ai: 2 } });
    const after = await state(bf.db);
    expect(after.rows["public.credit_consumption_logs"]).toBe(before.rows["public.credit_consumption_logs"] + 1);
    expect(after.balances[bf.org.A].ai).toBe(Number(before.balances[bf.org.A].ai) - 2);
  });
});

describe("a grant put back by hand shows as drift of the audit", () => {
  it("INSERT granted back to service_role changes the append-only audit's fingerprint (preview --refresh shows it)", async () => {
    const probe = async () => (await bf.db.query(APPEND_ONLY_PROBE))[0]?.fingerprint;
    const before = await probe();
    expect(before).toEqual(expect.any(String));
    await bf.db.query(`GRANT INSERT ON public.credit_consumption_logs TO service_role`);
    try {
      expect(await probe()).not.toBe(before);
    } finally {
      await bf.db.query(`REVOKE INSERT ON public.credit_consumption_logs FROM service_role`);
    }
    expect(await probe()).toBe(before);
  });
});

describe("erasure aimed at what is not a user is refused", () => {
  it("guardian.erase_user(<an organization's id>) is refused, saying why; the organization stays in the audit and in the backup", async () => {
    const before = await state(bf.db);
    expect(Object.keys(before.md5)).toContain(`${bf.backupId}.organization_credits`);
    const e = await refused(bf.db, service, `SELECT guardian.erase_user($1)`, [bf.org.A]);
    expect(e.message).toBe(`guardian.erase_user: ${bf.org.A} is an organization's id (found in public.organizations.id), not a user's; nothing was changed`);
    expect((e as any).hint).toMatch(/^guardian\.erase_user erases users only/);
    expect(await state(bf.db)).toEqual(before);
    const [{ n }] = await bf.db.query(`SELECT count(*)::int AS n FROM ${bf.backupId}.organization_credits WHERE organization_id = $1`, [bf.org.A]);
    expect(n).toBe(1);
  });

  it("guardian.erase_user(<an id nobody has>) is refused, saying why; nothing changes", async () => {
    const before = await state(bf.db);
    const stranger = uuid();
    const e = await refused(bf.db, service, `SELECT guardian.erase_user($1)`, [stranger]);
    expect(e.message).toMatch(new RegExp(`^guardian\\.erase_user: ${stranger} is not a user's id \\(`));
    expect(await state(bf.db)).toEqual(before);
  });

  it("an authenticated user cannot erase anyone, themselves included", async () => {
    const before = await state(bf.db);
    for (const target of [bf.user.memberA, bf.user.memberB]) {
      const e = await refused(bf.db, { role: "authenticated", sub: bf.user.memberA }, `SELECT guardian.erase_user($1)`, [target]);
      expect(e.message).toBe("permission denied for schema guardian");
    }
    expect(await state(bf.db)).toEqual(before);
  });

  it("erasing a real user changes the audit but never a backup schema nor guardian.backups", async () => {
    // The user acted: one consumption of their own.
    await attempt(bf.db, { role: "authenticated", sub: bf.user.memberB }, `SELECT public.consume_credits_rpc($1, 'ai_chat', 1) AS r`, [bf.org.B]);
    const before = await state(bf.db);
    const r = await attempt(bf.db, service, `SELECT guardian.erase_user($1) AS r`, [bf.user.memberB]);
    expect(r.error).toBeUndefined();
    expect(r.rows![0].r.rows).toMatchObject({ "public.credit_consumption_logs": 1 });
    const after = await state(bf.db);
    const backupTables = Object.keys(before.md5).filter((t) => t.startsWith("guardian_backup_") || t === "guardian.backups");
    expect(backupTables.length).toBeGreaterThan(1);
    for (const t of backupTables) expect(after.md5[t], t).toBe(before.md5[t]);
    expect(after.balances).toEqual(before.balances);
  });
});
