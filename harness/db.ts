/**
 * A fresh database per test, with the Guardian baseline, dropped afterwards. Cluster-wide roles (anon,
 * authenticated, service_role) are created idempotently by the baseline and never dropped.
 */
import * as crypto from "crypto";
import type { Client } from "pg";
import { ensureBaseline } from "../lib/baseline";
import { connect } from "../lib/db";
import { createDatabase, dropDatabase, findPgServer, type PgServer } from "../operations/shared/pgserver";

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
  const server = await pgServer();
  const name = `${opts.prefix ?? "gt"}_${crypto.randomBytes(5).toString("hex")}`;
  const url = await createDatabase(server, name);
  const db: TestDb = {
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
  if (opts.baseline !== false) {
    const c = await connect(url);
    try {
      await ensureBaseline(c);
    } finally {
      await c.end();
    }
  }
  return db;
}

/** Runs fn in a session that looks like a Supabase request: SET ROLE + request.jwt.claims. */
export async function asUser<T>(db: TestDb, who: { role: "anon" | "authenticated" | "service_role"; sub?: string }, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await db.client();
  try {
    await c.query("BEGIN");
    const claims = JSON.stringify(who.sub ? { sub: who.sub, role: who.role } : { role: who.role });
    await c.query("SELECT set_config('request.jwt.claims', $1, true)", [claims]);
    await c.query(`SET LOCAL ROLE ${who.role}`);
    const r = await fn(c);
    await c.query("COMMIT");
    return r;
  } catch (e) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw e;
  } finally {
    await c.end();
  }
}
