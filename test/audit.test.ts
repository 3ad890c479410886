/**
 * The audit (contract.md "Audit and GDPR"): consumption records and migration steps are append-only, hold ids only,
 * and leave only through the retention purge and the erasure function. Real Postgres, one database per block.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUDIT_FILES, renderPurgeSql } from "../components/audit";
import { loadSql } from "../lib/sql";
import { rolledBack } from "../lib/db";
import { asUser, type TestDb } from "./helpers/db";
import { applySqlFiles, applySqlText, errorOf, guardianDb, insertLog, makeOrg } from "./helpers/auditFixture";

const ALL_AUDIT_FILES = [AUDIT_FILES.appendOnly, AUDIT_FILES.purge, AUDIT_FILES.erasure];
const LOGS = "public.credit_consumption_logs";
const JOURNAL = "guardian.migration_journal";

async function auditDb(prefix: string): Promise<TestDb> {
  const db = await guardianDb(prefix);
  await applySqlFiles(db, ALL_AUDIT_FILES);
  return db;
}

const USER = "7d9f3c1e-2b4a-4c8e-9f10-a1b2c3d4e5f6";
const OTHER_USER = "0a0b0c0d-1111-4222-8333-944455556666";

describe("append-only audit tables", () => {
  let db: TestDb;
  let org: string;
  beforeAll(async () => {
    db = await auditDb("ga_ao");
    org = await makeOrg(db);
    await insertLog(db, { organizationId: org, userId: USER });
    await db.query(`INSERT INTO guardian.migration_journal (step, object_name, details) VALUES ('backup', 'x', '{"rows": 1}')`);
  });
  afterAll(() => db?.drop());

  for (const [table, op, sql] of [
    [LOGS, "UPDATE", `UPDATE ${LOGS} SET credits_consumed = 0`],
    [LOGS, "DELETE", `DELETE FROM ${LOGS}`],
    [LOGS, "TRUNCATE", `TRUNCATE ${LOGS}`],
    [JOURNAL, "UPDATE", `UPDATE ${JOURNAL} SET step = 'x'`],
    [JOURNAL, "DELETE", `DELETE FROM ${JOURNAL}`],
    [JOURNAL, "TRUNCATE", `TRUNCATE ${JOURNAL}`],
  ] as const) {
    it(`refuses ${op} on ${table} to a superuser without the maintenance flag`, async () => {
      const e = await errorOf(db.query(sql));
      expect(e.message).toBe(`${op} on ${table} refused: the audit is append-only`);
      expect(e.code).toBe("42501");
    });
  }

  it("refuses a journal UPDATE that matches no row (the journal's check is per statement)", async () => {
    const e = await errorOf(db.query(`UPDATE ${JOURNAL} SET at = now() WHERE false`));
    expect(e.message).toBe(`UPDATE on ${JOURNAL} refused: the audit is append-only`);
  });

  it("lets a DELETE that reaches no consumption record through (an organization without records may leave), and refuses one that does", async () => {
    await db.query(`INSERT INTO public.organizations (id, name, slug) VALUES ('00000000-0000-4000-8000-00000000e001', 'Leaving', 'leaving-e001')`);
    expect(await db.query(`DELETE FROM ${LOGS} WHERE organization_id = '00000000-0000-4000-8000-00000000e001' RETURNING id`)).toEqual([]);
    expect(await db.query(`DELETE FROM public.organizations WHERE id = '00000000-0000-4000-8000-00000000e001' RETURNING id`)).toHaveLength(1);
    const [{ org }] = await db.query(`SELECT organization_id AS org FROM ${LOGS} LIMIT 1`);
    const e = await errorOf(db.query(`DELETE FROM ${LOGS} WHERE organization_id = $1`, [org]));
    expect(e.message).toBe(`DELETE on ${LOGS} refused: the audit is append-only`);
  });

  it("still refuses when the session replication role is replica (the triggers are ENABLE ALWAYS)", async () => {
    const c = await db.client();
    try {
      await c.query("SET session_replication_role = replica");
      const e = await errorOf(c.query(`DELETE FROM ${LOGS}`));
      expect(e.message).toBe(`DELETE on ${LOGS} refused: the audit is append-only`);
    } finally {
      await c.end();
    }
  });

  for (const role of ["service_role", "authenticated", "anon"] as const) {
    for (const table of [LOGS, JOURNAL]) {
      for (const sql of [`UPDATE ${table} SET ${table === LOGS ? "created_at" : "at"} = now()`, `DELETE FROM ${table}`, `TRUNCATE ${table}`]) {
        it(`refuses ${role}: ${sql.split(" ")[0]} on ${table}, even with the maintenance flag set`, async () => {
          const e = await errorOf(
            asUser(db, { role, sub: role === "authenticated" ? USER : undefined }, async (c) => {
              await c.query("SELECT set_config('guardian.audit_maintenance', 'on', true)");
              await c.query(sql);
            }),
          );
          // The table privilege is revoked; on the journal, anon (and, without the tenancy grants, authenticated)
          // cannot even reach the schema.
          expect(e.message).toMatch(/^permission denied for (table credit_consumption_logs|table migration_journal|schema guardian)$/);
          expect(e.code).toBe("42501");
        });
      }
    }
  }

  it("refuses a role that was granted UPDATE and DELETE again, even when it sets the maintenance flag", async () => {
    await db.query(`GRANT UPDATE, DELETE ON ${LOGS} TO service_role`);
    try {
      for (const sql of [`UPDATE ${LOGS} SET credits_consumed = 0`, `DELETE FROM ${LOGS}`]) {
        const e = await errorOf(
          asUser(db, { role: "service_role" }, async (c) => {
            await c.query("SELECT set_config('guardian.audit_maintenance', 'on', true)");
            await c.query(sql);
          }),
        );
        expect(e.message).toBe(`${sql.split(" ")[0]} on ${LOGS} refused: the audit is append-only`);
      }
    } finally {
      await db.query(`REVOKE UPDATE, DELETE ON ${LOGS} FROM service_role`);
    }
  });

  it("keeps accepting new records (INSERT is the audit's only write)", async () => {
    const before = (await db.query(`SELECT count(*)::int n FROM ${LOGS}`))[0].n;
    await insertLog(db, { organizationId: org, success: false, errorCode: "INSUFFICIENT_CREDITS" });
    expect((await db.query(`SELECT count(*)::int n FROM ${LOGS}`))[0].n).toBe(before + 1);
  });

  it("leaves UPDATE, DELETE, TRUNCATE and TRIGGER to no Data API role", async () => {
    const rows = await db.query(
      `SELECT r || ' ' || pr || ' ' || t AS p FROM unnest(ARRAY['anon','authenticated','service_role']) r,
              unnest(ARRAY['UPDATE','DELETE','TRUNCATE','TRIGGER']) pr, unnest(ARRAY[$1, $2]) t
        WHERE has_table_privilege(r, t, pr)`,
      [LOGS, JOURNAL],
    );
    expect(rows.map((r) => r.p)).toEqual([]);
  });

  it("leaves INSERT on the audit to no Data API role, service_role included (a forged success would count in rollback)", async () => {
    const rows = await db.query(
      `SELECT r || ' ' || t AS p FROM unnest(ARRAY['anon','authenticated','service_role']) r, unnest(ARRAY[$1, $2]) t
        WHERE has_table_privilege(r, t, 'INSERT')`,
      [LOGS, JOURNAL],
    );
    expect(rows.map((r) => r.p)).toEqual([]);
  });
});

describe("the migration journal holds no personal data", () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await auditDb("ga_pii");
  });
  afterAll(() => db?.drop());

  const insert = (details: unknown, objectName = "public.organization_credits") =>
    db.query(`INSERT INTO guardian.migration_journal (step, object_name, details) VALUES ('backfill_batch', $1, $2::jsonb)`, [
      objectName,
      JSON.stringify(details),
    ]);

  for (const [details, where] of [
    [{ email: "x" }, "details.email (a personal-data key)"],
    [{ actor: { firstName: "Ann" } }, "details.actor.firstName (a personal-data key)"],
    [{ Phone_Number: "+33 6 12 34 56 78" }, "details.Phone_Number (a personal-data key)"],
    [{ name: "Acme" }, "details.name (a personal-data key)"],
    [{ note: "ann@example.com" }, 'details.note (a string containing "@", like an e-mail address)'],
    [{ list: ["ok", "b@c.io"] }, 'details.list[1] (a string containing "@", like an e-mail address)'],
    [{ "ann@example.com": 1 }, 'details (a key containing "@", like an e-mail address)'],
  ] as const) {
    it(`refuses ${JSON.stringify(details)}`, async () => {
      const e = await errorOf(insert(details));
      expect(e.message).toBe(`guardian.migration_journal refuses personal data: ${where}`);
      expect(e.code).toBe("23514");
    });
  }

  it("refuses an e-mail address as object_name", async () => {
    const e = await errorOf(insert({ rows: 1 }, "ann@example.com"));
    expect(e.message).toBe('guardian.migration_journal refuses personal data: object_name (a string containing "@", like an e-mail address)');
  });

  it("accepts ids, counts, hashes and names of things (plan_name, schemaName, sqlFile)", async () => {
    await insert({
      plan_name: "starter",
      schemaName: "guardian_backup_x",
      sqlFile: "audit/01_append_only.sql",
      sqlSha256: "ab12",
      rowCounts: { organizations: 3 },
      organization: "7d9f3c1e-2b4a-4c8e-9f10-a1b2c3d4e5f6",
      flipped: 2,
    });
    await insert(null);
    const n = (await db.query(`SELECT count(*)::int n FROM guardian.migration_journal WHERE step = 'backfill_batch'`))[0].n;
    expect(n).toBe(2);
  });
});

describe("guardian.purge_audit", () => {
  let db: TestDb;
  let org: string;
  let multiOrg: string;
  const ids: Record<string, number> = {};
  beforeAll(async () => {
    db = await auditDb("ga_purge");
    org = await makeOrg(db);
    multiOrg = await makeOrg(db, { creditModel: "multi", epoch: 2 });
    ids.old = await insertLog(db, { organizationId: org, age: "800 days", creditModel: null, epoch: null });
    ids.oldRefused = await insertLog(db, { organizationId: org, age: "731 days", success: false, errorCode: "TRIAL_EXPIRED" });
    ids.young = await insertLog(db, { organizationId: org, age: "729 days" });
    ids.oldPastEpoch = await insertLog(db, { organizationId: multiOrg, age: "900 days", creditModel: "multi", epoch: 1, ai: 1 });
    ids.oldLiveEpoch = await insertLog(db, { organizationId: multiOrg, age: "900 days", creditModel: "multi", epoch: 2, ai: 1 });
    await db.query(`INSERT INTO guardian.migration_journal (at, step, object_name) VALUES
      (now() - interval '800 days', 'backup', 'old'), (now() - interval '10 days', 'backup', 'young')`);
    await db.query(
      `INSERT INTO guardian.idempotency_keys (organization_id, idempotency_key, result, created_at) VALUES
      ($1, 'old-key', '{}', now() - interval '731 days'), ($1, 'young-key', '{}', now() - interval '729 days')`,
      [org],
    );
  });
  afterAll(() => db?.drop());

  it("refuses a window shorter than the retention", async () => {
    const e = await errorOf(db.query(`SELECT guardian.purge_audit('1 day')`));
    expect(e.message).toBe("guardian.purge_audit: p_older_than (1 day) is shorter than the retention (730 days, guardian:audit.retentionDays)");
  });

  it("is not executable by anon or authenticated", async () => {
    for (const role of ["anon", "authenticated"] as const) {
      const e = await errorOf(asUser(db, { role, sub: role === "authenticated" ? USER : undefined }, (c) => c.query("SELECT guardian.purge_audit()")));
      expect(e.message).toMatch(/^permission denied for (schema guardian|function purge_audit)$/);
    }
  });

  it("deletes only records older than the retention, keeps a multi org's live epoch, and returns counts per table", async () => {
    const [{ r }] = await asUser(db, { role: "service_role" }, (c) => c.query("SELECT guardian.purge_audit() AS r")).then((x) => x.rows);
    expect(r).toMatchObject({
      older_than: "730 days",
      deleted: { credit_consumption_logs: 3, migration_journal: 1, idempotency_keys: 1 },
      retained_live_epoch: 1,
    });
    const keys = (await db.query(`SELECT idempotency_key FROM guardian.idempotency_keys ORDER BY 1`)).map((x) => x.idempotency_key);
    expect(keys).toEqual(["young-key"]);
    const left = (await db.query(`SELECT id::int FROM public.credit_consumption_logs ORDER BY id`)).map((x) => x.id);
    expect(left).toEqual([ids.young, ids.oldLiveEpoch]);
    const journal = await db.query(`SELECT step, object_name, actor_id, details FROM guardian.migration_journal ORDER BY id`);
    expect(journal.map((j) => `${j.step}:${j.object_name}`)).toEqual(["backup:young", "purge:guardian.purge_audit"]);
    expect(journal[1].details).toMatchObject({ deleted: { credit_consumption_logs: 3, migration_journal: 1, idempotency_keys: 1 }, retained_live_epoch: 1 });
  });

  it("closes the door again before returning: a DELETE later in the same transaction is refused", async () => {
    const c = await db.client();
    try {
      await rolledBack(c, async () => {
        const r = (await c.query("SELECT guardian.purge_audit('1000 days') AS r")).rows[0].r;
        expect(r.deleted).toEqual({ credit_consumption_logs: 0, migration_journal: 0, idempotency_keys: 0 });
        const e = await errorOf(c.query("DELETE FROM public.credit_consumption_logs"));
        expect(e.message).toBe("DELETE on public.credit_consumption_logs refused: the audit is append-only");
      });
    } finally {
      await c.end();
    }
  });

  it("carries the stack's retention once rendered (guardian:audit.retentionDays = 365)", async () => {
    const text = loadSql(AUDIT_FILES.purge).text;
    const rendered = renderPurgeSql(text, 365);
    expect(rendered).toContain("p_older_than interval DEFAULT '365 days'");
    expect(rendered).toContain("c_retention constant interval := '365 days'");
    expect(() => renderPurgeSql("SELECT 1", 365)).toThrow("sql/audit/02_retention_purge.sql: expected DEFAULT '730 days' exactly once, found 0");
    await applySqlText(db, AUDIT_FILES.purge, rendered);
    const e = await errorOf(db.query(`SELECT guardian.purge_audit('100 days')`));
    expect(e.message).toBe("guardian.purge_audit: p_older_than (100 days) is shorter than the retention (365 days, guardian:audit.retentionDays)");
    await applySqlFiles(db, [AUDIT_FILES.purge]);
  });
});

describe("guardian.erase_user", () => {
  let db: TestDb;
  let org: string;
  const BACKUP = "guardian_backup_20250101000000_abc123";
  beforeAll(async () => {
    db = await auditDb("ga_erase");
    org = await makeOrg(db, { creditModel: "multi", epoch: 1 });
    await insertLog(db, { organizationId: org, userId: USER, idempotencyKey: `chat:${USER.toUpperCase()}:1`, epoch: 1, ai: 1 });
    await insertLog(db, { organizationId: org, userId: USER, success: false, errorCode: "INSUFFICIENT_CREDITS", epoch: 1 });
    await insertLog(db, { organizationId: org, userId: OTHER_USER, idempotencyKey: `chat:${OTHER_USER}:1`, epoch: 1, ai: 1 });
    await db.query(
      `INSERT INTO guardian.idempotency_keys (organization_id, idempotency_key, result)
       VALUES ($1, $2, '{"success": true}'), ($1, $3, '{"success": true}')`,
      [org, `chat:${USER.toUpperCase()}:1`, `chat:${OTHER_USER}:1`],
    );
    await db.query(
      `INSERT INTO guardian.migration_journal (step, object_name, organization_id, actor_id, details)
                    VALUES ('backfill_batch', 'public.organization_credits', $1, $2, jsonb_build_object('user', $4::text, 'flipped', 1)),
                           ('backfill_batch', 'public.organization_credits', $1, $3, '{"flipped": 1}')`,
      [org, USER, OTHER_USER, USER],
    );
    // A backup's copy of the log (as the Backup resource makes one), holding the user id too.
    await db.query(`CREATE SCHEMA ${BACKUP}; CREATE TABLE ${BACKUP}.credit_consumption_logs AS SELECT * FROM public.credit_consumption_logs`);
  });
  afterAll(() => db?.drop());

  /** Every row of every table in the audit's reach whose text form contains the id (any case). */
  const traces = async (id: string) =>
    db
      .query(
        `SELECT format('%s.%s', n.nspname, c.relname) AS t,
              (xpath('//row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s x WHERE x::text ILIKE %L', c.oid::regclass, '%' || $1 || '%'), false, false, '')))[1]::text::int AS n
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND (c.oid = 'public.credit_consumption_logs'::regclass OR n.nspname = 'guardian' OR n.nspname LIKE 'guardian\\_backup%')`,
        [id],
      )
      .then((rows) =>
        rows
          .filter((r) => r.n > 0)
          .map((r) => `${r.t}: ${r.n}`)
          .sort(),
      );

  it("is not executable by anon or authenticated", async () => {
    for (const role of ["anon", "authenticated"] as const) {
      const e = await errorOf(asUser(db, { role, sub: role === "authenticated" ? USER : undefined }, (c) => c.query(`SELECT guardian.erase_user('${USER}')`)));
      expect(e.message).toMatch(/^permission denied for (schema guardian|function erase_user)$/);
    }
  });

  /** md5 of every row of the backup schema's copy: the backup as rollback and its checksums know it. */
  const backupFingerprint = async () =>
    (await db.query(`SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) AS f FROM ${BACKUP}.credit_consumption_logs t`))[0].f;

  it("refuses an organization's id, says why, and changes nothing (the organization stays in the backup)", async () => {
    const before = { traces: await traces(org), backup: await backupFingerprint() };
    expect(before.traces).toContain(`${BACKUP}.credit_consumption_logs: 3`);
    const e = await errorOf(asUser(db, { role: "service_role" }, (c) => c.query(`SELECT guardian.erase_user($1) AS r`, [org])));
    expect(e.message).toBe(`guardian.erase_user: ${org} is an organization's id (found in public.organizations.id), not a user's; nothing was changed`);
    expect(e.code).toBe("22023");
    expect(await traces(org)).toEqual(before.traces);
    expect(await backupFingerprint()).toBe(before.backup);
    expect(await db.query(`SELECT 1 FROM guardian.migration_journal WHERE step = 'erasure'`)).toEqual([]);
  });

  it("refuses an organization's id found only in a backup's copy of organizations", async () => {
    const gone = "5b1e1d2c-3f4a-4b5c-8d6e-7f8091a2b3c4";
    await db.query(`CREATE TABLE ${BACKUP}.organizations (id uuid PRIMARY KEY, name text)`);
    try {
      await db.query(`INSERT INTO ${BACKUP}.organizations VALUES ($1, 'deleted since the backup')`, [gone]);
      const e = await errorOf(db.query(`SELECT guardian.erase_user($1)`, [gone]));
      expect(e.message).toBe(`guardian.erase_user: ${gone} is an organization's id (found in ${BACKUP}.organizations.id), not a user's; nothing was changed`);
    } finally {
      await db.query(`DROP TABLE ${BACKUP}.organizations`);
    }
  });

  it("refuses an id that is no user's (in no account, profile, log or journal row), and says where it looked", async () => {
    const stranger = "9f8e7d6c-5b4a-4392-8180-7f6e5d4c3b2a";
    const e = await errorOf(db.query(`SELECT guardian.erase_user($1)`, [stranger]));
    expect(e.message).toBe(
      `guardian.erase_user: ${stranger} is not a user's id (not in auth.users, public.profiles, the consumption log's user_id or the journal's actor_id, and never erased before); nothing was changed`,
    );
    expect(await db.query(`SELECT 1 FROM guardian.migration_journal WHERE step = 'erasure'`)).toEqual([]);
  });

  it("pseudonymises the user id in the audit, never in the backups, returns counts per table and where the id was kept", async () => {
    expect((await traces(USER)).length).toBeGreaterThan(0);
    const backupBefore = await backupFingerprint();
    const r = await asUser(db, { role: "service_role", sub: USER }, (c) => c.query(`SELECT guardian.erase_user($1) AS r`, [USER])).then((x) => x.rows[0].r);
    expect(r.rows).toEqual({
      "guardian.idempotency_keys": 1,
      "guardian.migration_journal": 1,
      "public.credit_consumption_logs": 2,
    });
    expect(r.total).toBe(4);
    // The backup rollback uses is untouched, and the erasure says where the id is still kept.
    expect(r.keptInBackups).toEqual({ [`${BACKUP}.credit_consumption_logs`]: 2 });
    expect(await backupFingerprint()).toBe(backupBefore);
    expect(await traces(USER)).toEqual([`${BACKUP}.credit_consumption_logs: 2`]);

    const pseudonym = r.pseudonym as string;
    expect(pseudonym).toMatch(/^[0-9a-f-]{36}$/);
    // Keyed: not the bare md5 anyone holding the id could recompute.
    const [{ bare }] = await db.query(`SELECT md5('erased:' || $1)::uuid::text AS bare`, [USER]);
    expect(pseudonym).not.toBe(bare);
    // One pseudonym across tables, so the audit still shows one person acting.
    const logs = await db.query(`SELECT user_id::text, idempotency_key FROM public.credit_consumption_logs WHERE user_id = $1`, [pseudonym]);
    expect(logs).toHaveLength(2);
    expect(logs.map((l) => l.idempotency_key)).toContain(`chat:${pseudonym}:1`);
    const [j] = await db.query(`SELECT actor_id::text, details FROM guardian.migration_journal WHERE details->>'user' IS NOT NULL`);
    expect(j).toEqual({ actor_id: pseudonym, details: { user: pseudonym, flipped: 1 } });
    // The other user is untouched.
    expect(await traces(OTHER_USER)).toEqual([
      "guardian.idempotency_keys: 1",
      "guardian.migration_journal: 1",
      `${BACKUP}.credit_consumption_logs: 1`,
      "public.credit_consumption_logs: 1",
    ]);
    // The erasure is journalled without the original id; the operator erasing themselves is pseudonymised too.
    const [step] = await db.query(`SELECT actor_id::text, details FROM guardian.migration_journal WHERE step = 'erasure'`);
    expect(step).toEqual({ actor_id: pseudonym, details: { pseudonym, rows: r.rows, total: 4, keptInBackups: r.keptInBackups } });
  });

  it("is deterministic and idempotent: a second erasure knows the user by the journaled pseudonym, finds nothing and names the same pseudonym", async () => {
    const r1 = await db.query(`SELECT guardian.erase_user($1) AS r`, [USER]).then((x) => x[0].r);
    expect(r1.total).toBe(0);
    expect(r1.rows).toEqual({});
    const [{ user_id }] = await db.query(`SELECT user_id::text FROM public.credit_consumption_logs WHERE success = false`);
    expect(r1.pseudonym).toBe(user_id);
  });

  it("keeps the pseudonymisation key from service_role", async () => {
    const e = await errorOf(asUser(db, { role: "service_role" }, (c) => c.query("SELECT key FROM guardian.erasure_key")));
    expect(e.message).toBe("permission denied for table erasure_key");
  });

  it("refuses a NULL id", async () => {
    const e = await errorOf(db.query(`SELECT guardian.erase_user(NULL)`));
    expect(e.message).toBe("guardian.erase_user: p_user_id must not be NULL");
  });

  it("applies again without change (idempotent files)", async () => {
    const [{ key: before }] = await db.query("SELECT key FROM guardian.erasure_key");
    await applySqlFiles(db, ALL_AUDIT_FILES);
    const [{ key: after }] = await db.query("SELECT key FROM guardian.erasure_key");
    expect(after).toBe(before);
  });
});
