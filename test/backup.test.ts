/**
 * The backup: a consistent snapshot and an export whose restore is proven before anything changes.
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

describe("backup and restore check", () => {
  let m: Migrated;
  beforeAll(async () => {
    m = await seededStack(40);
  });
  afterAll(() => teardown(m));

  it("writes one export file per table and a manifest with row counts and sha256", async () => {
    await m.t.stack.up({ target: SNAPSHOT_ONLY("test"), onEvent: collect(m.t) });
    const outs = await m.t.stack.outputs();
    expect(outs.backupId.value).toMatch(/^guardian_backup_/);
    expect(outs.restoreVerified?.value).toBeUndefined(); // the restore check was not targeted
    const [row] = await m.db.query(`SELECT backup_id, export_dir, manifest, restore_verified FROM guardian.backups`);
    const manifest = JSON.parse(fs.readFileSync(path.join(row.export_dir, "manifest.json"), "utf8"));
    expect(Object.keys(manifest.tables).sort()).toEqual(["credit_actions", "credit_consumption_logs", "organization_credits", "organizations"]);
    const [{ n }] = await m.db.query(`SELECT count(*)::int n FROM public.organization_credits`);
    expect(manifest.tables.organization_credits.rows).toBe(n);
    for (const [t, info] of Object.entries<any>(manifest.tables)) {
      const file = path.join(row.export_dir, info.file);
      expect(fs.readFileSync(file, "utf8").split("\n").filter(Boolean)).toHaveLength(info.rows);
      expect(info.sha256, t).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(row.restore_verified).toBe(false); // the restore check has not run yet
  });

  it("refuses to go on when the export was tampered with: nothing after the backup is changed", async () => {
    const [row] = await m.db.query(`SELECT backup_id, export_dir FROM guardian.backups`);
    const manifestPath = path.join(row.export_dir, "manifest.json");
    const manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
    // Tamper with a balance and cover the tracks in the manifest: only a real restore can tell.
    const file = path.join(row.export_dir, manifest.tables.organization_credits.file);
    const lines = fs.readFileSync(file, "utf8").split("\n");
    const cols = lines[0].split("\t");
    cols[3] = String(Number(cols[3]) + 1000); // credits_remaining
    lines[0] = cols.join("\t");
    fs.writeFileSync(file, lines.join("\n"));
    manifest.tables.organization_credits.sha256 = require("crypto").createHash("sha256").update(fs.readFileSync(file)).digest("hex");
    fs.writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));

    await expect(up(m.t)).rejects.toThrow(/restore check of backup guardian_backup_\w+ FAILED[\s\S]*organization_credits: restored \d+ rows with checksum/);
    const [state] = await m.db.query(`
      SELECT (SELECT restore_verified FROM guardian.backups) AS verified,
             (SELECT count(*)::int FROM information_schema.columns WHERE table_name = 'organization_credits' AND column_name = 'credit_model') AS model_column,
             to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)') IS NOT NULL AS v2`);
    expect(state).toEqual({ verified: false, model_column: 0, v2: false });
  });
});
