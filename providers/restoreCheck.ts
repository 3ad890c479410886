/**
 * BackupRestoreCheck: proves a backup can be restored before anything is changed.
 *
 *   create  refuses an export that group or others can read or enter (folder not 0700, manifest.json or a table file
 *           not 0600: the export holds every tenant's data), naming each file and its mode; then
 *           checks manifest.sig (lib/manifestSignature.ts) when the stack has a passphrase;
 *           reads manifest.json; for each table checks the export file's sha256 against the manifest, loads the file
 *           into a scratch schema guardian_restore_check_<hex> (COPY FROM), and compares the restored rows' checksum
 *           with the backup schema's and the manifest's. Any difference fails the update, naming the table, and marks
 *           the backup unverified; nothing that depends on this resource (schema, functions, backfill) runs. The
 *           scratch schema is always dropped.
 *   read    reports the recorded verification; a backup whose row was removed reads as gone.
 *   diff    a different backup replaces the check; a rotated connection string is recorded in place.
 *   delete  nothing to remove (the scratch schema never outlives create).
 */
import type { Submittable } from "pg";
import type { Writable } from "stream";
import {
  connectedResource,
  recorded,
  type RecordedBy,
  connect,
  connectionChanged,
  diffOf,
  journal,
  type Provider,
  recordConnection,
  type ResourceArgs,
  withConnection,
} from "./kernel";
import type { Connection } from "./kernel";
import { manifestKey, manifestSignatureProblem } from "../lib/manifestSignature";

export interface RestoreCheckInputs extends Connection {
  backupId: string;
  manifestPath: string;
}

/** What the restore check records beyond its inputs: the resource's outputs, declared once. */
export const RESTORE_CHECK_OUTPUTS = {
  restoreVerified: recorded<boolean>(),
  /** Rows restored per table. */
  tablesChecked: recorded<Record<string, number>>(),
  checkedAt: recorded<string>(),
};

export type RestoreCheckOutputs = RestoreCheckInputs & RecordedBy<typeof RESTORE_CHECK_OUTPUTS>;

export type RestoreCheckArgs = ResourceArgs<RestoreCheckInputs>;

/** What the restore check reads of the backup's manifest.json (providers/backup.ts writes it). */
interface Manifest {
  backupId: string;
  tables: Record<string, { file: string; sha256: string; checksum: string }>;
}

type Sums = { n: string; checksum: string };

