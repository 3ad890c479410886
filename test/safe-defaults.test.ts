/**
 * Safe defaults (issue 13, item 4): the tools that create and drop things do so only where it is theirs to.
 *
 *   - Scratch databases (tests, demo, bench, rehearsal) go to GUARDIAN_TEST_DATABASE_URL, else a local server; never
 *     to DATABASE_URL. A server that is not on this machine is refused before any connection, unless
 *     GUARDIAN_TEST_ALLOW_REMOTE=1.
 *   - Only a database carrying the scratch mark (COMMENT ON DATABASE) is ever dropped, by dropDatabase or by
 *     createDatabase re-creating a leftover; any other database of that name is refused and keeps its rows.
 *   - The demo runs only on the project's own backend (it removes stack dev there): another backend is refused.
 *   - The rehearsal restores real customer exports: without a passphrase it is refused before it reads anything.
 */
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { connect } from "../lib/db";
import {
  assertLocalServer,
  createDatabase,
  dropDatabase,
  findPgServer,
  isLocalHost,
  isScratchDatabase,
  PROJECT_ROOT,
  SCRATCH_MARKER,
  ScratchRefusal,
  serverHosts,
} from "../operations/shared/pgserver";
import { demoBackend, projectBackendUrl, rehearsalPassphrase } from "../operations/shared/safeDefaults";
import { freshDb, pgServer } from "./helpers/db";

const REMOTE = "postgres://postgres:s3cr3t-pw@db.abcdefghij.supabase.co:5432/postgres";

