/**
 * Adversarial suite, the backup export's authenticity: someone who can write the export's files (not the stack's
 * passphrase) edits an organization's balance, recomputes the file's sha256 and the row checksum in manifest.json,
 * and waits for a rehearsal or a disaster restore. The manifest is signed (manifest.sig, a key derived from the
 * passphrase: lib/manifestSignature.ts), so the restore refuses before a row is written; and even an export restored
 * without a signature (allowUnsigned) never commits a row that differs from the manifest. The providers are called
 * directly (the real code, no engine), with a passphrase in this process's environment as `pulumi up` gives one.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKUP_TABLES } from "../../components/backup";
import { redactUrl } from "../../lib/db";
import { manifestKey } from "../../lib/manifestSignature";
import { loadSql } from "../../lib/sql";
import { restoreExport, RestoreError } from "../../operations/shared/restoreExport";
import { backupProvider } from "../../providers/backup";
import { restoreCheckProvider } from "../../providers/restoreCheck";
import { freshDb, type TestDb } from "../helpers/db";
import { battlefield, type Battlefield } from "./fixture";

const PASSPHRASE = "adversarial-stack-passphrase";
const KEY = manifestKey({ PULUMI_CONFIG_PASSPHRASE: PASSPHRASE })!;
let bf: Battlefield;
let exportDir: string;
let manifestPath: string;
let backupId: string;
const extra: TestDb[] = [];
const copies: string[] = [];

/** Runs fn with the passphrase in this process's environment, as pulumi's provider processes have it. */
async function withPassphrase<T>(fn: () => Promise<T>): Promise<T> {
  const was = process.env.PULUMI_CONFIG_PASSPHRASE;
  process.env.PULUMI_CONFIG_PASSPHRASE = PASSPHRASE;
  try {
    return await fn();
  } finally {
    if (was === undefined) delete process.env.PULUMI_CONFIG_PASSPHRASE;
    else process.env.PULUMI_CONFIG_PASSPHRASE = was;
  }
}

/** A copy of the export, owner-only as the backup writes it. */
function copyOfExport(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-sig-"));
  fs.chmodSync(dir, 0o700);
  for (const f of fs.readdirSync(exportDir)) fs.copyFileSync(path.join(exportDir, f), path.join(dir, f));
  copies.push(dir);
  return dir;
}

/** The attack: the first organization's credits_remaining set to 99,999,999, the file's sha256 recomputed in the
 *  manifest, and (unless told otherwise) the table's row checksum too, computed as the backup computes it. */
