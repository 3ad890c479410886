/**
 * Connections to the Guardian database. One client per call, always closed; the connection string is a secret and is
 * never printed: redactUrl() is what logs and reports show.
 *
 * Dynamic providers must not capture this module's closures with secrets in them; they import it inside their methods.
 */
import type { Client, ClientConfig } from "pg";

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "<unparseable connection string>";
  }
}

/** Describes a connection failure without echoing the connection string. */
export function explainConnectError(err: any, url: string): Error {
  const where = redactUrl(url);
  const code = err?.code ? ` [${err.code}]` : "";
  let why = String(err?.message ?? err);
  if (err?.code === "28P01" || /password authentication failed/i.test(why)) why = "password authentication failed";
  else if (err?.code === "ECONNREFUSED") why = "connection refused (is the server running and listening there?)";
  else if (err?.code === "ENOTFOUND" || err?.code === "EAI_AGAIN") why = "host name does not resolve";
  else if (err?.code === "3D000") why = "database does not exist";
  else if (err?.code === "ETIMEDOUT" || /timeout/i.test(why)) why = "connection timed out";
  // pg can echo the raw string in some messages; never let a password through.
  why = why.split(url).join(where);
  return new Error(`cannot connect to the Guardian database at ${where}: ${why}${code}`);
}

export async function connect(url: string, extra: Partial<ClientConfig> = {}): Promise<Client> {
  const { Client } = require("pg") as typeof import("pg");
  const client = new Client({
    connectionString: url,
    connectionTimeoutMillis: 10000,
    application_name: "guardian-credits",
    ...extra,
  });
  client.on("error", () => undefined); // a dropped connection surfaces on the next query
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => undefined);
    throw explainConnectError(e, url);
  }
  return client;
}

export async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = await connect(url);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function inTransaction<T>(c: Client, fn: () => Promise<T>): Promise<T> {
  await c.query("BEGIN");
  try {
    const r = await fn();
    await c.query("COMMIT");
    return r;
  } catch (e) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}

export interface LockOptions {
  lockTimeoutMs: number;
  retries: number;
  /** Called before each retry, e.g. to print progress. */
  onRetry?: (attempt: number, err: Error) => void;
}

/** SQLSTATEs worth retrying: lock_not_available (lock_timeout), deadlock, serialization failure. */
const RETRYABLE = new Set(["55P03", "40P01", "40001"]);

/**
 * Runs fn in a transaction with a short lock_timeout, retrying (with backoff) when a lock could not be had. This keeps
 * DDL from queueing behind a long transaction and blocking every application query behind itself.
 */
export async function withShortLocks<T>(c: Client, opts: LockOptions, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await inTransaction(c, async () => {
        await c.query(`SET LOCAL lock_timeout = ${Math.floor(opts.lockTimeoutMs)}`);
        return fn();
      });
    } catch (e: any) {
      if (!RETRYABLE.has(e?.code) || attempt >= opts.retries) throw e;
      opts.onRetry?.(attempt + 1, e);
      await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** attempt) + Math.random() * 100));
    }
  }
}
