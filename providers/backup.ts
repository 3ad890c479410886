/**
 * Backup: a consistent snapshot of the credit tables, kept in the database and exported to disk.
 *
 *   create  creates the internal schema guardian where missing (guardian.backups, the journal), then in ONE
 *           repeatable-read transaction (one snapshot, so the four copies agree with each other): copies
 *           organizations, organization_credits, credit_actions, credit_consumption_logs into a new schema
 *           guardian_backup_<utc timestamp>_<hex>, records every consume_credits_rpc definition (the v1 that rollback
 *           restores byte for byte), row counts and row checksums in guardian.backups. Then streams each copy to
 *           <exportRoot>/<backupId>/<table>.copy (COPY text format) and writes manifest.json (rows, sha256, checksum),
 *           signed in manifest.sig with a key derived from the stack's passphrase (lib/manifestSignature.ts).
 *           Only AccessShare locks are taken: applications keep writing.
 *   read    the backup is there while its schema is; a dropped backup schema reads as gone.
 *   diff    a backup is a fact about the past: a different table list replaces it; a rotated connection string (or
 *           changed TLS settings) is recorded (update), so reads use the current credential. Nothing else changes it.
 *   update  records the new connection string and TLS settings; the backup itself is untouched.
 *   delete  does nothing: backups are never deleted by rollback or destroy (the component also sets retainOnDelete).
 */
import type * as pulumi from "@pulumi/pulumi";
import type { Client, Submittable } from "pg";
import type { Readable } from "stream";
import {
  connectionChanged,
  connectionFailures,
  connectedResource,
  recorded,
  type RecordedBy,
  diffOf,
  journal,
  type Provider,
  recordConnection,
  type ResourceArgs,
  transaction,
  withConnection,
} from "./kernel";
import type { Connection } from "./kernel";
import { manifestKey, signManifest } from "../lib/manifestSignature";

export interface BackupInputs extends Connection {
  /** Absolute folder for the on-disk exports. */
  exportRoot: string;
  /** Tables of schema public to back up, with their primary key column. */
  tables: { name: string; key: string }[];
  /** Redacted connection string recorded in the manifest. */
  databaseLabel: string;
  /** sql/schema/01_guardian_schema.sql: the internal schema holding guardian.backups and the journal. */
  bootstrapSql: string;
}

/** What the backup records beyond its inputs: the resource's outputs, declared once. */
export const BACKUP_OUTPUTS = {
  backupId: recorded<string>(),
  schemaName: recorded<string>(),
  exportDir: recorded<string>(),
  manifestPath: recorded<string>(),
  rowCounts: recorded<Record<string, number>>(),
  checksums: recorded<Record<string, string>>(),
  fileSha256: recorded<Record<string, string>>(),
  functionsCaptured: recorded<string[]>(),
  createdAt: recorded<string>(),
  durationMs: recorded<number>(),
  /** Whether manifest.sig was written (a passphrase was in the environment). */
  manifestSigned: recorded<boolean>(),
};

export type BackupOutputs = BackupInputs & RecordedBy<typeof BACKUP_OUTPUTS>;

export type BackupArgs = ResourceArgs<BackupInputs>;

/**
 * Modes of the on-disk export: owner only (operations/shared/restoreExport.ts and the restore check refuse anything wider). Plain
 * consts exported by name, so the serialized provider captures the numbers, not this module's `exports`.
 */
const EXPORT_DIR_MODE = 0o700;
const EXPORT_FILE_MODE = 0o600;
export { EXPORT_DIR_MODE, EXPORT_FILE_MODE };