async function tamper(dir: string, opts: { checksum: boolean }): Promise<void> {
  const file = path.join(dir, "organization_credits.copy");
  const lines = fs.readFileSync(file, "utf8").split("\n");
  const cols = (
    await bf.db.query(
      `SELECT attname FROM pg_attribute WHERE attrelid = '${backupId}.organization_credits'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    )
  ).map((r) => r.attname);
  const i = cols.indexOf("credits_remaining");
  const fields = lines[0].split("\t");
  fields[i] = "99999999";
  lines[0] = fields.join("\t");
  fs.writeFileSync(file, lines.join("\n"), { mode: 0o600 });
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
  manifest.tables.organization_credits.sha256 = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
  if (opts.checksum) {
    // The row checksum of the edited rows, as the backup and the restore compute it (md5 of each row's text).
    const [{ checksum }] = await bf.db.query(
      `SELECT coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text AS checksum
         FROM (SELECT (CASE WHEN o.organization_id = (SELECT organization_id FROM ${backupId}.organization_credits ORDER BY ctid LIMIT 1)
                            THEN jsonb_populate_record(o, jsonb_build_object('credits_remaining', 99999999)) ELSE o END) AS t
                 FROM ${backupId}.organization_credits o) s`,
    );
    manifest.tables.organization_credits.checksum = checksum;
  }
  fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest, null, 2), { mode: 0o600 });
}

async function rowsIn(db: TestDb): Promise<number> {
  const [{ p }] = await db.query(`SELECT to_regclass('public.organization_credits') IS NOT NULL AS p`);
  if (!p) return 0;
  return (await db.query(`SELECT count(*)::int AS n FROM public.organization_credits`))[0].n;
}

beforeAll(async () => {
  bf = await battlefield("adv_sig");
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-sig-exports-"));
  copies.push(root);
  const { outs } = await withPassphrase(() =>
    backupProvider.create!({
      databaseUrl: bf.db.url,
      exportRoot: root,
      tables: BACKUP_TABLES,
      databaseLabel: redactUrl(bf.db.url),
      bootstrapSql: loadSql("schema/01_guardian_schema.sql").text,
    }),
  );
  ({ exportDir, manifestPath, backupId } = outs);
  expect(outs.manifestSigned).toBe(true);
});
afterAll(async () => {
  for (const d of extra) await d.drop().catch(() => undefined);
  for (const d of copies) fs.rmSync(d, { recursive: true, force: true });
  await bf?.drop();
});

describe("a signed backup export", () => {
  it("is signed beside its manifest (owner-only), and restores with the stack's passphrase", async () => {
    expect((fs.statSync(path.join(exportDir, "manifest.sig")).mode & 0o777).toString(8)).toBe("600");
    expect(fs.readFileSync(path.join(exportDir, "manifest.sig"), "utf8")).toMatch(/^hmac-sha256:[0-9a-f]{64}\n$/);
    const target = await freshDb({ baseline: false, prefix: "adv_sig_ok" });
    extra.push(target);
    const r = await restoreExport(exportDir, target.url, { key: KEY });
    expect(r.ok).toBe(true);
  });

  it("edited rows with the sha256 and the checksum recomputed: refused by the signature, nothing written", async () => {
    const dir = copyOfExport();
    await tamper(dir, { checksum: true });
    const target = await freshDb({ baseline: false, prefix: "adv_sig_t1" });
    extra.push(target);
    const e = await restoreExport(dir, target.url, { key: KEY }).catch((x) => x);
    expect(e).toBeInstanceOf(RestoreError);
    expect(e.message).toMatch(
      /refused, nothing was written:\n {2}- \S+manifest\.sig does not match manifest\.json: the manifest was changed after the backup signed it/,
    );
    expect(await rowsIn(target)).toBe(0);
  });

  it("the same attack against the restore check during up: refused, the backup marked unverified", async () => {
    const dir = copyOfExport();
    await tamper(dir, { checksum: true });
    const e = await withPassphrase(() =>
      restoreCheckProvider.create!({ databaseUrl: bf.db.url, backupId, manifestPath: path.join(dir, "manifest.json") }).then(
        () => undefined,
        (x: Error) => x,
      ),
    );
    expect(e?.message).toContain("manifest.sig does not match manifest.json");
  });

  it("another passphrase does not verify it", async () => {
    const target = await freshDb({ baseline: false, prefix: "adv_sig_t2" });
    extra.push(target);
    const e = await restoreExport(exportDir, target.url, { key: manifestKey({ PULUMI_CONFIG_PASSPHRASE: "not-the-stacks" }) }).catch((x) => x);
    expect(e.message).toContain("manifest.sig does not match manifest.json");
    expect(await rowsIn(target)).toBe(0);
  });

  it("without its signature it is refused, unless allowUnsigned is asked for", async () => {
    const dir = copyOfExport();
    fs.rmSync(path.join(dir, "manifest.sig"));
    const target = await freshDb({ baseline: false, prefix: "adv_sig_t3" });
    extra.push(target);
    const e = await restoreExport(dir, target.url, { key: KEY }).catch((x) => x);
    expect(e.message).toMatch(/manifest\.sig is missing: the export is unsigned/);
    expect(await rowsIn(target)).toBe(0);
    const r = await restoreExport(dir, target.url, { key: KEY, allowUnsigned: true });
    expect(r.ok).toBe(true);
  });

  it("unsigned and allowed, with only the sha256 recomputed: the rows are checked before commit, and nothing is committed", async () => {
    const dir = copyOfExport();
    fs.rmSync(path.join(dir, "manifest.sig"));
    await tamper(dir, { checksum: false });
    const target = await freshDb({ baseline: false, prefix: "adv_sig_t4" });
    extra.push(target);
    const e = await restoreExport(dir, target.url, { key: KEY, allowUnsigned: true }).catch((x) => x);
    expect(e).toBeInstanceOf(RestoreError);
    expect(e.message).toMatch(
      /refused, nothing was committed:\n {2}- organization_credits: \d+ rows, checksum -?\d+; the manifest says \d+ rows, checksum -?\d+/,
    );
    expect(await rowsIn(target)).toBe(0);
  });
});
