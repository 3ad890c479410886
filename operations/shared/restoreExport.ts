/**
 * Restores a backup export (providers/backup.ts: `<table>.copy` files in COPY text format + manifest.json) into an
 * empty database, for the staging rehearsal (scripts/rehearse.ts) or a disaster.
 *
 *   1. Reads manifest.json, checks its signature (manifest.sig, lib/manifestSignature.ts: a key derived from the
 *      stack's passphrase; an unsigned export only with allowUnsigned), and checks every export file's sha256 against
 *      it (a tampered or truncated export is
 *      refused before anything is written, every problem named). An export that group or others can read (folder not
 *      0700, a file not 0600, as providers/backup.ts writes them) is refused too, naming the file.
 *   2. Creates the pre-Phase-3.5 Guardian schema (lib/baseline.ts ensureBaseline). An export taken from a database
 *      that already had the Phase 3.5 columns (a re-migration after a rollback) has more fields per row than the
 *      baseline tables have columns; the additive columns are then created too (sql/schema/, as CreditSchema does),
 *      so each file loads into the same columns in the same order.
 *   3. Refuses a target that holds data (organizations, profiles, credits or logs): a restore never merges.
 *   4. In one transaction: replaces the baseline's catalogue rows with the export's, COPYs every table in foreign-key
 *      order (organizations, organization_credits, credit_actions, credit_consumption_logs), moves the log's id
 *      sequence past the restored ids. Progress every 2 s for large files.
 *   5. Verifies, in that same transaction before it commits: per table, the row count and the row checksum (the same
 *      expression the backup recorded) against the manifest. Any difference rolls the load back (RestoreError naming
 *      each table): no tampered row is ever committed. The result names every table.
 *
 * Not in a backup, so not restored: profiles (and auth.users). The migration does not need them; tenant-isolation
 * checks on a rehearsal database need users made for the purpose.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { pipeline } from "stream/promises";
import { Transform } from "stream";
import type { Client } from "pg";
import { ensureBaseline } from "../../lib/baseline";
import { connect, inTransaction, redactUrl } from "../../lib/db";
import { explainSqlError, loadSql } from "../../lib/sql";
import { GuardianRefusal } from "../../lib/errors";
import { manifestKey, manifestSignatureProblem, SIGNATURE_FILE } from "../../lib/manifestSignature";

/** Foreign-key order: parents first. */
export const RESTORE_ORDER = ["organizations", "organization_credits", "credit_actions", "credit_consumption_logs"];

/** The files of sql/schema/ that add the Phase 3.5 columns (components/creditSchema.ts applies the same files). */
const PHASE35_SCHEMA_FILES = [
  "schema/01_guardian_schema.sql",
  "schema/02_organization_credits.sql",
  "schema/03_credit_actions.sql",
  "schema/04_credit_consumption_logs.sql",
];

export interface ManifestTable {
  file: string;
  key: string;
  rows: number;
  bytes?: number;
  sha256: string;
  checksum: string;
}

export interface Manifest {
  backupId: string;
  createdAt: string;
  serverVersion?: string;
  tables: Record<string, ManifestTable>;
}

export interface RestoredTable {
  rows: number;
  expectedRows: number;
  checksum: string;
  expectedChecksum: string;
  ok: boolean;
}

export interface RestoreResult {
  backupId: string;
  database: string;
  /** Whether the Phase 3.5 columns had to be created for the export's rows to load. */
  phase35Columns: boolean;
  tables: Record<string, RestoredTable>;
  ok: boolean;
  durationMs: number;
}

export class RestoreError extends GuardianRefusal {
  constructor(
    message: string,
    public readonly problems: string[] = [],
  ) {
    super(problems.length ? `${message}:\n  - ${problems.join("\n  - ")}` : message, "RestoreError");
  }
}