export const restoreCheckProvider: Provider<RestoreCheckInputs, RestoreCheckOutputs> = {
  async diff(_id, olds, news) {
    const changed = olds.backupId !== news.backupId || olds.manifestPath !== news.manifestPath;
    // A verification that a refresh found withdrawn is run again.
    const unverified = olds.restoreVerified !== true;
    const replace = changed || unverified;
    // A rotated connection string is recorded in place (update).
    return diffOf(connectionChanged(olds, news) ? ["databaseUrl"] : [], { replaces: replace ? ["restoreVerified"] : [], deleteBeforeReplace: true });
  },

  async update(_id, olds, news) {
    return { outs: recordConnection(olds, news) };
  },

  async create(inputs) {
    const { from: copyFrom } = require("pg-copy-streams") as { from: (sql: string) => Submittable & Writable };
    const crypto: typeof import("crypto") = require("crypto");
    const fs: typeof import("fs") = require("fs");
    const path: typeof import("path") = require("path");
    const { pipeline }: typeof import("stream/promises") = require("stream/promises");

    const say = (s: string) => console.log(`restore-check ${inputs.backupId}: ${s}`);
    const manifest = JSON.parse(fs.readFileSync(inputs.manifestPath, "utf8")) as Manifest;
    if (manifest.backupId !== inputs.backupId) {
      throw new Error(`restore check: manifest ${inputs.manifestPath} belongs to ${manifest.backupId}, not ${inputs.backupId}`);
    }
    const dir = path.dirname(inputs.manifestPath);
    const problems: string[] = [];
    // The export holds every tenant's organizations, balances and consumption history: owner only, or it is refused.
    const mode = (p: string) => (fs.statSync(p).mode & 0o777).toString(8).padStart(4, "0");
    if (fs.statSync(dir).mode & 0o077) {
      problems.push(`export folder ${dir} is open to group or others (mode ${mode(dir)}); a backup export holds every tenant's data: chmod 700 ${dir}`);
    }
    for (const f of [inputs.manifestPath, ...Object.values(manifest.tables).map((m) => path.join(dir, m.file))]) {
      if (fs.existsSync(f) && fs.statSync(f).mode & 0o077) {
        problems.push(
          `export file ${f} is readable or writable by group or others (mode ${mode(f)}); a backup export holds every tenant's data: chmod 600 ${f}`,
        );
      }
    }
    // The manifest is the one the backup signed (with the key this process derives from the stack's passphrase; an
    // export made without one is unsigned, and so is checked without it).
    const key = manifestKey();
    const unsigned = key ? manifestSignatureProblem(dir, key) : undefined;
    if (unsigned) problems.push(unsigned);
    const scratch = `guardian_restore_check_${crypto.randomBytes(4).toString("hex")}`;
    const c = await connect(inputs, "restore-check");
    const checked: Record<string, number> = {};
    try {
      await c.query(`CREATE SCHEMA ${scratch}`);
      for (const [table, m] of Object.entries(manifest.tables)) {
        const file = path.join(dir, m.file);
        if (!fs.existsSync(file)) {
          problems.push(`${table}: export file ${file} is missing`);
          continue;
        }
        const sha = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
        if (sha !== m.sha256) problems.push(`${table}: export file sha256 ${sha.slice(0, 12)}… differs from the manifest's ${m.sha256.slice(0, 12)}…`);
        await c.query(`CREATE TABLE ${scratch}.${table} (LIKE ${inputs.backupId}.${table})`);
        try {
          await pipeline(fs.createReadStream(file), c.query(copyFrom(`COPY ${scratch}.${table} FROM STDIN`)));
        } catch (e) {
          problems.push(`${table}: export does not load: ${(e as Error).message}`);
          continue;
        }
        const sum = `SELECT count(*)::bigint AS n, coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text AS checksum FROM %s t`;
        const restored = (await c.query<Sums>(sum.replace("%s", `${scratch}.${table}`))).rows[0];
        const original = (await c.query<Sums>(sum.replace("%s", `${inputs.backupId}.${table}`))).rows[0];
        checked[table] = Number(restored.n);
        if (restored.checksum !== original.checksum || Number(restored.n) !== Number(original.n)) {
          problems.push(
            `${table}: restored ${restored.n} rows with checksum ${restored.checksum}, backup schema has ${original.n} rows with checksum ${original.checksum}`,
          );
        } else if (original.checksum !== m.checksum) {
          problems.push(`${table}: backup schema checksum ${original.checksum} differs from the manifest's ${m.checksum}`);
        } else {
          say(`${table}: ${Number(restored.n).toLocaleString("en-US")} rows restored, checksums equal`);
        }
      }
    } finally {
      await c.query(`DROP SCHEMA IF EXISTS ${scratch} CASCADE`).catch(() => undefined);
    }
    try {
      const verified = problems.length === 0;
      await c.query(`UPDATE guardian.backups SET restore_verified = $2, verified_at = now() WHERE backup_id = $1`, [inputs.backupId, verified]);
      await journal(c, { step: "restore_check", objectName: inputs.backupId, details: { verified, tables: Object.keys(checked).length } }, { optional: true });
    } finally {
      await c.end().catch(() => undefined);
    }
    if (problems.length) {
      throw new Error(`restore check of backup ${inputs.backupId} FAILED; nothing after the backup was changed:\n  - ${problems.join("\n  - ")}`);
    }
    return {
      id: `${inputs.backupId}/restore-check`,
      outs: { ...inputs, restoreVerified: true, tablesChecked: checked, checkedAt: new Date().toISOString() },
    };
  },

  async read(id, props) {
    return withConnection(props, "restore-check", async (c) => {
      const r = await c
        .query<{ restore_verified: boolean | null }>(
          `SELECT restore_verified FROM guardian.backups WHERE backup_id = $1 AND to_regclass('guardian.backups') IS NOT NULL`,
          [props.backupId],
        )
        .catch(() => ({ rows: [] }));
      if (!r.rows.length) return { id: "", props: {} };
      return { id, props: { ...props, restoreVerified: r.rows[0].restore_verified === true } };
    });
  },

  async delete() {
    // Nothing persists beyond the recorded verification, which belongs to the backup.
  },
};

/** Type token: pulumi-nodejs:dynamic/guardian:BackupRestoreCheck. */
export const BackupRestoreCheck = connectedResource<RestoreCheckInputs, typeof RESTORE_CHECK_OUTPUTS, RestoreCheckArgs>(
  restoreCheckProvider,
  "BackupRestoreCheck",
  RESTORE_CHECK_OUTPUTS,
);
export type BackupRestoreCheck = InstanceType<typeof BackupRestoreCheck>;
