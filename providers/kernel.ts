/**
 * The provider kernel: what every dynamic provider of providers/ does, written once.
 *
 *   types        Provider<Inputs, Outputs>: a typed pulumi.dynamic.ResourceProvider (structurally one: the resource
 *                classes hand it to pulumi.dynamic.Resource). `Recorded<O>` is what the engine hands back (outputs
 *                written by this version of the provider or an earlier one, so any field may be missing);
 *                ResourceArgs<I> the inputs as a program declares them (each a pulumi.Input).
 *   connection   the connection string (always a secret) and the TLS settings (lib/pgConnection.ts, the program's one
 *                TLS rule): connectionProps() makes them secret as they should be; connect() / withConnection();
 *                a rotated secret or new TLS settings is recorded in place (connectionChanged, recordConnection).
 *   lock retries ONE policy, driven by guardian:ddl (lockTimeoutMs, retries): each attempt waits at most
 *                lockTimeoutMs for a lock; a lock timeout, deadlock or serialization failure is retried up to
 *                `retries` times, after 100 ms, 200 ms, 400 ms... (at most 5 s).
 *   transactions transaction(): BEGIN [ISOLATION LEVEL], the program's DDL advisory lock, SET LOCAL lock_timeout and
 *                other settings in one round trip; COMMIT (with a statement sent along, e.g. the journal entry);
 *                ROLLBACK on any error. retriedTransaction() = transaction() under the lock-retry policy.
 *                rolledBack(): a transaction that is always rolled back (trial calls).
 *   journal      THE writer of guardian.migration_journal rows (step, object_name, details): journalSql() / journal().
 *   SQL errors   sqlError(): a Postgres error located in the SQL file that raised it (lib/sql.ts describeSqlError, the
 *                one implementation, as explainSqlError), prefixed with the resource's label.
 *
 * Closures: the providers' methods are serialized into the state with what they use of this module (Pulumi captures
 * local modules by value). So it keeps no state and holds no secret; `pg` is required inside lib/pgConnection.ts's
 * connectClient, at run time; the pg types below are type-only imports (erased). What it throws is a plain Error:
 * a class extending Error does not survive the serialization (its constructor's super() sets no message).
 */
import * as pulumi from "@pulumi/pulumi";
import type { Client } from "pg";
import { connectClient, connectionChanged as tlsOrUrlChanged, recordConnection as recordNewConnection, tlsInputProblem } from "../lib/pgConnection";
import type { TlsSettings } from "../lib/pgConnection";
import { describeSqlError } from "../lib/sql";

// ---------------------------------------------------------------------------------------------------------- types

/** A connected client, as the providers use it. */
export type Db = Pick<Client, "query">;

/** What every provider's inputs carry. */
export interface Connection {
  /** Connection string (a secret in state). */
  databaseUrl: string;
  /** TLS settings from guardian:tls; omitted: the connection string's sslmode, else libpq's default prefer. */
  tls?: TlsSettings;
}

/**
 * What the engine hands back to diff, read, update and delete: the outputs this provider recorded, possibly by an
 * earlier version of it (Pulumi keeps no schema: a field added since is missing), or what a refresh left.
 */
export type Recorded<O> = Partial<O>;

/** One property's change, as newer Pulumi SDKs read it (3.248's dynamic provider host ignores it; harmless). */
export interface PropertyDiff {
  kind: "add" | "add-replace" | "update" | "update-replace" | "delete" | "delete-replace";
  inputDiff: boolean;
}

export interface Diff extends pulumi.dynamic.DiffResult {
  readonly detailedDiff?: Record<string, PropertyDiff>;
}

/**
 * A dynamic provider with typed inputs and outputs. Structurally a pulumi.dynamic.ResourceProvider (whose methods take
 * `any`): a value of this type is what pulumi.dynamic.Resource's constructor takes.
 */
export interface Provider<I extends Connection, O extends I> {
  check?(olds: Recorded<I>, news: I): Promise<pulumi.dynamic.CheckResult<I>>;
  diff(id: string, olds: Recorded<O>, news: I): Promise<Diff>;
  create(inputs: I): Promise<{ id: string; outs: O }>;
  /** An empty id: the thing is gone (a refresh drops it from state; the next preview shows a create). */
  read(id: string, props: Recorded<O>): Promise<{ id: string; props: Recorded<O> }>;
  update(id: string, olds: Recorded<O>, news: I): Promise<{ outs: Recorded<O> }>;
  delete(id: string, props: Recorded<O>): Promise<void>;
}