export function readManifest(exportDir: string): Manifest {
  const file = path.join(exportDir, "manifest.json");
  let m: Manifest;
  try {
    m = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e: any) {
    throw new RestoreError(`restore: cannot read ${file}: ${e.code ?? e.message}`);
  }
  if (!m?.backupId || typeof m.tables !== "object") throw new RestoreError(`restore: ${file} is not a guardian backup manifest`);
  return m;
}

/** The newest export (by backup id, which starts with its UTC timestamp) under root that has a manifest. */
export function latestExport(root: string): string {
  let names: string[] = [];
  try {
    names = fs.readdirSync(root);
  } catch (e: any) {
    throw new RestoreError(`restore: no backup exports under ${root} (${e.code ?? e.message})`);
  }
  const dirs = names.filter((n) => /^guardian_backup_\d{14}_[0-9a-f]+$/.test(n) && fs.existsSync(path.join(root, n, "manifest.json"))).sort();
  if (!dirs.length) throw new RestoreError(`restore: no backup export with a manifest.json under ${root}`);
  return path.join(root, dirs[dirs.length - 1]);
}

/**
 * An export is owner-only: its folder 0700, manifest.json and every table file 0600 (providers/backup.ts). One problem
 * per file that group or others could read, enter or write, naming it and its mode.
 */
export function exportPermissionProblems(exportDir: string, manifest: Pick<Manifest, "tables">): string[] {
  const out: string[] = [];
  const mode = (p: string) => (fs.statSync(p).mode & 0o777).toString(8).padStart(4, "0");
  if (fs.statSync(exportDir).mode & 0o077) {
    out.push(
      `export folder ${exportDir} is open to group or others (mode ${mode(exportDir)}); a backup export holds every tenant's data: chmod 700 ${exportDir}`,
    );
  }
  const files = [path.join(exportDir, "manifest.json"), ...Object.values(manifest.tables).map((m) => path.join(exportDir, m.file))];
  for (const f of files) {
    if (fs.existsSync(f) && fs.statSync(f).mode & 0o077) {
      out.push(`export file ${f} is readable or writable by group or others (mode ${mode(f)}); a backup export holds every tenant's data: chmod 600 ${f}`);
    }
  }
  return out;
}

