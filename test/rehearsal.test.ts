/**
 * The staging rehearsal: a backup export (written by `up`) restores into a fresh database with the row counts and
 * checksums of its manifest, refuses a tampered export or a database that holds data, and `npm run rehearse` runs the
 * whole migration on the restored copy (preview, up with the policy pack, report).
 */
import { execFile } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latestExport, restoreExport, RESTORE_ORDER, RestoreError } from "../operations/shared/restoreExport";
import { settingsWithoutSecrets } from "../operations/rehearse";
import { PASSPHRASE } from "../harness/stack";
import { manifestKey, signManifest } from "../lib/manifestSignature";
import { freshDb, pgServer, type TestDb } from "./helpers/db";
import { type Migrated, seededStack, teardown, up } from "./helpers/migration";

/** The key the test stacks' backups sign their manifests with (their passphrase's). */
const KEY = manifestKey({ PULUMI_CONFIG_PASSPHRASE: PASSPHRASE })!;

const ROOT = path.resolve(__dirname, "..");
const KEYS: Record<string, string> = {
  organizations: "id",
  organization_credits: "organization_id",
  credit_actions: "action_type",
  credit_consumption_logs: "id",
};

/** Every row of a table as text, in key order, hashed: equal iff the two tables hold the same rows. */
async function rowsDigest(db: TestDb, rel: string, key: string): Promise<string> {
  const [{ d }] = await db.query(`SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.${key}), '')) AS d FROM ${rel} t`);
  return d;
}