/** The inputs a program declares for a provider with inputs I: each a pulumi.Input; `tlsSecret` says to keep tls secret. */
export type ResourceArgs<I extends Connection> = { [K in keyof I]: pulumi.Input<I[K]> } & {
  /** The TLS settings came from a secret config value: keep them secret in state. */
  tlsSecret?: boolean;
};

/** A JSON value (journal details, facts). */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

// ----------------------------------------------------------------------------------------------------- connection

/**
 * The resource's inputs with the connection made secret: the connection string always, the TLS settings when they came
 * from a secret config value (a root certificate is public otherwise); tls omitted when not set. And the matching
 * additionalSecretOutputs.
 */
export function connectionProps<A extends ResourceArgs<Connection>>(args: A): { props: Omit<A, "tlsSecret">; secretOutputs: string[] } {
  const { tlsSecret, tls, ...rest } = args;
  const props = {
    ...rest,
    databaseUrl: pulumi.secret(args.databaseUrl),
    ...(tls === undefined ? {} : { tls: tlsSecret ? pulumi.secret(tls) : tls }),
  };
  return { props: props as Omit<A, "tlsSecret">, secretOutputs: ["databaseUrl", ...(tls !== undefined && tlsSecret ? ["tls"] : [])] };
}

/**
 * One output of a resource, declared with its type: `recorded<number>()`. A resource's outputs are declared once, as
 * an object of these (its doc comments are the outputs' docs); at run time only the names count.
 */
export interface Slot<T> {
  readonly type?: T;
}
export const recorded = <T>(): Slot<T> => ({});

/** The values a declaration of outputs records: { name: type }. */
export type RecordedBy<S> = { -readonly [K in keyof S]: S[K] extends Slot<infer T> ? T : never };

/** The outputs as the program reads them from the resource: each a pulumi.Output. */
export type OutputsOf<S> = { readonly [K in keyof S]: pulumi.Output<RecordedBy<S>[K]> };

/** A class of connectedResource(): constructed as a program declares it, its outputs as typed fields. */
export type ConnectedResourceClass<A, S> = new (name: string, args: A, opts?: pulumi.CustomResourceOptions) => pulumi.dynamic.Resource & OutputsOf<S>;

/**
 * The resource class of a dynamic provider of this program, type token pulumi-nodejs:dynamic/guardian:<type>: its
 * connection made secret (connectionProps, with the matching additionalSecretOutputs) and its outputs (`outputs`, the
 * one declaration of them) unknown until the provider sets them. `options` are added to every instance's (e.g.
 * retainOnDelete). Nothing else differs between the resources.
 */
export function connectedResource<I extends Connection, S extends Record<string, Slot<unknown>>, A extends ResourceArgs<Connection> = ResourceArgs<I>>(
  provider: Provider<I, I & RecordedBy<S>>,
  type: string,
  outputs: S,
  options: pulumi.CustomResourceOptions = {},
): ConnectedResourceClass<A, S> {
  const unknownOutputs = Object.fromEntries(Object.keys(outputs).map((o) => [o, undefined]));
  class Connected extends pulumi.dynamic.Resource {
    constructor(name: string, args: A, opts?: pulumi.CustomResourceOptions) {
      const { props, secretOutputs } = connectionProps(args);
      super(provider, name, { ...props, ...unknownOutputs }, { ...opts, ...options, additionalSecretOutputs: secretOutputs }, "guardian", type);
    }
  }
  return Connected as unknown as ConnectedResourceClass<A, S>;
}

/** check(): the tls input is undefined or TLS settings. */
export function connectionFailures(news: Partial<Connection>): pulumi.dynamic.CheckFailure[] {
  const problem = tlsInputProblem(news.tls);
  return problem ? [{ property: "tls", reason: problem }] : [];
}

/** diff(): the connection string or the TLS settings changed (a rotated secret: recorded in place, nothing re-run). */
export function connectionChanged(olds: Partial<Connection>, news: Partial<Connection>): boolean {
  return tlsOrUrlChanged(olds, news);
}

/** update() when only the connection changed: what was recorded, with the new connection string and TLS settings. */
export function recordConnection<O extends Connection>(olds: Recorded<O>, news: Connection): Recorded<O> {
  return recordNewConnection(olds, news);
}

/**
 * A connected client (application_name guardian-credits:<app>) under lib/pgConnection.ts's TLS rule. A failure keeps
 * its code (and the TLS explanation); the connection string never appears in its message. The caller ends the client.
 */
