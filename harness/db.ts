/**
 * A fresh database per test, with the Guardian baseline, dropped afterwards. Cluster-wide roles (anon,
 * authenticated, service_role) are created idempotently by the baseline and never dropped.
 *
 * What a test starts from (the baseline, a seed, the real CRM's schema and data) is built once per test run into a
 * template database and copied for each test (`CREATE DATABASE ... TEMPLATE`): every test still writes to a database
 * of its own. Templates are named per run (GUARDIAN_TEST_RUN, set by test/globalSetup.ts, which drops them at the
 * end), so two runs side by side never copy from, or drop, each other's. Without GUARDIAN_TEST_RUN (a bench, a
 * script) each database is built directly.
 */
import * as crypto from "crypto";
import type { Client } from "pg";
import { ensureBaseline } from "../lib/baseline";
import { actAs, connect, inTransaction } from "../lib/db";
import { createDatabase, dropDatabase, findPgServer, type PgServer, scratchDatabases } from "../operations/shared/pgserver";

let serverPromise: Promise<PgServer> | undefined;
export function pgServer(): Promise<PgServer> {
  serverPromise ??= findPgServer();
  return serverPromise;
}

export interface TestDb {
  name: string;
  url: string;
  /** Runs a query on a short-lived connection (as the superuser/owner). */
  query<T = any>(sql: string, params?: unknown[]): Promise<T[]>;
  /** A connection the caller must end (use for sessions that SET ROLE etc.). */
  client(): Promise<Client>;
  drop(): Promise<void>;
}

export async function freshDb(opts: { baseline?: boolean; prefix?: string } = {}): Promise<TestDb> {
  if (opts.baseline === false) return emptyDb(opts.prefix);
  return fromTemplate(
    "baseline",
    async (db) => {
      const c = await db.client();
      try {
        await ensureBaseline(c);
      } finally {
        await c.end();
      }
    },
    opts.prefix,
  );
}

/** The prefix of every template database; a run's templates are `${TEMPLATE_PREFIX}${run}_...`. */
export const TEMPLATE_PREFIX = "gtpl_";

/** Drops the template databases of test run `run`, and any template whose mark is older than `staleHours` (a killed
 *  run's). Returns the names dropped. */
export async function dropTemplates(run: string, staleHours = 12): Promise<string[]> {
  const server = await pgServer();
  const now = Date.now();
  const doomed = (await scratchDatabases(server, TEMPLATE_PREFIX))
    .filter((d) => d.name.startsWith(`${TEMPLATE_PREFIX}${run}_`) || (d.created !== null && now - d.created.getTime() > staleHours * 3_600_000))
    .map((d) => d.name);
  for (const name of doomed) await dropDatabase(server, name);
  return doomed;
}

/** The last part of the name of a key's template (`${TEMPLATE_PREFIX}${run}_${digest}`). */
export const templateDigest = (key: string): string => crypto.createHash("sha256").update(key).digest("hex").slice(0, 12);

/**
 * A fresh database copied from the template that `build` makes, once per test run, for `key` (the same key, the same
 * starting point: put every parameter of the build in it). The first caller builds while holding an advisory lock on
 * the template's name; the others wait for it, then copy. A failed build leaves no template behind.
 */
export async function fromTemplate(key: string, build: (db: TestDb) => Promise<void>, prefix?: string): Promise<TestDb> {
  const run = process.env.GUARDIAN_TEST_RUN;
  if (!run) {
    // Outside a test run (a bench, a script) nothing would drop a template: build the database itself.
    const db = await emptyDb(prefix);
    try {
      await build(db);
    } catch (e) {
      await db.drop().catch(() => undefined);
      throw e;
    }
    return db;
  }
  if (!/^[a-z0-9]{1,24}$/.test(run)) throw new Error(`GUARDIAN_TEST_RUN must be 1-24 lowercase letters or digits, got "${run}"`);
  const server = await pgServer();
  const template = `${TEMPLATE_PREFIX}${run}_${templateDigest(key)}`;
  const admin = await connect(server.adminUrl);
  try {
    await admin.query("SELECT pg_advisory_lock(hashtext($1))", [template]);
    const exists = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [template]);
    if (!exists.rowCount) {
      const tpl = dbAt(server, template, await createDatabase(server, template));
      try {
        await build(tpl);
      } catch (e) {
        await tpl.drop().catch(() => undefined);
        throw e;
      }
    }
  } finally {
    await admin.end(); // ends the session, and with it the advisory lock
  }
  const name = `${prefix ?? "gt"}_${crypto.randomBytes(5).toString("hex")}`;
  return dbAt(server, name, await createDatabase(server, name, { template }));
}

async function emptyDb(prefix?: string): Promise<TestDb> {
  const server = await pgServer();
  const name = `${prefix ?? "gt"}_${crypto.randomBytes(5).toString("hex")}`;
  return dbAt(server, name, await createDatabase(server, name));
}

function dbAt(server: PgServer, name: string, url: string): TestDb {
  return {
    name,
    url,
    async query(sql, params) {
      const c = await connect(url);
      try {
        return (await c.query(sql, params as any[])).rows;
      } finally {
        await c.end();
      }
    },
    client: () => connect(url),
    drop: () => dropDatabase(server, name),
  };
}

/** Runs fn in a session that looks like a Supabase request: SET ROLE + request.jwt.claims. */
export async function asUser<T>(db: TestDb, who: { role: "anon" | "authenticated" | "service_role"; sub?: string }, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await db.client();
  try {
    return await inTransaction(c, async () => {
      await actAs(c, who);
      return fn(c);
    });
  } finally {
    await c.end();
  }
}