export const backupProvider: Provider<BackupInputs, BackupOutputs> = {
  async check(_olds, news) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    const tables: unknown = news.tables;
    if (!Array.isArray(tables) || tables.length === 0) failures.push({ property: "tables", reason: "at least one table to back up" });
    for (const t of Array.isArray(tables) ? (tables as Partial<BackupInputs["tables"][number]>[]) : []) {
      if (!/^[a-z_][a-z0-9_]*$/.test(t?.name ?? "") || !/^[a-z_][a-z0-9_]*$/.test(t?.key ?? "")) {
        failures.push({ property: "tables", reason: `invalid table or key name ${JSON.stringify(t)}` });
      }
    }
    if (typeof news.exportRoot !== "string" || !news.exportRoot.startsWith("/"))
      failures.push({ property: "exportRoot", reason: "exportRoot must be an absolute path" });
    failures.push(...connectionFailures(news));
    return { inputs: news, failures };
  },

  async diff(_id, olds, news) {
    const same = JSON.stringify(olds.tables) === JSON.stringify(news.tables);
    // A rotated connection string (or new TLS settings) is recorded (update); a different table list replaces.
    return diffOf(connectionChanged(olds, news) ? ["databaseUrl"] : [], { replaces: same ? [] : ["tables"], deleteBeforeReplace: false });
  },

  async update(_id, olds, news) {
    return { outs: recordConnection(olds, news) };
  },

  async create(inputs) {
    const crypto: typeof import("crypto") = require("crypto");
    const started = Date.now();
    const stamp = new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14);
    const backupId = `guardian_backup_${stamp}_${crypto.randomBytes(3).toString("hex")}`;
    const say = (s: string) => console.log(`backup ${backupId}: ${s}`);
    return withConnection(inputs, "backup", async (c) => {
      // The internal schema (sql/schema/01_guardian_schema.sql: guardian.backups, the journal...) comes first, so
      // the backup is recorded and journaled. It touches no application table.
      await transaction(c, { ddlLock: true }, () => c.query(inputs.bootstrapSql));
      const snapshot = await snapshotTables(c, inputs, backupId, say);
      const exported = await exportTables(c, inputs, backupId, snapshot.rowCounts, say);
      const { manifest, manifestPath, createdAt, manifestSigned } = await writeManifest(c, inputs, backupId, snapshot, exported, say);
      await c.query(`UPDATE guardian.backups SET export_dir = $2, manifest = $3 WHERE backup_id = $1`, [
        backupId,
        exported.exportDir,
        JSON.stringify(manifest),
      ]);
      await journal(c, { step: "backup", objectName: backupId, details: { rowCounts: snapshot.rowCounts } }, { optional: true });
      const durationMs = Date.now() - started;
      say(`done in ${(durationMs / 1000).toFixed(1)} s`);
      const outs: BackupOutputs = {
        ...inputs,
        backupId,
        schemaName: backupId,
        exportDir: exported.exportDir,
        manifestPath,
        rowCounts: snapshot.rowCounts,
        checksums: snapshot.checksums,
        fileSha256: exported.fileSha256,
        functionsCaptured: snapshot.functionsCaptured,
        createdAt,
        durationMs,
        manifestSigned,
      };
      return { id: backupId, outs };
    });
  },

  async read(id, props) {
    return withConnection(props, "backup", async (c) => {
      const r = await c.query<{ present: boolean }>(`SELECT to_regnamespace($1) IS NOT NULL AS present`, [props.schemaName ?? id]);
      return r.rows[0].present ? { id, props } : { id: "", props: {} };
    });
  },

  async delete() {
    // Retained by design: a backup outlives rollback and destroy.
  },
};

type Say = (s: string) => void;

/** What the snapshot recorded: rows and row checksums per table, and the consume_credits_rpc signatures. */
interface Snapshot {
  rowCounts: Record<string, number>;
  checksums: Record<string, string>;
  functionsCaptured: string[];
}

/** What the export wrote: its folder, and each table file's sha256 and size. */
interface Exported {
  exportDir: string;
  fileSha256: Record<string, string>;
  bytes: Record<string, number>;
}

/** A file or folder's mode as four octal digits. */
function modeOf(p: string): string {
  const fs: typeof import("fs") = require("fs");
  return (fs.statSync(p).mode & 0o777).toString(8).padStart(4, "0");
}

/** 1. One snapshot for all tables: copies, row counts, checksums, v1's definitions and the policies, recorded in
 *  guardian.backups, in ONE repeatable-read transaction. Nothing is kept if it fails. */
