/**
 * Adversarial suite (issue 12, finding 3), the on-disk backup export: every tenant's organizations, balances and
 * consumption history. Written owner-only whatever the umask; a copy that group or others can read is refused by the
 * restore check (providers/restoreCheck.ts) and by the restore (operations/shared/restoreExport.ts), naming the file, and nothing
 * is written. The providers are called directly (the real code, no engine); test/export-permissions.test.ts runs the
 * same through `pulumi up`.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKUP_TABLES } from "../../components/backup";
import { redactUrl } from "../../lib/db";
import { restoreExport, RestoreError } from "../../operations/shared/restoreExport";
import { loadSql } from "../../lib/sql";
import { backupProvider } from "../../providers/backup";
import { restoreCheckProvider } from "../../providers/restoreCheck";
import { freshDb, type TestDb } from "../helpers/db";
import { battlefield, type Battlefield, state } from "./fixture";

let bf: Battlefield;
const extra: TestDb[] = [];
beforeAll(async () => {
  bf = await battlefield("adv_export");
});
afterAll(async () => {
  for (const d of extra) await d.drop();
  await bf?.drop();
});

const mode = (p: string) => fs.statSync(p).mode & 0o777;

describe("backup exports", () => {
  it("are written 0600 in 0700 folders even under umask 0, and the manifest records the modes", async () => {
    const root = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "guardian-umask0-")), "nested", "exports");
    const previous = process.umask(0);
    let outs: any;
    try {
      ({ outs } = await backupProvider.create!({
        databaseUrl: bf.db.url,
        exportRoot: root,
        tables: BACKUP_TABLES,
        databaseLabel: redactUrl(bf.db.url),
        bootstrapSql: loadSql("schema/01_guardian_schema.sql").text,
      }));
    } finally {
      process.umask(previous);
    }
    expect(process.umask()).toBe(previous);
    // Every folder the backup created (nested/, exports/, the backup's own) and every file.
    for (const d of [path.dirname(root), root, outs.exportDir]) expect(mode(d).toString(8), d).toBe("700");
    const files = fs.readdirSync(outs.exportDir);
    // No passphrase in this process: the export is unsigned (test/adversarial/signed-exports.test.ts signs one).
    expect(files.sort()).toEqual(["credit_actions.copy", "credit_consumption_logs.copy", "manifest.json", "organization_credits.copy", "organizations.copy"]);
    for (const f of files) expect(mode(path.join(outs.exportDir, f)).toString(8), f).toBe("600");
    const manifest = JSON.parse(fs.readFileSync(outs.manifestPath, "utf8"));
    expect(manifest.permissions).toEqual({ directory: "0700", manifest: "0600", files: "0600" });
    for (const t of Object.values<any>(manifest.tables)) expect(t.mode).toBe("0600");
    const [row] = await bf.db.query(`SELECT manifest FROM guardian.backups WHERE backup_id = $1`, [outs.backupId]);
    expect(row.manifest.permissions).toEqual(manifest.permissions);
    fs.rmSync(path.dirname(path.dirname(root)), { recursive: true, force: true });
  });

  it("a world-readable export file is refused by the restore check, naming the file; the backup is marked unverified", async () => {
    const file = path.join(bf.exportDir, "organization_credits.copy");
    fs.chmodSync(file, 0o644);
    try {
      const before = await state(bf.db);
      const e = await restoreCheckProvider.create!({ databaseUrl: bf.db.url, backupId: bf.backupId, manifestPath: bf.manifestPath }).then(
        () => undefined,
        (x: Error) => x,
      );
      expect(e?.message).toContain(`restore check of backup ${bf.backupId} FAILED; nothing after the backup was changed`);
      expect(e?.message).toContain(
        `export file ${file} is readable or writable by group or others (mode 0644); a backup export holds every tenant's data: chmod 600 ${file}`,
      );
      const [{ restore_verified }] = await bf.db.query(`SELECT restore_verified FROM guardian.backups WHERE backup_id = $1`, [bf.backupId]);
      expect(restore_verified).toBe(false);
      // Nothing but that verdict (and its journal entry) changed: balances, logs, the backup schema itself.
      const after = await state(bf.db);
      expect(after.balances).toEqual(before.balances);
      for (const t of Object.keys(before.md5).filter((x) => x !== "guardian.backups" && x !== "guardian.migration_journal"))
        expect(after.md5[t], t).toBe(before.md5[t]);
      expect(after.rows["guardian.migration_journal"]).toBe(before.rows["guardian.migration_journal"] + 1);
    } finally {
      fs.chmodSync(file, 0o600);
    }
  });

  it("a group-readable export folder or manifest is refused by the restore check too", async () => {
    fs.chmodSync(bf.exportDir, 0o750);
    fs.chmodSync(bf.manifestPath, 0o640);
    try {
      const e = await restoreCheckProvider.create!({ databaseUrl: bf.db.url, backupId: bf.backupId, manifestPath: bf.manifestPath }).then(
        () => undefined,
        (x: Error) => x,
      );
      expect(e?.message).toContain(`export folder ${bf.exportDir} is open to group or others (mode 0750)`);
      expect(e?.message).toContain(`export file ${bf.manifestPath} is readable or writable by group or others (mode 0640)`);
    } finally {
      fs.chmodSync(bf.exportDir, 0o700);
      fs.chmodSync(bf.manifestPath, 0o600);
    }
    // Owner-only again: the same export passes.
    const ok = await restoreCheckProvider.create!({ databaseUrl: bf.db.url, backupId: bf.backupId, manifestPath: bf.manifestPath });
    expect(ok.outs.restoreVerified).toBe(true);
  });

  it("a world-readable export is refused by the restore (rehearsal, disaster) before anything is written", async () => {
    const file = path.join(bf.exportDir, "credit_consumption_logs.copy");
    fs.chmodSync(file, 0o604);
    const target = await freshDb({ baseline: false, prefix: "adv_restore" });
    extra.push(target);
    try {
      const e = await restoreExport(bf.exportDir, target.url).catch((x) => x);
      expect(e).toBeInstanceOf(RestoreError);
      expect(e.message).toMatch(
        /^restore of guardian_backup_\w+ refused, nothing was written:\n {2}- export file \S+credit_consumption_logs\.copy is readable or writable by group or others \(mode 0604\)/,
      );
      const [{ n }] = await target.query(`SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'public'`);
      expect(n).toBe(0);
    } finally {
      fs.chmodSync(file, 0o600);
    }
  });
});
