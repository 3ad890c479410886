/**
 * Backup exports are owner-only whatever the umask (issue 12, finding 3), through the real engine: `pulumi up` run
 * with umask 0 (inherited by the CLI, the language host and the provider processes) writes the export 0600 in 0700
 * folders and records the modes in manifest.json and guardian.backups; an export someone made world-readable is
 * refused by the restore check, naming the file, before anything after the backup changes.
 */
import * as fs from "fs";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Migrated, seededStack, teardown, up } from "./helpers/migration";
import { collect } from "../harness/stack";

/** A targeted up of the backup snapshot alone (with its parents): the state just before the restore check runs. */
const SNAPSHOT_ONLY = (stack: string) => [
  `urn:pulumi:${stack}::guardian-credits::pulumi:pulumi:Stack::guardian-credits-${stack}`,
  `urn:pulumi:${stack}::guardian-credits::guardian:components:Backup::backup`,
  `urn:pulumi:${stack}::guardian-credits::guardian:components:Backup$pulumi-nodejs:dynamic/guardian:Backup::backup-snapshot`,
];

const mode = (p: string) => (fs.statSync(p).mode & 0o777).toString(8);

describe("backup export permissions (real engine, umask 0)", () => {
  let m: Migrated;
  let previousUmask: number;
  let exportDir: string;
  beforeAll(async () => {
    previousUmask = process.umask(0);
    m = await seededStack(30);
  });
  afterAll(async () => {
    process.umask(previousUmask);
    await teardown(m);
  });

  it("writes the export 0600 in 0700 folders under umask 0, and the manifest and guardian.backups record the modes", async () => {
    expect(process.umask()).toBe(0);
    await m.t.stack.up({ target: SNAPSHOT_ONLY("test"), onEvent: collect(m.t) });
    const [row] = await m.db.query(`SELECT export_dir, manifest FROM guardian.backups`);
    exportDir = row.export_dir;
    const exportRoot = path.dirname(exportDir);
    expect(exportRoot).toBe(m.t.env.GUARDIAN_EXPORT_ROOT); // created by the backup, so made 0700 too
    expect({ root: mode(exportRoot), dir: mode(exportDir) }).toEqual({ root: "700", dir: "700" });
    const files = fs.readdirSync(exportDir).sort();
    expect(files).toEqual([
      "credit_actions.copy",
      "credit_consumption_logs.copy",
      "manifest.json",
      "manifest.sig",
      "organization_credits.copy",
      "organizations.copy",
    ]);
    for (const f of files) expect(mode(path.join(exportDir, f)), f).toBe("600");
    const manifest = JSON.parse(fs.readFileSync(path.join(exportDir, "manifest.json"), "utf8"));
    expect(manifest.permissions).toEqual({ directory: "0700", manifest: "0600", files: "0600" });
    expect(Object.values<any>(manifest.tables).map((t) => t.mode)).toEqual(["0600", "0600", "0600", "0600"]);
    expect(row.manifest.permissions).toEqual(manifest.permissions);
  });

  it("refuses a world-readable export at the restore check, naming the file; nothing after the backup changes", async () => {
    const file = path.join(exportDir, "organizations.copy");
    fs.chmodSync(file, 0o644);
    await expect(up(m.t)).rejects.toThrow(
      new RegExp(
        `restore check of backup guardian_backup_\\w+ FAILED[\\s\\S]*export file ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} is readable or writable by group or others \\(mode 0644\\)`,
      ),
    );
    const [state] = await m.db.query(`
      SELECT (SELECT restore_verified FROM guardian.backups) AS verified,
             (SELECT count(*)::int FROM information_schema.columns WHERE table_name = 'organization_credits' AND column_name = 'credit_model') AS model_column,
             to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)') IS NOT NULL AS v2`);
    expect(state).toEqual({ verified: false, model_column: 0, v2: false });
  });

  it("goes through once the export is owner-only again", async () => {
    fs.chmodSync(path.join(exportDir, "organizations.copy"), 0o600);
    const r = await up(m.t);
    expect(r.outputs.restoreVerified.value).toBe(true);
    expect(r.outputs.orgsMigrated.value).toBe(30);
  });
});