describe("rehearsal: restore the latest backup export and migrate the copy", () => {
  let m: Migrated;
  let exportDir: string;
  let backupId: string;
  const extra: TestDb[] = [];

  beforeAll(async () => {
    m = await seededStack(120);
    const r = await up(m.t);
    backupId = r.outputs.backupId.value;
    exportDir = r.outputs.backupExportDir.value;
  });
  afterAll(async () => {
    for (const db of extra) await db.drop().catch(() => undefined);
    await teardown(m);
  });

  it("finds the newest export under the export root", () => {
    expect(latestExport(path.join(m.t.stateDir, "exports"))).toBe(exportDir);
    expect(path.basename(exportDir)).toBe(backupId);
  });

  it("restores the export of a migrated database into a fresh one: row counts and checksums equal the manifest, rows equal the backup", async () => {
    const target = await freshDb({ baseline: false, prefix: "gt_restore" });
    extra.push(target);
    const logs: string[] = [];
    const r = await restoreExport(exportDir, target.url, { log: (l) => logs.push(l), key: KEY });
    expect(r.ok).toBe(true);
    expect(r.phase35Columns).toBe(false); // the backup was taken before the schema change
    const manifest = JSON.parse(fs.readFileSync(path.join(exportDir, "manifest.json"), "utf8"));
    for (const t of RESTORE_ORDER) {
      expect(r.tables[t], t).toEqual({
        rows: manifest.tables[t].rows,
        expectedRows: manifest.tables[t].rows,
        checksum: manifest.tables[t].checksum,
        expectedChecksum: manifest.tables[t].checksum,
        ok: true,
      });
      const [{ n }] = await target.query(`SELECT count(*)::int n FROM public.${t}`);
      expect(n, t).toBe(manifest.tables[t].rows);
      expect(await rowsDigest(target, `public.${t}`, KEYS[t]), t).toBe(await rowsDigest(m.db, `${backupId}.${t}`, KEYS[t]));
    }
    expect(r.tables.organization_credits.rows).toBe(120);
    expect(logs).toContainEqual(expect.stringMatching(/^restore guardian_backup_\w+: organization_credits: 120 rows, checksum equal to the manifest's$/));
    // The restored log keeps numbering after its rows.
    const [{ max }] = await target.query(`SELECT max(id)::int AS max FROM public.credit_consumption_logs`);
    const [{ next }] = await target.query(`SELECT nextval(pg_get_serial_sequence('public.credit_consumption_logs', 'id'))::int AS next`);
    expect(next).toBe(max + 1);
  });

  it("refuses a database that already holds data, naming the tables", async () => {
    const target = extra[0];
    const e = await restoreExport(exportDir, target.url, { key: KEY }).catch((x) => x);
    expect(e).toBeInstanceOf(RestoreError);
    expect(e.message).toMatch(/^restore refused: postgres:\/\/\S+ is not empty:\n {2}- public\.organizations has 120 rows/);
  });

  it("refuses a tampered export before writing anything", async () => {
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-export-"));
    try {
      for (const f of fs.readdirSync(exportDir)) fs.copyFileSync(path.join(exportDir, f), path.join(copy, f));
      const file = path.join(copy, "organization_credits.copy");
      fs.writeFileSync(
        file,
        fs.readFileSync(file, "utf8").replace(/\t(\d+)\t/, (_s, n) => `\t${Number(n) + 1}\t`),
      );
      const target = await freshDb({ baseline: false, prefix: "gt_restore" });
      extra.push(target);
      const e = await restoreExport(copy, target.url, { key: KEY }).catch((x) => x);
      expect(e).toBeInstanceOf(RestoreError);
      expect(e.message).toMatch(
        new RegExp(
          `^restore of ${backupId} refused, nothing was written:\\n  - organization_credits: organization_credits\\.copy has sha256 [0-9a-f]{12}…, the manifest says [0-9a-f]{12}…$`,
        ),
      );
      const [{ p }] = await target.query(`SELECT to_regclass('public.organizations') IS NOT NULL AS p`);
      expect(p).toBe(false);
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });

  it("restores an export taken after a migration (Phase 3.5 columns) by creating those columns first", async () => {
    // An export of the migrated tables, in the backup's format (as a backup taken before a re-migration would be).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-export-"));
    try {
      const { to: copyTo } = require("pg-copy-streams");
      const { pipeline } = require("stream/promises");
      const c = await m.db.client();
      const tables: Record<string, any> = {};
      try {
        for (const t of RESTORE_ORDER) {
          const file = path.join(dir, `${t}.copy`);
          await pipeline(c.query(copyTo(`COPY (SELECT * FROM public.${t} ORDER BY ${KEYS[t]}) TO STDOUT`)), fs.createWriteStream(file, { mode: 0o600 }));
          const r = (
            await c.query(
              `SELECT count(*)::bigint AS n, coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text AS checksum FROM public.${t} t`,
            )
          ).rows[0];
          tables[t] = {
            file: `${t}.copy`,
            key: KEYS[t],
            rows: Number(r.n),
            checksum: r.checksum,
            sha256: crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex"),
          };
        }
      } finally {
        await c.end();
      }
      // Owner-only, as providers/backup.ts writes an export (restoreExport refuses anything wider).
      fs.writeFileSync(
        path.join(dir, "manifest.json"),
        JSON.stringify({ backupId: "guardian_backup_20990101000000_abcdef", createdAt: new Date().toISOString(), tables }),
        { mode: 0o600 },
      );
      signManifest(dir, KEY);
      const target = await freshDb({ baseline: false, prefix: "gt_restore" });
      extra.push(target);
      const r = await restoreExport(dir, target.url, { key: KEY });
      expect(r.phase35Columns).toBe(true);
      expect(r.ok).toBe(true);
      const [{ multi }] = await target.query(`SELECT count(*) FILTER (WHERE credit_model = 'multi')::int AS multi FROM public.organization_credits`);
      expect(multi).toBe(120);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("takes the staging settings without their secrets for the rehearsal stack", () => {
    const staging = [
      "config:",
      "  guardian:creditModel: multi",
      "  guardian:databaseUrl:",
      "    secure: v1:abc:def",
      "  guardian:backfill:",
      "    batchSize: 1000",
      "encryptionsalt: v1:xyz",
      "",
    ].join("\n");
    expect(settingsWithoutSecrets(staging)).toBe(["config:", "  guardian:creditModel: multi", "  guardian:backfill:", "    batchSize: 1000", ""].join("\n"));
  });

  it("npm run rehearse restores the latest export into a scratch database, migrates it with the policy pack, and reports", async () => {
    const database = `gt_rehearsal_${crypto.randomBytes(4).toString("hex")}`;
    const state = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-rehearsal-state-"));
    const server = await pgServer();
    try {
      const { stdout } = await promisify(execFile)(
        "node",
        [
          "-r",
          "ts-node/register/transpile-only",
          path.join(ROOT, "scripts", "rehearse.ts"),
          "--export-root",
          path.join(m.t.stateDir, "exports"),
          "--database",
          database,
          "--drop",
        ],
        {
          cwd: ROOT,
          env: {
            ...process.env,
            PULUMI_BACKEND_URL: `file://${state}`,
            PULUMI_CONFIG_PASSPHRASE: "guardian-rehearsal-test",
            // The rehearsal's own stack has its own passphrase; the export was signed with the migrated stack's.
            GUARDIAN_BACKUP_PASSPHRASE: PASSPHRASE,
            PATH: m.t.env.PATH,
            GUARDIAN_TEST_DATABASE_URL: server.adminUrl,
          },
          maxBuffer: 64 * 1024 * 1024,
        },
      );
      expect(stdout).toContain(`export: ${exportDir}`);
      expect(stdout).toMatch(new RegExp(`restored ${backupId} into \\S+/${database} in [\\d.]+ s; every table equals the manifest`));
      expect(stdout).toMatch(/Policy Packs run:/);
      expect(stdout).toMatch(/\+ \d+ created/);
      expect(stdout).toContain(`report: .guardian/rehearsal/${database}/report.md (120/120 orgs multi)`);
      const report = fs.readFileSync(path.join(ROOT, ".guardian", "rehearsal", database, "report.md"), "utf8");
      expect(report).toMatch(/\| restore check \| verified at /);
      expect(fs.existsSync(path.join(ROOT, `Pulumi.rehearsal.yaml`))).toBe(false); // the checkout is left as it was
      const [{ gone }] = await freshDbProbe(server.adminUrl, database);
      expect(gone).toBe(true); // --drop
    } finally {
      fs.rmSync(state, { recursive: true, force: true });
      fs.rmSync(path.join(ROOT, ".guardian", "rehearsal", database), { recursive: true, force: true });
    }
  }, 600_000);
});

async function freshDbProbe(adminUrl: string, database: string): Promise<{ gone: boolean }[]> {
  const { Client } = require("pg");
  const c = new Client({ connectionString: adminUrl });
  await c.connect();
  try {
    return (await c.query(`SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS gone`, [database])).rows;
  } finally {
    await c.end();
  }
}