function sha256File(file: string): string {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

/** Number of tab-separated fields in the first line of a COPY text file (0 for an empty file). */
function fieldsInFirstLine(file: string): number {
  const fd = fs.openSync(file, "r");
  try {
    const buf = Buffer.alloc(1 << 16);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    if (n === 0) return 0;
    const nl = buf.subarray(0, n).indexOf(10);
    const line = buf.subarray(0, nl < 0 ? n : nl).toString("utf8");
    return line.split("\t").length;
  } finally {
    fs.closeSync(fd);
  }
}

async function columnCount(c: Client, table: string): Promise<number> {
  const r = await c.query(`SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, [
    `public.${table}`,
  ]);
  return r.rows[0].n;
}

const ROW_CHECKSUM = (rel: string) =>
  `SELECT count(*)::bigint AS n, coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text AS checksum FROM ${rel} t`;

export interface RestoreOptions {
  log?: (line: string) => void;
  /** The key manifest.sig is checked with (lib/manifestSignature.ts manifestKey; default: from this process's
   *  PULUMI_CONFIG_PASSPHRASE[_FILE]). */
  key?: Buffer;
  /** Restore an export that has no manifest.sig (made by a stack without a passphrase). A signature that is there
   *  but does not verify is refused even so. */
  allowUnsigned?: boolean;
  /** Progress interval for large files (default 2,000 ms, as the providers). */
  progressEveryMs?: number;
}

type Say = (s: string) => void;

/** 1. The export is what the manifest says it is, and nobody but its owner can read it: refuses naming every problem,
 *  before anything is written. */
function checkExport(exportDir: string, manifest: Manifest, opts: RestoreOptions): void {
  // 1. The export is what the manifest says it is, and nobody but its owner can read it.
  const problems: string[] = exportPermissionProblems(exportDir, manifest);
  const unknown = Object.keys(manifest.tables).filter((t) => !RESTORE_ORDER.includes(t));
  if (unknown.length) problems.push(`manifest lists tables this restore does not know: ${unknown.join(", ")}`);
  for (const t of RESTORE_ORDER) {
    const m = manifest.tables[t];
    if (!m) {
      problems.push(`${t}: missing from the manifest`);
      continue;
    }
    const file = path.join(exportDir, m.file);
    if (!fs.existsSync(file)) {
      problems.push(`${t}: export file ${file} is missing`);
      continue;
    }
    const sha = sha256File(file);
    if (sha !== m.sha256) problems.push(`${t}: ${m.file} has sha256 ${sha.slice(0, 12)}…, the manifest says ${String(m.sha256).slice(0, 12)}…`);
  }
  const signature = manifestSignatureProblem(exportDir, opts.key ?? manifestKey(), opts.allowUnsigned);
  if (signature) problems.push(signature);
  if (problems.length) throw new RestoreError(`restore of ${manifest.backupId} refused, nothing was written`, problems);
}

/** 3. Never merge into data: refuses a target whose tables hold rows. */
async function refuseNonEmpty(c: Client, targetUrl: string): Promise<void> {
  // 3. Never merge into data.
  const busy: string[] = [];
  for (const t of ["organizations", "profiles", "organization_credits", "credit_consumption_logs"]) {
    const n = Number((await c.query(`SELECT count(*)::bigint AS n FROM public.${t}`)).rows[0].n);
    if (n > 0) busy.push(`public.${t} has ${n.toLocaleString("en-US")} rows`);
  }
  if (busy.length) throw new RestoreError(`restore refused: ${redactUrl(targetUrl)} is not empty`, busy);
}

/** The export's rows fit the target's tables; an export taken after a migration gets the Phase 3.5 columns created
 *  first (returns whether it did). Refuses when they still do not fit. */
async function fitColumns(c: Client, exportDir: string, manifest: Manifest, say: Say): Promise<boolean> {
  const mismatch = async () => {
    const out: string[] = [];
    for (const t of RESTORE_ORDER) {
      const fields = fieldsInFirstLine(path.join(exportDir, manifest.tables[t].file));
      const cols = await columnCount(c, t);
      if (fields > 0 && fields !== cols) out.push(`${t}: the export has ${fields} fields per row, public.${t} has ${cols} columns`);
    }
    return out;
  };
  if (!(await mismatch()).length) return false;
  say("the export has more columns than the pre-Phase-3.5 schema (taken after a migration): creating the Phase 3.5 columns");
  for (const file of PHASE35_SCHEMA_FILES) {
    const f = loadSql(file);
    try {
      await inTransaction(c, () => c.query(f.text));
    } catch (e) {
      throw explainSqlError(e, f.file, f.text);
    }
  }
  const diff = await mismatch();
  if (diff.length) throw new RestoreError(`restore refused: the export's rows do not fit the Guardian schema`, diff);
  return true;
}

/** 4. Every table loaded (COPY, with progress), 5. verified against the manifest's rows and checksums, in ONE
 *  transaction: a table that differs rolls the whole load back. */
async function loadAndVerify(c: Client, exportDir: string, manifest: Manifest, every: number, say: Say): Promise<Record<string, RestoredTable>> {
  const { from: copyFrom } = require("pg-copy-streams");
  let tables: Record<string, RestoredTable> = {};
  await inTransaction(c, async () => {
    await c.query(`DELETE FROM public.credit_actions`); // the baseline's live catalogue; the export's replaces it
    for (const t of RESTORE_ORDER) {
      const m = manifest.tables[t];
      const total = Number(m.rows);
      let lines = 0;
      let last = Date.now();
      const t0 = Date.now();
      const tap = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) lines++;
          if (Date.now() - last >= every) {
            last = Date.now();
            const rate = lines / Math.max(0.001, (last - t0) / 1000);
            const eta = rate > 0 ? (total - lines) / rate : 0;
            say(
              `loading ${t}: ${lines.toLocaleString("en-US")}/${total.toLocaleString("en-US")} rows (${total ? Math.floor((100 * lines) / total) : 100}%), ${Math.round(rate).toLocaleString("en-US")} rows/s, ETA ${eta.toFixed(0)} s`,
            );
          }
          cb(null, chunk);
        },
      });
      await pipeline(fs.createReadStream(path.join(exportDir, m.file)), tap, c.query(copyFrom(`COPY public.${t} FROM STDIN`)));
      say(`loaded ${t}: ${lines.toLocaleString("en-US")} rows`);
    }
    await c.query(
      `SELECT setval(pg_get_serial_sequence('public.credit_consumption_logs', 'id'), greatest(coalesce(max(id), 0), 1), max(id) IS NOT NULL)
         FROM public.credit_consumption_logs`,
    );
    // 5. Verify against the manifest.
    tables = {};
    for (const t of RESTORE_ORDER) {
      const m = manifest.tables[t];
      const r = (await c.query(ROW_CHECKSUM(`public.${t}`))).rows[0];
      const rows = Number(r.n);
      tables[t] = {
        rows,
        expectedRows: Number(m.rows),
        checksum: r.checksum,
        expectedChecksum: String(m.checksum),
        ok: rows === Number(m.rows) && r.checksum === String(m.checksum),
      };
      say(
        `${t}: ${rows.toLocaleString("en-US")} rows, checksum ${tables[t].ok ? "equal to the manifest's" : `${r.checksum} DIFFERS from the manifest's ${m.checksum}`}`,
      );
    }
    // Before anything is committed: a row that differs from the manifest rolls the whole load back.
    const bad = RESTORE_ORDER.filter((t) => !tables[t].ok);
    if (bad.length) {
      throw new RestoreError(
        `restore of ${manifest.backupId} refused, nothing was committed`,
        bad.map(
          (t) =>
            `${t}: ${tables[t].rows} rows, checksum ${tables[t].checksum}; the manifest says ${tables[t].expectedRows} rows, checksum ${tables[t].expectedChecksum}`,
        ),
      );
    }
  });

  return tables;
}

