/**
 * BackupRestoreCheck: proves a backup can be restored before anything is changed.
 *
 *   create  refuses an export that group or others can read or enter (folder not 0700, manifest.json or a table file
 *           not 0600: the export holds every tenant's data), naming each file and its mode; then
 *           reads manifest.json; for each table checks the export file's sha256 against the manifest, loads the file
 *           into a scratch schema guardian_restore_check_<hex> (COPY FROM), and compares the restored rows' checksum
 *           with the backup schema's and the manifest's. Any difference fails the update, naming the table, and marks
 *           the backup unverified; nothing that depends on this resource (schema, functions, backfill) runs. The
 *           scratch schema is always dropped.
 *   read    reports the recorded verification; a backup whose row was removed reads as gone.
 *   diff    a different backup replaces the check; a rotated connection string is recorded in place.
 *   delete  nothing to remove (the scratch schema never outlives create).
 */
import * as pulumi from "@pulumi/pulumi";
import { connectClient, connectionChanged, recordConnection } from "../lib/pgConnection";
import { ConnectionInputs, connectionProps } from "./connectionInputs";

export interface RestoreCheckArgs extends ConnectionInputs {
  backupId: pulumi.Input<string>;
  manifestPath: pulumi.Input<string>;
}

export const restoreCheckProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: any, news: any) {
    const changed = olds.backupId !== news.backupId || olds.manifestPath !== news.manifestPath;
    // A verification that a refresh found withdrawn is run again.
    const unverified = olds.restoreVerified !== true;
    const replace = changed || unverified;
    const rotated = connectionChanged(olds, news); // recorded in place (update)
    return { changes: replace || rotated, replaces: replace ? ["restoreVerified"] : [], deleteBeforeReplace: true };
  },

  async update(_id: string, olds: any, news: any) {
    return { outs: recordConnection(olds, news) };
  },

  async create(inputs: any) {
    const { from: copyFrom } = require("pg-copy-streams");
    const crypto = require("crypto");
    const fs = require("fs");
    const path = require("path");
    const { pipeline } = require("stream/promises");

    const say = (s: string) => console.log(`restore-check ${inputs.backupId}: ${s}`);
    const manifest = JSON.parse(fs.readFileSync(inputs.manifestPath, "utf8"));
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
    for (const f of [inputs.manifestPath, ...Object.values<any>(manifest.tables).map((m) => path.join(dir, m.file))]) {
      if (fs.existsSync(f) && fs.statSync(f).mode & 0o077) {
        problems.push(`export file ${f} is readable or writable by group or others (mode ${mode(f)}); a backup export holds every tenant's data: chmod 600 ${f}`);
      }
    }
    const scratch = `guardian_restore_check_${crypto.randomBytes(4).toString("hex")}`;
    const c = await connectClient(inputs.databaseUrl, inputs.tls, { application_name: "guardian-credits:restore-check" });
    const checked: Record<string, number> = {};
    try {
      await c.query(`CREATE SCHEMA ${scratch}`);
      for (const [table, m] of Object.entries<any>(manifest.tables)) {
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
        } catch (e: any) {
          problems.push(`${table}: export does not load: ${e.message}`);
          continue;
        }
        const sum = `SELECT count(*)::bigint AS n, coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text AS checksum FROM %s t`;
        const restored = (await c.query(sum.replace("%s", `${scratch}.${table}`))).rows[0];
        const original = (await c.query(sum.replace("%s", `${inputs.backupId}.${table}`))).rows[0];
        checked[table] = Number(restored.n);
        if (restored.checksum !== original.checksum || Number(restored.n) !== Number(original.n)) {
          problems.push(`${table}: restored ${restored.n} rows with checksum ${restored.checksum}, backup schema has ${original.n} rows with checksum ${original.checksum}`);
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
      await c.query(
        `DO $j$ BEGIN IF to_regclass('guardian.migration_journal') IS NOT NULL THEN
           INSERT INTO guardian.migration_journal (step, object_name, details)
           VALUES ('restore_check', '${inputs.backupId}', jsonb_build_object('verified', ${verified}, 'tables', ${Object.keys(checked).length}));
         END IF; END $j$`,
      );
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

  async read(id: string, props: any) {
    const c = await connectClient(props.databaseUrl, props.tls, { application_name: "guardian-credits:restore-check" });
    try {
      const r = await c.query(
        `SELECT restore_verified FROM guardian.backups WHERE backup_id = $1 AND to_regclass('guardian.backups') IS NOT NULL`,
        [props.backupId],
      ).catch(() => ({ rows: [] as any[] }));
      if (!r.rows.length) return { id: "" as any, props: {} };
      return { id, props: { ...props, restoreVerified: r.rows[0].restore_verified === true } };
    } finally {
      await c.end().catch(() => undefined);
    }
  },

  async delete() {
    // Nothing persists beyond the recorded verification, which belongs to the backup.
  },
};

/** Type token: pulumi-nodejs:dynamic/guardian:BackupRestoreCheck. */
export class BackupRestoreCheck extends pulumi.dynamic.Resource {
  declare readonly restoreVerified: pulumi.Output<boolean>;
  declare readonly tablesChecked: pulumi.Output<Record<string, number>>;
  declare readonly checkedAt: pulumi.Output<string>;

  constructor(name: string, args: RestoreCheckArgs, opts?: pulumi.CustomResourceOptions) {
    const { props, secretOutputs } = connectionProps(args);
    super(
      restoreCheckProvider,
      name,
      { ...props, restoreVerified: undefined, tablesChecked: undefined, checkedAt: undefined },
      { ...opts, additionalSecretOutputs: secretOutputs },
      "guardian",
      "BackupRestoreCheck",
    );
  }
}