async function snapshotTables(c: Client, inputs: BackupInputs, backupId: string, say: Say): Promise<Snapshot> {
  say(`snapshot of ${inputs.tables.map((t) => t.name).join(", ")} (one repeatable-read transaction)`);
  const rowCounts: Record<string, number> = {};
  const checksums: Record<string, string> = {};
  let functionsCaptured: string[] = [];
  try {
    functionsCaptured = await transaction(c, { isolation: "REPEATABLE READ", lockTimeoutMs: 5000 }, async () => {
      await c.query(`CREATE SCHEMA ${backupId}`);
      for (const t of inputs.tables) {
        await c.query(`CREATE TABLE ${backupId}.${t.name} AS TABLE public.${t.name}`);
        await c.query(`ALTER TABLE ${backupId}.${t.name} ADD PRIMARY KEY (${t.key})`);
        const r = await c.query<{ n: string; checksum: string }>(
          `SELECT count(*)::bigint AS n,
                    coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text AS checksum
               FROM ${backupId}.${t.name} t`,
        );
        rowCounts[t.name] = Number(r.rows[0].n);
        checksums[t.name] = r.rows[0].checksum;
        say(`copied ${t.name}: ${Number(r.rows[0].n).toLocaleString("en-US")} rows`);
      }
      const fns = await c.query<{ signature: string }>(
        `SELECT p.oid::regprocedure::text AS signature, pg_get_functiondef(p.oid) AS definition,
                  p.proacl::text AS acl, md5(p.prosrc) AS prosrc_md5, md5(pg_get_functiondef(p.oid)) AS def_md5,
                  obj_description(p.oid, 'pg_proc') AS comment
             FROM pg_proc p WHERE p.proname = 'consume_credits_rpc' AND p.pronamespace = 'public'::regnamespace`,
      );
      // Every policy on the backed-up tables, with its full definition: the tenancy component drops those it did
      // not write, so this is the record of what was there.
      const policies = await c.query(
        `SELECT schemaname, tablename, policyname, permissive, roles::text[] AS roles, cmd, qual, with_check
             FROM pg_catalog.pg_policies WHERE schemaname = 'public' AND tablename = ANY ($1::text[])
            ORDER BY tablename, policyname`,
        [["organizations", "profiles", "organization_credits", "credit_actions", "credit_consumption_logs"]],
      );
      await c.query(
        `INSERT INTO guardian.backups (backup_id, schema_name, row_counts, checksums, functions, policies)
           VALUES ($1, $1, $2, $3, $4, $5)`,
        [backupId, JSON.stringify(rowCounts), JSON.stringify(checksums), JSON.stringify(fns.rows), JSON.stringify(policies.rows)],
      );
      await c.query(`COMMENT ON SCHEMA ${backupId} IS 'guardian-credits backup; never dropped by the program'`);
      return fns.rows.map((f) => f.signature);
    });
  } catch (e) {
    throw new Error(`backup: snapshot failed, nothing kept: ${(e as Error).message}`);
  }

  return { rowCounts, checksums, functionsCaptured };
}

/** 2. Each copy streamed to disk with its sha256, files 0600 in folders 0700. */
async function exportTables(c: Client, inputs: BackupInputs, backupId: string, rowCounts: Record<string, number>, say: Say): Promise<Exported> {
  const { to: copyTo } = require("pg-copy-streams") as { to: (sql: string) => Submittable & Readable };
  const crypto: typeof import("crypto") = require("crypto");
  const fs: typeof import("fs") = require("fs");
  const path: typeof import("path") = require("path");
  const { pipeline }: typeof import("stream/promises") = require("stream/promises");
  const { Transform }: typeof import("stream") = require("stream");
  // 2. Export to disk, streaming, with a sha256 per file. The export holds every tenant's organizations, balances
  // and consumption history: files 0600 in folders 0700, whatever the umask (a umask can only take bits away
  // from the mode given at creation, so each is created with at most that mode and then set to exactly it).
  const exportDir = path.join(inputs.exportRoot, backupId);
  const firstCreated: string | undefined = fs.mkdirSync(exportDir, { recursive: true, mode: EXPORT_DIR_MODE });
  for (let d = exportDir; firstCreated !== undefined; d = path.dirname(d)) {
    fs.chmodSync(d, EXPORT_DIR_MODE); // every folder this export created, up to the first one
    if (d === firstCreated || d === path.dirname(d)) break;
  }
  fs.chmodSync(exportDir, EXPORT_DIR_MODE);
  const fileSha256: Record<string, string> = {};
  const bytes: Record<string, number> = {};
  for (const t of inputs.tables) {
    const file = path.join(exportDir, `${t.name}.copy`);
    const hash = crypto.createHash("sha256");
    let n = 0;
    let lines = 0;
    let lastReport = Date.now();
    const total = rowCounts[t.name];
    const tap = new Transform({
      transform(chunk: Buffer, _enc: string, cb: (error: Error | null, data: Buffer) => void) {
        hash.update(chunk);
        n += chunk.length;
        for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) lines++;
        if (Date.now() - lastReport > 2000) {
          lastReport = Date.now();
          say(
            `exporting ${t.name}: ${lines.toLocaleString("en-US")}/${total.toLocaleString("en-US")} rows (${total ? Math.floor((100 * lines) / total) : 100}%)`,
          );
        }
        cb(null, chunk);
      },
    });
    const src = c.query(copyTo(`COPY (SELECT * FROM ${backupId}.${t.name} ORDER BY ${t.key}) TO STDOUT`));
    await pipeline(src, tap, fs.createWriteStream(file, { mode: EXPORT_FILE_MODE }));
    fs.chmodSync(file, EXPORT_FILE_MODE);
    fileSha256[t.name] = hash.digest("hex");
    bytes[t.name] = n;
    if (lines !== total) throw new Error(`backup: export of ${t.name} wrote ${lines} rows, expected ${total}`);
    say(`exported ${t.name}: ${lines.toLocaleString("en-US")} rows, ${n.toLocaleString("en-US")} bytes, sha256 ${fileSha256[t.name].slice(0, 12)}…`);
  }
  return { exportDir, fileSha256, bytes };
}