export async function restoreExport(exportDir: string, targetUrl: string, opts: RestoreOptions = {}): Promise<RestoreResult> {
  const log = opts.log ?? (() => undefined);
  const every = opts.progressEveryMs ?? 2000;
  const started = Date.now();
  const manifest = readManifest(exportDir);
  const say = (s: string) => log(`restore ${manifest.backupId}: ${s}`);

  checkExport(exportDir, manifest, opts); // 1. the export is what the manifest says it is, readable by its owner only
  say(
    `export ${exportDir}: ${fs.existsSync(path.join(exportDir, SIGNATURE_FILE)) ? "manifest signature verified, " : "UNSIGNED (allowed), "}${RESTORE_ORDER.length} files match the manifest's sha256`,
  );

  const c = await connect(targetUrl);
  try {
    // 2. The schema the rows go into.
    const baseline = await ensureBaseline(c);
    say(`baseline schema: ${baseline.created.length ? `created ${baseline.created.length} objects` : "already present"}`);

    await refuseNonEmpty(c, targetUrl); // 3. never merge into data
    const phase35Columns = await fitColumns(c, exportDir, manifest, say);
    const tables = await loadAndVerify(c, exportDir, manifest, every, say); // 4. load, 5. verify, in one transaction

    const ok = Object.values(tables).every((x) => x.ok);
    return { backupId: manifest.backupId, database: redactUrl(targetUrl), phase35Columns, tables, ok, durationMs: Date.now() - started };
  } finally {
    await c.end().catch(() => undefined);
  }
}
