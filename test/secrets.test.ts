/**
 * No password leaves, whatever form the connection string takes (issue 12, finding 2). For each form, the real flow:
 * a seeded database, `pulumi up` to multi through the real engine, the migration report (buildReport and the CLI
 * writing its files); then every artifact is searched for the password: the stack export, the outputs (decrypted),
 * every file under the state directory (checkpoints, history, backups of the state, the on-disk backup export and its
 * manifest.json), the stack's config file, the engine's event stream and log text, the CLI's stdout/stderr, every row
 * of the database's guardian, guardian_backup_* and public tables (guardian.backups, the journal...), and the report.
 *
 * The local server trusts every connection, so the password is never checked and any string works; it is made
 * unique per form so that a find cannot be a coincidence.
 */
import { execFile } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import { afterAll, describe, expect, it } from "vitest";
import { redactUrl } from "../lib/db";
import { buildReport } from "../operations/report";
import type { TestDb } from "./helpers/db";
import { seededDb } from "./helpers/migration";
import { collect, testStack, type TestStack } from "../harness/stack";

const ROOT = path.resolve(__dirname, "..");

interface Form {
  name: string;
  /** The connection string for the database (its plain URL, without a password). */
  url(plain: string, password: string, dir: string): string;
  /** Environment the engine, the providers and the report run with. */
  env?(password: string, dir: string): Record<string, string>;
  /** Whether the password is in the string itself (then the label must show it masked). */
  inUrl: boolean;
}

const withQuery = (url: string, q: string) => url + (url.includes("?") ? "&" : "?") + q;

const FORMS: Form[] = [
  {
    name: "userinfo (postgresql://user:password@host/db)",
    url: (u, pw) => {
      const x = new URL(u);
      x.password = encodeURIComponent(pw);
      return x.toString();
    },
    inUrl: true,
  },
  { name: "URL parameter ?password=", url: (u, pw) => withQuery(u, `password=${encodeURIComponent(pw)}`), inUrl: true },
  {
    name: "libpq option ?sslpassword= (with sslmode=disable)",
    url: (u, pw) => withQuery(u, `sslmode=disable&sslpassword=${encodeURIComponent(pw)}`),
    inUrl: true,
  },
  {
    name: "passfile (?passfile= and PGPASSFILE, the password only in the file)",
    url: (u, _pw, dir) => withQuery(u, `passfile=${encodeURIComponent(path.join(dir, "pgpass"))}`),
    env: (pw, dir) => {
      fs.writeFileSync(path.join(dir, "pgpass"), `127.0.0.1:5432:*:postgres:${pw}\n`, { mode: 0o600 });
      return { PGPASSFILE: path.join(dir, "pgpass") };
    },
    inUrl: false,
  },
  {
    name: "service file (?service= and PGSERVICEFILE, the password only in the file)",
    url: (u) => withQuery(u, "service=guardian"),
    env: (pw, dir) => {
      fs.writeFileSync(path.join(dir, "pg_service.conf"), `[guardian]\nhost=127.0.0.1\nport=5432\nuser=postgres\npassword=${pw}\n`, { mode: 0o600 });
      return { PGSERVICEFILE: path.join(dir, "pg_service.conf") };
    },
    inUrl: false,
  },
  { name: "PGPASSWORD in the environment", url: (u) => u, env: (pw) => ({ PGPASSWORD: pw }), inUrl: false },
];

/** Pulumi's marker of a secret value in a state file. */
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

/** Paths of the strings holding a needle that are not inside a secret value (a decrypted export shows secrets in plaintext). */
function outsideSecrets(v: unknown, needles: string[], at = "$", out: string[] = []): string[] {
  if (typeof v === "string") {
    if (needles.some((n) => v.includes(n))) out.push(at);
  } else if (Array.isArray(v)) for (const [i, x] of v.entries()) outsideSecrets(x, needles, `${at}[${i}]`, out);
  else if (v && typeof v === "object") {
    if ((v as any)[SECRET_SIG] !== undefined) return out; // a secret: encrypted at rest, shown only with --show-secrets
    for (const [k, x] of Object.entries(v)) outsideSecrets(x, needles, `${at}.${k}`, out);
  }
  return out;
}

/** Every regular file under dir (symlinks not followed), with its text. */
function filesUnder(dir: string): { file: string; text: string }[] {
  const out: { file: string; text: string }[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push({ file: p, text: fs.readFileSync(p, "latin1") });
  }
  return out;
}