export async function connect(conn: Partial<Connection>, app: string): Promise<Client> {
  const url = conn.databaseUrl;
  if (typeof url !== "string" || url === "") throw new Error(`guardian-credits:${app}: no databaseUrl recorded for this resource`);
  try {
    return await connectClient(url, conn.tls, { application_name: `guardian-credits:${app}` });
  } catch (e) {
    const message = errorMessage(e);
    if (!message.includes(url)) throw e;
    throw Object.assign(new Error(message.split(url).join("<databaseUrl>")), { code: errorCode(e), tls: (e as { tls?: boolean }).tls });
  }
}

/** fn with a connected client, always ended. */
export async function withConnection<T>(conn: Partial<Connection>, app: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await connect(conn, app);
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

import { errorCode, errorMessage } from "../lib/errors";

export { errorCode, errorMessage };

// --------------------------------------------------------------------------------------------------- lock retries

/** guardian:ddl, as the providers receive it: lockTimeoutMs and retries (lib/config.ts; defaults 2,000 and 10). */
export interface LockPolicy {
  lockTimeoutMs?: number;
  retries?: number;
}

/** The policy with guardian:ddl's defaults filled in, checked. */
export function lockPolicy(p: LockPolicy, label: string): { lockTimeoutMs: number; retries: number } {
  const lockTimeoutMs = Math.floor(Number(p.lockTimeoutMs ?? 2000));
  const retries = Math.floor(Number(p.retries ?? 10));
  if (!Number.isFinite(lockTimeoutMs) || lockTimeoutMs < 0) throw new Error(`${label}: lockTimeoutMs must be a non-negative number, got ${p.lockTimeoutMs}`);
  if (!Number.isFinite(retries) || retries < 0) throw new Error(`${label}: retries must be a non-negative number, got ${p.retries}`);
  return { lockTimeoutMs, retries };
}

/** lock_not_available (lock_timeout), deadlock_detected, serialization_failure: worth another attempt. */
export function isLockConflict(e: unknown): boolean {
  const code = errorCode(e);
  return code === "55P03" || code === "40P01" || code === "40001";
}

/** The wait before retry n+1 (n from 0): 100 ms doubling, at most 5 s. */
export function retryDelayMs(attempt: number): number {
  return Math.min(5000, 100 * 2 ** attempt);
}

/**
 * fn, run again while it fails on a lock conflict, at most `retries` more times (the policy above), each retry said as
 * `<label>: lock not available (<SQLSTATE>), retry n/retries`. fn must be safe to repeat (each attempt a transaction
 * rolled back on failure). Any other error, or the last attempt's, is thrown as it is.
 */
export async function withLockRetries<T>(policy: LockPolicy, label: string, fn: (attempt: number) => Promise<T>): Promise<T> {
  const { retries } = lockPolicy(policy, label);
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      if (!isLockConflict(e) || attempt >= retries) throw e;
      console.log(`${label}: lock not available (${errorCode(e)}), retry ${attempt + 1}/${retries}`);
      await new Promise((r) => setTimeout(r, retryDelayMs(attempt)));
    }
  }
}

// --------------------------------------------------------------------------------------------------- transactions

export interface TxOptions {
  /** BEGIN ISOLATION LEVEL ...; default the server's (read committed). */
  isolation?: "REPEATABLE READ" | "SERIALIZABLE";
  /** Take the program's DDL advisory lock first (before lock_timeout applies, so it waits its turn): the engine runs
   *  independent resources in parallel and their DDL touches shared catalog rows. Application traffic is unaffected. */
  ddlLock?: boolean;
  /** SET LOCAL lock_timeout (ms). */
  lockTimeoutMs?: number;
  /** Further SET LOCAL settings, e.g. { synchronous_commit: "off" }. Names and values are the program's own. */
  settings?: Record<string, string>;
}

export interface Tx {
  /** A statement sent with the COMMIT, in the same round trip (a literal statement: no parameters), e.g. journalSql(). */
  atCommit(sql: string): void;
}

/** The advisory lock that serializes the program's DDL (sqlObject, the backup's bootstrap). */
export const DDL_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('guardian-credits:ddl'))";