/** Runs fn with some environment variables set (undefined: removed), then puts them back. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

function script(file: string, args: string[], env: Record<string, string | undefined>) {
  const e: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete e[k];
    else e[k] = v;
  }
  return spawnSync("node", ["-r", "ts-node/register/transpile-only", path.join(PROJECT_ROOT, file), ...args], {
    cwd: PROJECT_ROOT,
    env: e,
    encoding: "utf8",
    timeout: 120_000,
  });
}

describe("the scratch server: GUARDIAN_TEST_DATABASE_URL, local only unless told otherwise", () => {
  it("knows which hosts are this machine's", () => {
    for (const local of [
      "postgres://u@127.0.0.1:5432/d",
      "postgres://u@localhost/d",
      "postgres://u@[::1]:5432/d",
      "postgres://u@/d?host=/var/run/postgresql",
    ]) {
      expect(serverHosts(local).every(isLocalHost), local).toBe(true);
    }
    for (const remote of [REMOTE, "postgres://u@10.0.0.5/d", "postgres://u@192.168.1.2/d", "postgres://u@127.0.0.1/d?host=db.example.com"]) {
      expect(serverHosts(remote).every(isLocalHost), remote).toBe(false);
    }
  });

  it("refuses a non-local GUARDIAN_TEST_DATABASE_URL before connecting, naming the opt-in, never the password", async () => {
    const started = Date.now();
    const err = await withEnv({ GUARDIAN_TEST_DATABASE_URL: REMOTE, GUARDIAN_TEST_ALLOW_REMOTE: undefined }, () => findPgServer()).catch((e) => e);
    expect(err).toBeInstanceOf(ScratchRefusal);
    expect(err.message).toMatch(/GUARDIAN_TEST_DATABASE_URL points at db\.abcdefghij\.supabase\.co .*not this machine/);
    expect(err.message).toContain("GUARDIAN_TEST_ALLOW_REMOTE=1");
    expect(err.message).not.toContain("s3cr3t-pw");
    expect(Date.now() - started).toBeLessThan(1000); // refused, not timed out
  });

  it("refuses to create or drop a database on a non-local server, whoever asks", async () => {
    await withEnv({ GUARDIAN_TEST_ALLOW_REMOTE: undefined }, async () => {
      await expect(createDatabase(REMOTE, "gt_never")).rejects.toThrow(ScratchRefusal);
      await expect(dropDatabase(REMOTE, "postgres")).rejects.toThrow(/not this machine/);
      expect(() => assertLocalServer(REMOTE)).toThrow(ScratchRefusal);
    });
  });

  it("with GUARDIAN_TEST_ALLOW_REMOTE=1 goes past the refusal (and here fails only because nothing answers)", async () => {
    const unroutable = "postgres://postgres@203.0.113.1:5432/postgres"; // TEST-NET-3: nothing answers there
    const err = await withEnv({ GUARDIAN_TEST_DATABASE_URL: unroutable, GUARDIAN_TEST_ALLOW_REMOTE: "1" }, () => findPgServer()).catch((e) => e);
    expect(err).not.toBeInstanceOf(ScratchRefusal);
    expect(err.message).toMatch(/GUARDIAN_TEST_DATABASE_URL is set but does not answer/);
  }, 30_000);

  it("no script, helper, bench or CI file takes DATABASE_URL as its server", () => {
    const files = [
      "operations/shared/pgserver.ts",
      "scripts/setup.sh",
      "scripts/demo.sh",
      "scripts/demo.ts",
      "scripts/test.sh",
      "scripts/rehearse.ts",
      "operations/rehearse.ts",
      ".ci/run",
      ".github/workflows/guardian.yml",
      ...fs.readdirSync(path.join(PROJECT_ROOT, "test/helpers")).map((f) => `test/helpers/${f}`),
      ...fs
        .readdirSync(path.join(PROJECT_ROOT, "bench"))
        .filter((f) => f.endsWith(".ts"))
        .map((f) => `bench/${f}`),
      ...(fs.readdirSync(path.join(PROJECT_ROOT, "harness"), { recursive: true }) as string[]).filter((f) => f.endsWith(".ts")).map((f) => `harness/${f}`),
    ];
    for (const f of files) {
      const lines = fs.readFileSync(path.join(PROJECT_ROOT, f), "utf8").split("\n");
      // Every mention is GUARDIAN_TEST_DATABASE_URL, or says that DATABASE_URL is not used.
      const uses = lines.filter((l) => /(?<!GUARDIAN_TEST_)DATABASE_URL/.test(l) && !/ignored|never DATABASE_URL|not DATABASE_URL|never read here/.test(l));
      expect(uses, f).toEqual([]);
    }
  });

  it("ignores DATABASE_URL, even one pointing at a remote application database", async () => {
    const logged: string[] = [];
    const s = await withEnv({ DATABASE_URL: REMOTE, GUARDIAN_TEST_DATABASE_URL: undefined }, () => findPgServer((l) => logged.push(l)));
    expect(s.source).toBe("local");
    expect(s.adminUrl).not.toContain("supabase");
    expect(logged.join("\n")).toMatch(/DATABASE_URL is ignored here/);
  });
});

describe("only databases created and marked here are dropped", () => {
  const raw: string[] = [];
  afterAll(async () => {
    const server = await pgServer();
    const c = await connect(server.adminUrl);
    try {
      for (const name of raw) await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    } finally {
      await c.end();
    }
  });

  /** A database made by someone else: plain CREATE DATABASE, a table with a row. */
  async function foreignDb(): Promise<{ name: string; url: string }> {
    const server = await pgServer();
    const name = `gt_foreign_${crypto.randomBytes(4).toString("hex")}`;
    const c = await connect(server.adminUrl);
    try {
      await c.query(`CREATE DATABASE ${name}`);
    } finally {
      await c.end();
    }
    raw.push(name);
    const url = server.urlFor(name);
    const d = await connect(url);
    try {
      await d.query(`CREATE TABLE precious (v text); INSERT INTO precious VALUES ('still here')`);
    } finally {
      await d.end();
    }
    return { name, url };
  }

  async function precious(url: string): Promise<string[]> {
    const d = await connect(url);
    try {
      return (await d.query(`SELECT v FROM precious`)).rows.map((r: any) => r.v);
    } finally {
      await d.end();
    }
  }

  it("a database without the mark is never dropped: dropDatabase refuses and the rows stay", async () => {
    const server = await pgServer();
    const f = await foreignDb();
    const err = await dropDatabase(server, f.name).catch((e) => e);
    expect(err).toBeInstanceOf(ScratchRefusal);
    expect(err.message).toContain(`database ${f.name}`);
    expect(err.message).toContain(SCRATCH_MARKER);
    expect(await precious(f.url)).toEqual(["still here"]);
  });

  it("createDatabase does not drop and re-create a database of the same name without the mark", async () => {
    const server = await pgServer();
    const f = await foreignDb();
    await expect(createDatabase(server, f.name)).rejects.toThrow(/refusing to drop and re-create it/);
    expect(await precious(f.url)).toEqual(["still here"]);
    expect(await isScratchDatabase(server, f.name)).toBe(false);
  });

  it("the databases tests create carry the mark, and only they are dropped (a leftover is re-created)", async () => {
    const server = await pgServer();
    const db = await freshDb({ baseline: false, prefix: "gt_marked" });
    const [{ comment }] = await db.query(`SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = current_database()`);
    expect(comment.startsWith(SCRATCH_MARKER)).toBe(true);
    await db.query(`CREATE TABLE leftover (x int)`);
    await createDatabase(server, db.name); // a marked leftover of an earlier run: dropped and created afresh
    expect(await db.query(`SELECT to_regclass('leftover') IS NULL AS gone`)).toEqual([{ gone: true }]);
    await db.drop();
    expect(await isScratchDatabase(server, db.name)).toBe(false);
    await dropDatabase(server, db.name); // absent: nothing to do
  });
});