/** Every row of every table of the schemas the program writes, as text, per table. */
async function databaseText(db: TestDb): Promise<Record<string, string>> {
  const tables = await db.query<{ t: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'v') AND (n.nspname IN ('public', 'guardian', 'auth') OR n.nspname LIKE 'guardian\\_backup\\_%') ORDER BY 1`,
  );
  const out: Record<string, string> = {};
  for (const { t } of tables) out[t] = (await db.query(`SELECT coalesce(string_agg(x::text, E'\\n'), '') AS s FROM ${t} x`))[0].s;
  return out;
}

describe("no password reaches state, outputs, logs, manifests, database rows or reports, whatever the form", () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterAll(async () => {
    for (const f of cleanup.reverse()) await f();
  });

  for (const form of FORMS) {
    it(form.name, async () => {
      const password = `Gu4rd-${crypto.randomBytes(6).toString("hex")}-s3cret`;
      const needles = [...new Set([password, encodeURIComponent(password)])];
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-secret-"));
      cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
      const db = await seededDb(20, 3, "gt_secret");
      cleanup.push(() => db.drop());
      const url = form.url(db.url, password, dir);
      const env = form.env?.(password, dir) ?? {};
      expect(url.includes(password) || url.includes(encodeURIComponent(password))).toBe(form.inUrl);

      const t: TestStack = await testStack(url, { creditModel: "multi" });
      cleanup.push(() => t.destroyWorkspace());
      Object.assign(t.stack.workspace.envVars, env);
      const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
      Object.assign(process.env, env); // the report reads the database from this process
      let upText = "";
      let report: Awaited<ReturnType<typeof buildReport>>;
      let cli: { stdout: string; stderr: string };
      const out = path.join(dir, "report", "secret.md");
      try {
        const r = await t.stack.up({ onEvent: collect(t) });
        upText = r.stdout + r.stderr;
        expect(r.outputs.orgsMigrated.value).toBe(20);
        report = await buildReport({ stack: t.stack });
        fs.mkdirSync(path.dirname(out));
        cli = await promisify(execFile)(
          "node",
          ["-r", "ts-node/register/transpile-only", path.join(ROOT, "scripts", "report.ts"), "--stack", "test", "--out", out],
          {
            cwd: t.dir,
            env: { ...process.env, ...t.env, ...env },
          },
        );
      } finally {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
      }

      // `pulumi stack export` as an operator shares it (without --show-secrets), and the decrypted one, in which the
      // password may appear only inside values marked secret (the connection string each resource keeps).
      const exported = await promisify(execFile)(path.join(t.env.PATH.split(":")[0], "pulumi"), ["stack", "export", "--stack", "test"], {
        cwd: t.dir,
        env: { ...process.env, ...t.env },
        maxBuffer: 1 << 28,
      });
      expect(exported.stdout).toContain(SECRET_SIG); // the real state, with its secrets encrypted
      const decrypted = await t.stack.exportStack();
      expect(JSON.stringify(decrypted).includes(password)).toBe(form.inUrl); // it is there, as a secret
      expect(outsideSecrets(decrypted, needles)).toEqual([]);
      const artifacts: Record<string, string> = {
        "pulumi stack export": exported.stdout + exported.stderr,
        "stack outputs (decrypted)": JSON.stringify(await t.stack.outputs()),
        "engine events": JSON.stringify(t.events),
        "engine log text": t.logText(),
        "pulumi up stdout/stderr": upText,
        "report (markdown)": report!.markdown,
        "report (svg)": report!.svg,
        "report (figures)": JSON.stringify(report!.figures),
        "report CLI stdout/stderr": cli!.stdout + cli!.stderr,
      };
      for (const f of filesUnder(t.stateDir)) artifacts[`file ${path.relative(t.stateDir, f.file)}`] = f.text;
      for (const f of filesUnder(path.dirname(out))) artifacts[`report file ${path.basename(f.file)}`] = f.text;
      for (const name of fs.readdirSync(t.dir).filter((n) => /^Pulumi\..*yaml$/.test(n)))
        artifacts[`project ${name}`] = fs.readFileSync(path.join(t.dir, name), "utf8");
      for (const [table, text] of Object.entries(await databaseText(db))) artifacts[`database ${table}`] = text;

      // The artifacts that matter are really there (a search of nothing proves nothing).
      const manifests = Object.keys(artifacts).filter((k) => k.endsWith("manifest.json"));
      expect(manifests).toHaveLength(1);
      expect(artifacts["database guardian.backups"]).toContain(JSON.parse(artifacts[manifests[0]]).backupId);
      expect(artifacts["database guardian.migration_journal"].length).toBeGreaterThan(0);
      expect(Object.keys(artifacts).some((k) => /^file \.pulumi\/stacks\//.test(k))).toBe(true);
      expect(fs.existsSync(out) && fs.existsSync(out.replace(/\.md$/, ".svg"))).toBe(true);

      const leaks = Object.entries(artifacts).flatMap(([where, text]) =>
        needles.filter((n) => text.includes(n)).map((n) => `${where} holds ${n === password ? "the password" : "the encoded password"}`),
      );
      expect(leaks).toEqual([]);

      // Where the database is named, it is named by the one redaction, with the password masked.
      const label = redactUrl(url);
      expect(JSON.parse(artifacts[manifests[0]]).database).toBe(label);
      expect(report!.figures.database).toBe(label);
      if (form.inUrl) expect(label).toContain("***");
    });
  }
});