/** fn in a transaction: opened with its settings in one round trip, committed, or rolled back on any error. */
export async function transaction<T>(c: Db, opts: TxOptions, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const open = [opts.isolation ? `BEGIN ISOLATION LEVEL ${opts.isolation}` : "BEGIN"];
  if (opts.ddlLock) open.push(DDL_LOCK_SQL);
  if (opts.lockTimeoutMs !== undefined) open.push(`SET LOCAL lock_timeout = ${Math.floor(opts.lockTimeoutMs)}`);
  for (const [k, v] of Object.entries(opts.settings ?? {})) open.push(`SET LOCAL ${k} = ${v}`);
  const withCommit: string[] = [];
  try {
    await c.query(open.join("; "));
    const r = await fn({ atCommit: (sql) => void withCommit.push(sql) });
    await c.query([...withCommit, "COMMIT"].join("; "));
    return r;
  } catch (e) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}

/** transaction() with lock_timeout = the policy's, retried on a lock conflict as the policy says. */
export async function retriedTransaction<T>(
  c: Db,
  policy: LockPolicy,
  label: string,
  opts: Omit<TxOptions, "lockTimeoutMs">,
  fn: (tx: Tx, attempt: number) => Promise<T>,
): Promise<T> {
  const { lockTimeoutMs } = lockPolicy(policy, label);
  return withLockRetries(policy, label, (attempt) => transaction(c, { ...opts, lockTimeoutMs }, (tx) => fn(tx, attempt)));
}

/** fn in a transaction that is always rolled back (trial calls: nothing they do stays): lib/db.ts's. */
export { rolledBack } from "../lib/db";

// -------------------------------------------------------------------------------------------------------- journal

/** One row of guardian.migration_journal: ids, counts and hashes only (its trigger refuses personal data). */
export interface JournalEntry {
  step: string;
  objectName: string;
  details: { [key: string]: Json };
}

/** A string as a SQL literal whatever standard_conforming_strings says, with no `$` (safe inside a DO block). */
function literal(s: string): string {
  return `E'${s.replace(/\\/g, "\\\\").replace(/'/g, "''").replace(/\$/g, "\\x24")}'`;
}

/**
 * The journal entry as one literal SQL statement (so it can go with a COMMIT, Tx.atCommit). optional: skipped while
 * guardian.migration_journal does not exist yet (steps that may run before the internal schema is created).
 */
export function journalSql(entry: JournalEntry, opts: { optional?: boolean } = {}): string {
  const insert =
    `INSERT INTO guardian.migration_journal (step, object_name, details) ` +
    `VALUES (${literal(entry.step)}, ${literal(entry.objectName)}, ${literal(JSON.stringify(entry.details))}::jsonb)`;
  return opts.optional ? `DO $j$ BEGIN IF to_regclass('guardian.migration_journal') IS NOT NULL THEN ${insert}; END IF; END $j$` : insert;
}

/** Writes the journal entry (in the caller's transaction, if one is open). */
export async function journal(c: Db, entry: JournalEntry, opts: { optional?: boolean } = {}): Promise<void> {
  await c.query(journalSql(entry, opts));
}

// ----------------------------------------------------------------------------------------------------- SQL errors

/**
 * A Postgres error raised by `text` (sql/<file>) as an error naming the resource, the file, line and column, with a
 * caret, SQLSTATE, detail and hint (lib/sql.ts describeSqlError, the one implementation; a plain Error, as a class
 * extending Error loses its message in the serialized provider). Anything that is not a Postgres error is returned as
 * it is.
 */
export function sqlError(e: unknown, file: string, text: string, label: string): unknown {
  const d = describeSqlError(e, file, text);
  return d ? Object.assign(new Error(`${label}: ${d.message}`), { code: d.code }) : e;
}

// ---------------------------------------------------------------------------------------------------------- diffs

/**
 * A diff from the names of what changed: an update unless a name is in `replaces`; `stateOnly` names changed in the
 * recorded state, not in the inputs (drift found by a refresh).
 */
export function diffOf(changed: string[], opts: { replaces?: string[]; deleteBeforeReplace?: boolean; stateOnly?: string[] } = {}): Diff {
  const replaces = opts.replaces ?? [];
  const keys = [...new Set([...changed, ...replaces])];
  const detailedDiff: Record<string, PropertyDiff> = {};
  for (const k of keys) {
    detailedDiff[k] = { kind: replaces.includes(k) ? "update-replace" : "update", inputDiff: !(opts.stateOnly ?? []).includes(k) };
  }
  return {
    changes: keys.length > 0,
    replaces,
    ...(opts.deleteBeforeReplace !== undefined ? { deleteBeforeReplace: opts.deleteBeforeReplace } : {}),
    detailedDiff,
  };
}