/** 3. manifest.json (rows, sha256, checksum, modes as set on disk), signed when a passphrase is in the environment;
 *  every file's mode checked. */
async function writeManifest(c: Client, inputs: BackupInputs, backupId: string, snapshot: Snapshot, exported: Exported, say: Say) {
  const fs: typeof import("fs") = require("fs");
  const path: typeof import("path") = require("path");
  const { rowCounts, checksums, functionsCaptured } = snapshot;
  const { exportDir, fileSha256, bytes } = exported;
  const server = (await c.query<{ server_version: string }>("SHOW server_version")).rows[0].server_version;
  const createdAt = new Date().toISOString();
  const manifest = {
    backupId,
    schema: backupId,
    createdAt,
    database: inputs.databaseLabel,
    serverVersion: server,
    tables: Object.fromEntries(
      inputs.tables.map((t) => [
        t.name,
        {
          file: `${t.name}.copy`,
          key: t.key,
          rows: rowCounts[t.name],
          bytes: bytes[t.name],
          sha256: fileSha256[t.name],
          checksum: checksums[t.name],
          mode: modeOf(path.join(exportDir, `${t.name}.copy`)),
        },
      ]),
    ),
    functions: functionsCaptured,
    // As set on disk (read back, not assumed); the restore check refuses an export readable by group or others.
    permissions: {
      directory: modeOf(exportDir),
      manifest: EXPORT_FILE_MODE.toString(8).padStart(4, "0"),
      files: EXPORT_FILE_MODE.toString(8).padStart(4, "0"),
    },
  };
  const manifestPath = path.join(exportDir, "manifest.json");
  fs.writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`, { mode: EXPORT_FILE_MODE });
  fs.chmodSync(manifestPath, EXPORT_FILE_MODE);
  // Signed with a key derived from the stack's passphrase (lib/manifestSignature.ts), read from this process's
  // environment now; without a passphrase the export stays unsigned and the output says so.
  const key = manifestKey();
  const manifestSigned = key !== undefined;
  if (key) signManifest(exportDir, key);
  say(
    manifestSigned ? "manifest.json signed (manifest.sig)" : "manifest.json NOT signed: no passphrase in the environment (restoring it needs --allow-unsigned)",
  );
  for (const p of [exportDir, manifestPath, ...inputs.tables.map((t) => path.join(exportDir, `${t.name}.copy`))]) {
    const want = p === exportDir ? EXPORT_DIR_MODE : EXPORT_FILE_MODE;
    if ((fs.statSync(p).mode & 0o777) !== want) throw new Error(`backup: ${p} has mode ${modeOf(p)}, expected ${want.toString(8).padStart(4, "0")}`);
  }
  return { manifest, manifestPath, createdAt, manifestSigned };
}

/** A verified-to-be-consistent snapshot of the credit tables. Type token: pulumi-nodejs:dynamic/guardian:Backup. */
export const BackupSnapshot = connectedResource<BackupInputs, typeof BACKUP_OUTPUTS, BackupArgs>(backupProvider, "Backup", BACKUP_OUTPUTS, {
  retainOnDelete: true,
});
export type BackupSnapshot = InstanceType<typeof BackupSnapshot>;
