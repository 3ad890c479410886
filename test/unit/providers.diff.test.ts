/**
 * Each dynamic provider's diff() called directly, as the engine calls it (olds: what the state recorded; news: what the
 * program declares now): a rotated secret (a new databaseUrl is recorded in place, nothing re-run), a change that
 * needs a replacement, drift, and no change; and guardian:ddl's retries, which stacks recorded before it was an input
 * lack, changing nothing. No database: where update() must only record the new connection, the connection strings
 * point at a closed port, so an update that tried to run anything would fail.
 */
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { backfillProvider, type BackfillInputs, type BackfillOutputs } from "../../providers/backfill";
import { backupProvider, type BackupInputs, type BackupOutputs } from "../../providers/backup";
import { restoreCheckProvider, type RestoreCheckInputs, type RestoreCheckOutputs } from "../../providers/restoreCheck";
import { rollbackProvider, type RollbackInputs, type RollbackOutputs } from "../../providers/rollback";
import { sqlObjectProvider, type SqlObjectInputs, type SqlObjectOutputs } from "../../providers/sqlObject";
import { verificationProvider, type VerificationInputs, type VerificationOutputs } from "../../providers/verification";

// Port 9 (discard) on loopback: nothing answers, so any connection attempt fails at once.
const OLD_URL = "postgres://postgres:old-secret@127.0.0.1:9/guardian";
const NEW_URL = "postgres://postgres:new-secret@127.0.0.1:9/guardian";
const TLS = { mode: "verify-full" as const, ca: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", caFrom: "guardian:tls.rootCert (ca.crt)" };

const changedKeys = (d: { detailedDiff?: object }) => Object.keys(d.detailedDiff ?? {}).sort();

describe("SqlObject diff (providers/sqlObject.ts)", () => {
  const inputs: SqlObjectInputs = {
    databaseUrl: OLD_URL,
    kind: "function",
    objectName: "public.answer()",
    sqlFile: "fixture/answer.sql",
    sql: "CREATE OR REPLACE FUNCTION public.answer() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    sqlSha256: "sha-1",
    probeSql: "SELECT md5(pg_get_functiondef('public.answer()'::regprocedure)) AS fingerprint",
    dropSql: "DROP FUNCTION IF EXISTS public.answer()",
    lockTimeoutMs: 2000,
    retries: 10,
  };
  const recorded: SqlObjectOutputs = {
    ...inputs,
    dropSql: inputs.dropSql ?? "",
    lockTimeoutMs: 2000,
    retries: 10,
    appliedFingerprint: "fp-1",
    liveFingerprint: "fp-1",
    appliedAt: "2026-11-25T10:00:00.000Z",
  };

  it("no change: nothing to do", async () => {
    const d = await sqlObjectProvider.diff("function:public.answer()", recorded, inputs);
    expect(d.changes).toBe(false);
    expect(d.replaces).toEqual([]);
  });

  it("a rotated secret is an update that records the new connection string and runs no SQL", async () => {
    const news = { ...inputs, databaseUrl: NEW_URL };
    const d = await sqlObjectProvider.diff("function:public.answer()", recorded, news);
    expect([d.changes, d.replaces, changedKeys(d)]).toEqual([true, [], ["databaseUrl"]]);
    // The database is unreachable: an update that ran the SQL would fail.
    const { outs } = await sqlObjectProvider.update("function:public.answer()", recorded, news);
    expect(outs).toEqual({ ...recorded, databaseUrl: NEW_URL });
    // New TLS settings are recorded the same way.
    const withTls = { ...inputs, tls: TLS };
    expect((await sqlObjectProvider.diff("function:public.answer()", recorded, withTls)).changes).toBe(true);
    expect((await sqlObjectProvider.update("function:public.answer()", recorded, withTls)).outs).toEqual({ ...recorded, tls: TLS });
  });

  it("a new identity (kind or objectName) is a replacement, the old object dropped first", async () => {
    const d = await sqlObjectProvider.diff("function:public.answer()", recorded, { ...inputs, objectName: "public.answer2()" });
    expect([d.changes, d.replaces, d.deleteBeforeReplace]).toEqual([true, ["objectName"], true]);
    expect(d.detailedDiff?.objectName).toEqual({ kind: "update-replace", inputDiff: true });
    expect((await sqlObjectProvider.diff("function:public.answer()", recorded, { ...inputs, kind: "procedure" })).replaces).toEqual(["kind"]);
  });

  it("changed SQL (or probe, drop, check) is an update in place", async () => {
    const d = await sqlObjectProvider.diff("function:public.answer()", recorded, { ...inputs, sql: "...", sqlSha256: "sha-2" });
    expect([d.changes, d.replaces, changedKeys(d)]).toEqual([true, [], ["sql"]]);
    expect(changedKeys(await sqlObjectProvider.diff("x", recorded, { ...inputs, checkSql: "SELECT 1" }))).toEqual(["probeSql"]);
  });

  it("drift: a live object edited by hand (refresh recorded another liveFingerprint) is an update that re-applies", async () => {
    const d = await sqlObjectProvider.diff("function:public.answer()", { ...recorded, liveFingerprint: "fp-edited" }, inputs);
    expect([d.changes, d.replaces, changedKeys(d)]).toEqual([true, [], ["liveFingerprint"]]);
    expect(d.detailedDiff?.liveFingerprint).toEqual({ kind: "update", inputDiff: false });
  });

  it("guardian:ddl is not a change: another lock timeout or retries, or state recorded without them", async () => {
    const { lockTimeoutMs: _l, retries: _r, ...older } = recorded;
    expect((await sqlObjectProvider.diff("x", older, inputs)).changes).toBe(false);
    expect((await sqlObjectProvider.diff("x", recorded, { ...inputs, lockTimeoutMs: 500, retries: 3 })).changes).toBe(false);
  });
});

describe("Backup diff (providers/backup.ts)", () => {
  const inputs: BackupInputs = {
    databaseUrl: OLD_URL,
    exportRoot: "/var/backups/guardian",
    tables: [{ name: "organizations", key: "id" }],
    databaseLabel: "postgres://postgres:***@127.0.0.1:9/guardian",
    bootstrapSql: "CREATE SCHEMA IF NOT EXISTS guardian",
  };
  const recorded: BackupOutputs = {
    ...inputs,
    backupId: "guardian_backup_20261125100000_abcdef",
    schemaName: "guardian_backup_20261125100000_abcdef",
    exportDir: "/var/backups/guardian/guardian_backup_20261125100000_abcdef",
    manifestPath: "/var/backups/guardian/guardian_backup_20261125100000_abcdef/manifest.json",
    rowCounts: { organizations: 3 },
    checksums: { organizations: "42" },
    fileSha256: { organizations: "ab" },
    functionsCaptured: [],
    createdAt: "2026-11-25T10:00:00.000Z",
    durationMs: 10,
    manifestSigned: true,
  };

  it("no change: a backup is a fact about the past", async () => {
    expect((await backupProvider.diff(recorded.backupId, recorded, inputs)).changes).toBe(false);
    // Not even a new export folder or bootstrap SQL: only the table list makes another backup.
    expect((await backupProvider.diff(recorded.backupId, recorded, { ...inputs, exportRoot: "/elsewhere", bootstrapSql: "--" })).changes).toBe(false);
  });

  it("a rotated secret is recorded in place; the backup is untouched", async () => {
    const news = { ...inputs, databaseUrl: NEW_URL };
    const d = await backupProvider.diff(recorded.backupId, recorded, news);
    expect([d.changes, d.replaces]).toEqual([true, []]);
    expect((await backupProvider.update(recorded.backupId, recorded, news)).outs).toEqual({ ...recorded, databaseUrl: NEW_URL });
  });

  it("another table list is a new backup (replacement, the old one retained: created first)", async () => {
    const d = await backupProvider.diff(recorded.backupId, recorded, { ...inputs, tables: [...inputs.tables, { name: "credit_actions", key: "action_type" }] });
    expect([d.changes, d.replaces, d.deleteBeforeReplace]).toEqual([true, ["tables"], false]);
  });

  it("drift: a dropped backup schema is found by read (gone), not by diff", async () => {
    // read() needs the database; diff of what a refresh kept is no change.
    expect((await backupProvider.diff(recorded.backupId, { ...recorded }, inputs)).changes).toBe(false);
  });
});

describe("BackupRestoreCheck diff (providers/restoreCheck.ts)", () => {
  const inputs: RestoreCheckInputs = { databaseUrl: OLD_URL, backupId: "guardian_backup_1", manifestPath: "/x/guardian_backup_1/manifest.json" };
  const recorded: RestoreCheckOutputs = { ...inputs, restoreVerified: true, tablesChecked: { organizations: 3 }, checkedAt: "2026-11-25T10:00:00.000Z" };

  it("no change", async () => {
    expect(await restoreCheckProvider.diff("r", recorded, inputs)).toMatchObject({ changes: false, replaces: [] });
  });

  it("a rotated secret is recorded in place, without checking again", async () => {
    const news = { ...inputs, databaseUrl: NEW_URL };
    expect(await restoreCheckProvider.diff("r", recorded, news)).toMatchObject({ changes: true, replaces: [] });
    expect((await restoreCheckProvider.update("r", recorded, news)).outs).toEqual({ ...recorded, databaseUrl: NEW_URL });
  });

  it("another backup is a new check (replacement)", async () => {
    const d = await restoreCheckProvider.diff("r", recorded, { ...inputs, backupId: "guardian_backup_2" });
    expect([d.changes, d.replaces, d.deleteBeforeReplace]).toEqual([true, ["restoreVerified"], true]);
  });

  it("drift: a verification a refresh found withdrawn is made again (replacement)", async () => {
    const d = await restoreCheckProvider.diff("r", { ...recorded, restoreVerified: false }, inputs);
    expect([d.changes, d.replaces]).toEqual([true, ["restoreVerified"]]);
  });
});

describe("Backfill diff (providers/backfill.ts)", () => {
  const inputs: BackfillInputs = {
    databaseUrl: OLD_URL,
    batchSql: "SELECT 1",
    batchSqlSha256: "batch-1",
    batchSize: 1000,
    pauseMs: 0,
    rulesSha256: "rules-1",
    split: { ai: 0.4, whatsapp: 0.3, email: 0.2, sms: 0.1 },
    backupId: "guardian_backup_1",
    restoreVerified: true,
    requireVerifiedBackup: true,
    pendingOrgs: 0,
    orgsToMigrate: {},
    lockTimeoutMs: 2000,
    retries: 10,
  };
  const recorded: BackfillOutputs = {
    ...inputs,
    rowsBackfilled: 10000,
    orgsPerRule: { pro: 10000 },
    batches: 10,
    durationMs: 1000,
    orgsPerSecond: 10000,
    negativeBalanceOrgs: [],
    finishedAt: "2026-11-25T10:00:00.000Z",
  };

  it("no change once every org is migrated", async () => {
    expect(await backfillProvider.diff("b", recorded, inputs)).toMatchObject({ changes: false, replaces: [] });
  });

  it("guardian:ddl.retries, new as an input, changes nothing on a stack recorded without it (nor another value)", async () => {
    const { retries: _r, ...older } = recorded;
    expect((await backfillProvider.diff("b", older, inputs)).changes).toBe(false);
    expect((await backfillProvider.diff("b", recorded, { ...inputs, retries: 3, lockTimeoutMs: 500 })).changes).toBe(false);
  });

  it("a rotated secret is recorded in place; no batch runs", async () => {
    const news = { ...inputs, databaseUrl: NEW_URL, tls: TLS };
    expect(await backfillProvider.diff("b", recorded, news)).toMatchObject({ changes: true, replaces: [] });
    expect((await backfillProvider.update("b", recorded, news)).outs).toEqual({ ...recorded, databaseUrl: NEW_URL, tls: TLS });
  });

  it("never a replacement: another backup or batch SQL resumes in place", async () => {
    const d = await backfillProvider.diff("b", recorded, { ...inputs, backupId: "guardian_backup_2", batchSqlSha256: "batch-2" });
    expect([d.changes, d.replaces, changedKeys(d)]).toEqual([true, [], ["backupId", "batchSql"]]);
  });

  it("drift: orgs found unified again (written meanwhile, or a partial run) are an update that resumes", async () => {
    const d = await backfillProvider.diff("b", recorded, { ...inputs, pendingOrgs: 12, orgsToMigrate: { pro: 12 } });
    expect([d.changes, d.replaces, changedKeys(d)]).toEqual([true, [], ["pendingOrgs"]]);
  });
});

describe("Rollback diff (providers/rollback.ts)", () => {
  const sql = { stopAllocation: "-", lockBatch: "-", switchBatch: "-", checkSwitch: "-", restoreV1: "-", pinV1: "-", safeV1: "-" };
  const inputs: RollbackInputs = { databaseUrl: OLD_URL, sql, rollbackFunction: "v1", sqlSha256: "sql-1", batchSize: 5000, lockTimeoutMs: 2000, retries: 10 };
  const recorded: RollbackOutputs = {
    ...inputs,
    rolledBack: true,
    backupId: "guardian_backup_1",
    orgsSwitched: 10000,
    unifiedValuesChanged: 0,
    durationMs: 1000,
    v1DefinitionMd5: "md5",
    unifiedValuesKept: true,
    v1SearchPathPinned: true,
    pricesRestored: 0,
    functionRestored: "v1",
    v1Weaknesses: [],
  };

  it("no change: a rollback is done once", async () => {
    expect(await rollbackProvider.diff("r", recorded, inputs)).toMatchObject({ changes: false, replaces: [] });
    // Not even other SQL or settings: a new rollback is a new resource (the program declares it in the unified model).
    expect((await rollbackProvider.diff("r", recorded, { ...inputs, sqlSha256: "sql-2", rollbackFunction: "safe", batchSize: 10 })).changes).toBe(false);
  });

  it("guardian:ddl.retries, new as an input, changes nothing on a stack recorded without it", async () => {
    const { retries: _r, ...older } = recorded;
    expect((await rollbackProvider.diff("r", older, inputs)).changes).toBe(false);
  });

  it("a rotated secret is recorded in place; nothing is rolled back again", async () => {
    const news = { ...inputs, databaseUrl: NEW_URL };
    expect(await rollbackProvider.diff("r", recorded, news)).toMatchObject({ changes: true, replaces: [] });
    expect((await rollbackProvider.update("r", recorded, news)).outs).toEqual({ ...recorded, databaseUrl: NEW_URL });
  });

  it("never a replacement, and no drift: read keeps what was recorded", async () => {
    expect((await rollbackProvider.diff("r", recorded, { ...inputs, lockTimeoutMs: 1 })).replaces).toEqual([]);
    expect(await rollbackProvider.read("r", recorded)).toEqual({ id: "r", props: recorded });
  });
});

describe("Verification diff (providers/verification.ts)", () => {
  const inputs: VerificationInputs = {
    databaseUrl: OLD_URL,
    model: "multi",
    sql: "-",
    sqlSha256: "sql-1",
    trialCallsSql: "SELECT 1",
    profileRoleColumn: "role",
    isolationTables: [{ table: "public.organizations", orgColumn: "id" }],
    upstream: { functions: "fp-1", backfill: 10000 },
  };
  const recorded: VerificationOutputs = { ...inputs, facts: {}, violations: [], liveCheck: "ok", verifiedAt: "2026-11-25T10:00:00.000Z" };

  it("no change", async () => {
    expect(await verificationProvider.diff("v", recorded, inputs)).toMatchObject({ changes: false, replaces: [] });
  });

  it("a rotated secret is an update (verified again with the new credential), never a replacement", async () => {
    const d = await verificationProvider.diff("v", recorded, { ...inputs, databaseUrl: NEW_URL });
    expect([d.changes, d.replaces, changedKeys(d)]).toEqual([true, [], ["databaseUrl"]]);
  });

  it("what it verifies changed (model, SQL, upstream): an update in place, never a replacement", async () => {
    const d = await verificationProvider.diff("v", recorded, { ...inputs, model: "unified", upstream: { functions: "fp-2", backfill: 10000 } });
    expect([d.changes, d.replaces, changedKeys(d)]).toEqual([true, [], ["model", "upstream"]]);
  });

  it("drift: a refresh that found the trial calls or isolation failing is an update that verifies again", async () => {
    const d = await verificationProvider.diff("v", { ...recorded, liveCheck: "failed: tenant isolation" }, inputs);
    expect([d.changes, d.replaces, changedKeys(d)]).toEqual([true, [], ["liveCheck"]]);
    // State recorded before liveCheck existed is not drift.
    const { liveCheck: _l, ...older } = recorded;
    expect((await verificationProvider.diff("v", older, inputs)).changes).toBe(false);
  });
});

describe("the providers as Pulumi stores them", () => {
  const providers = { sqlObjectProvider, backupProvider, restoreCheckProvider, backfillProvider, rollbackProvider, verificationProvider };

  it("serialize with no secret captured, requiring pg and Node's modules only at run time (never @pulumi/pulumi)", async () => {
    for (const [name, p] of Object.entries(providers)) {
      const s = await pulumi.runtime.serializeFunction(() => p, { allowSecrets: false });
      const required = [...new Set([...s.text.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]))].sort();
      expect(
        required.filter((r) => !["crypto", "fs", "path", "pg", "pg-copy-streams", "stream", "stream/promises"].includes(r)),
        name,
      ).toEqual([]);
      expect(s.text, name).toContain("INSERT INTO guardian.migration_journal"); // the kernel's journal writer travels with it
    }
  });
});