describe("the demo touches only the project's own backend", () => {
  const own = projectBackendUrl(PROJECT_ROOT);

  it("sets PULUMI_BACKEND_URL itself when none is given, and accepts a folder under <project>/.guardian", () => {
    expect(demoBackend({}, PROJECT_ROOT)).toEqual({ url: own });
    expect(demoBackend({ PULUMI_BACKEND_URL: own }, PROJECT_ROOT)).toEqual({ url: own });
    expect(demoBackend({ PULUMI_BACKEND_URL: `file://${PROJECT_ROOT}/.guardian/demo-state` }, PROJECT_ROOT)).toEqual({
      url: `file://${PROJECT_ROOT}/.guardian/demo-state`,
    });
  });

  it("refuses any other backend: another folder, the home directory, a bucket, Pulumi Cloud", () => {
    for (const url of [
      "file:///tmp/another-project/state",
      "file://~",
      `file://${PROJECT_ROOT}/../elsewhere`,
      `file://${PROJECT_ROOT}`,
      "s3://bucket/state",
      "https://api.pulumi.com",
    ]) {
      const r = demoBackend({ PULUMI_BACKEND_URL: url }, PROJECT_ROOT);
      expect(r, url).toHaveProperty("refused");
      expect((r as any).refused).toContain(own);
    }
  });

  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it("npm run demo with a foreign PULUMI_BACKEND_URL exits 2 before any step, and that backend is untouched", () => {
    const foreign = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-foreign-backend-"));
    dirs.push(foreign);
    fs.mkdirSync(path.join(foreign, ".pulumi", "stacks", "guardian-credits"), { recursive: true });
    fs.writeFileSync(path.join(foreign, ".pulumi", "stacks", "guardian-credits", "dev.json"), '{"another":"project"}');
    const before = fs.readdirSync(foreign, { recursive: true }).sort();
    const r = script("scripts/demo.ts", ["--orgs", "10"], { PULUMI_BACKEND_URL: `file://${foreign}`, DATABASE_URL: undefined });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/demo refused: PULUMI_BACKEND_URL is file:\/\/.*guardian-foreign-backend-.*not a folder of this project/);
    expect(r.stdout).not.toMatch(/=== 1\/6/);
    expect(fs.readdirSync(foreign, { recursive: true }).sort()).toEqual(before);
    expect(fs.readFileSync(path.join(foreign, ".pulumi", "stacks", "guardian-credits", "dev.json"), "utf8")).toBe('{"another":"project"}');
  });
});

describe("the rehearsal requires a passphrase for real exports", () => {
  it("has no default passphrase: unset or empty is refused; a passphrase or a passphrase file is taken", () => {
    expect(rehearsalPassphrase({})).toHaveProperty("refused");
    expect(rehearsalPassphrase({ PULUMI_CONFIG_PASSPHRASE: "" })).toHaveProperty("refused");
    expect(rehearsalPassphrase({ PULUMI_CONFIG_PASSPHRASE: "p" })).toEqual({ env: { PULUMI_CONFIG_PASSPHRASE: "p" } });
    expect(rehearsalPassphrase({ PULUMI_CONFIG_PASSPHRASE_FILE: "/run/secrets/p" })).toEqual({ env: { PULUMI_CONFIG_PASSPHRASE_FILE: "/run/secrets/p" } });
    expect(rehearsalPassphrase({}, false)).toEqual({ env: {} }); // --restore-only opens no stack
  });

  it("npm run rehearse without a passphrase exits 2 before reading the export or creating a database", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-rehearse-nopass-"));
    try {
      const database = `gt_nopass_${crypto.randomBytes(4).toString("hex")}`;
      const r = script("scripts/rehearse.ts", ["--export-root", root, "--database", database], {
        PULUMI_CONFIG_PASSPHRASE: undefined,
        PULUMI_CONFIG_PASSPHRASE_FILE: undefined,
      });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/rehearse refused: no passphrase/);
      expect(r.stderr).toMatch(/PULUMI_CONFIG_PASSPHRASE .*PULUMI_CONFIG_PASSPHRASE_FILE/);
      expect(r.stdout).not.toMatch(/rehearsal 1\/5|scratch database/);
      expect(fs.existsSync(path.join(PROJECT_ROOT, ".guardian", "rehearsal", database))).toBe(false);
      // With a passphrase, the same command goes on to look for the export (and finds none in the empty folder).
      const withPass = script("scripts/rehearse.ts", ["--export-root", root, "--database", database], { PULUMI_CONFIG_PASSPHRASE: "a passphrase" });
      expect(withPass.stderr).not.toMatch(/no passphrase/);
      expect(withPass.stdout).toMatch(/rehearsal 1\/5 export/);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
