/**
 * SqlObject: one database object (a function, a policy, a set of columns, a grant) managed from a SQL file.
 *
 *   check   inputs are complete; the SQL is not empty
 *   create  runs the SQL (idempotent by construction: CREATE OR REPLACE / IF NOT EXISTS / DROP ... IF EXISTS + CREATE)
 *           in one transaction with a short lock_timeout, retried, serialised with the program's other DDL by an
 *           advisory lock; then probes the live object, runs its checkSql (trial calls of a function, in the same
 *           transaction: a failure rolls the whole change back, so what was there before keeps serving), and records
 *           its fingerprint. A create retried after a crash converges to the same object.
 *   read    probes the live object. No row means the object is gone: no id is returned, so a refresh drops it from
 *           state and the next preview shows it as a create. Otherwise the live fingerprint is recorded, so an edit
 *           made by hand shows up as drift.
 *   diff    an update when the SQL text changed (the diff shows the SQL) or the live object drifted from what was
 *           applied; a replacement when the object's identity (kind, objectName) changed. A rotated connection
 *           string is an update too (shown as [secret]), so later refreshes and deletes use the new credential.
 *   update  re-runs the SQL, like create; when only the connection string changed, records it and runs nothing.
 *   delete  runs dropSql (which uses IF EXISTS, so absence is fine); with no dropSql the object is retained.
 *
 * The connection, the lock-retry policy (guardian:ddl), the transactions, the journal entry and the located SQL errors
 * are the provider kernel's (providers/kernel.ts); methods capture no secret: the connection string arrives as a secret
 * input, the TLS settings as the `tls` input.
 */
import type * as pulumi from "@pulumi/pulumi";
import type { Client } from "pg";
import {
  connect,
  connectionChanged,
  connectionFailures,
  connectedResource,
  recorded,
  type RecordedBy,
  type Db,
  diffOf,
  errorCode,
  errorMessage,
  journal,
  lockPolicy,
  type Provider,
  recordConnection,
  type Recorded,
  type ResourceArgs,
  retriedTransaction,
  sqlError,
  withConnection,
  withLockRetries,
} from "./kernel";
import type { Connection } from "./kernel";

export interface SqlObjectInputs extends Connection {
  /** What kind of object this is ("function", "policy", "columns", "grants", "table", ...). Part of its identity. */
  kind: string;
  /** The object's qualified name, e.g. "public.consume_credits_rpc(uuid,text,integer,text)". Part of its identity. */
  objectName: string;
  /** The SQL file the statement came from, relative to sql/ (for error messages and the report). */
  sqlFile: string;
  /** The SQL applied on create and update. Shown in preview when it changes. */
  sql: string;
  sqlSha256: string;
  /** A query returning one row with a text column `fingerprint` for the live object, or no row if it is absent. */
  probeSql: string;
  /** How to remove the object (must tolerate absence). Empty: retained on delete. */
  dropSql?: string;
  /** guardian:ddl: short lock timeout for the DDL, and how many times to retry when it expires. */
  lockTimeoutMs?: number;
  retries?: number;
  /** false: the SQL (one statement) runs outside a transaction, e.g. CREATE INDEX CONCURRENTLY. Default true. */
  transaction?: boolean;
  /** Facts about the object for the policy pack (docs/architecture.md), e.g. a function's securityDefiner. */
  meta?: Record<string, unknown>;
  /** Run after the SQL and the probe, in the same transaction; an error rolls the change back (e.g. trial calls of
   *  a function just replaced: sql/verification/trial_calls.sql). Must leave nothing behind. */
  checkSql?: string;
}

/** What a SqlObject records beyond its inputs: the resource's outputs, declared once. */
export const SQL_OBJECT_OUTPUTS = {
  /** Fingerprint of the live object right after the SQL was applied. */
  appliedFingerprint: recorded<string>(),
  /** Fingerprint of the live object when last read (differs from appliedFingerprint after a manual edit). */
  liveFingerprint: recorded<string>(),
  appliedAt: recorded<string>(),
};

/** Recorded: the inputs with their defaults filled in, and the outputs. */
export type SqlObjectOutputs = SqlObjectInputs &
  RecordedBy<typeof SQL_OBJECT_OUTPUTS> & {
    dropSql: string;
    lockTimeoutMs: number;
    retries: number;
  };

export type SqlObjectArgs = ResourceArgs<SqlObjectInputs>;

const IDENTITY_KEYS = ["kind", "objectName"] as const;
const APP = "sql-object";

type Fingerprint = { fingerprint: unknown };

async function apply(inputs: SqlObjectInputs): Promise<SqlObjectOutputs> {
  const label = `${inputs.kind} ${inputs.objectName}`;
  let client: Client;
  try {
    client = await connect(inputs, APP);
  } catch (e) {
    throw new Error(`${label}: cannot connect to the database: ${errorCode(e) ?? ""} ${errorMessage(e)}`);
  }
  const c = client;
  try {
    const policy = lockPolicy(inputs, label);
    const fp = inputs.transaction === false ? await applyOutsideTransaction(c, inputs, label) : await applyInTransaction(c, inputs, label);
    return {
      ...inputs,
      dropSql: inputs.dropSql ?? "",
      lockTimeoutMs: inputs.lockTimeoutMs ?? 2000,
      retries: policy.retries,
      appliedFingerprint: fp,
      liveFingerprint: fp,
      appliedAt: new Date().toISOString(),
    };
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** The SQL, the probe, the check and the journal entry in one transaction, serialized with the program's other DDL,
 *  retried on a lock conflict (guardian:ddl). Returns the live object's fingerprint. */
async function applyInTransaction(c: Db, inputs: SqlObjectInputs, label: string): Promise<string> {
  // Which statement an error came from (set as each one starts; the last attempt's).
  const at: { stage: "sql" | "probe" | "check" | "after" } = { stage: "sql" };
  try {
    return await retriedTransaction(c, inputs, label, { ddlLock: true }, async () => {
      at.stage = "sql";
      await c.query(inputs.sql);
      at.stage = "probe";
      const probe = await c.query<Fingerprint>(inputs.probeSql);
      at.stage = "after";
      if (probe.rows.length === 0) {
        throw new Error(`${label}: sql/${inputs.sqlFile} ran, but the object is not there afterwards (probe found no row)`);
      }
      // Failure-path tests (test/step-failures.test.ts) make one step fail here, after its SQL ran and before its
      // COMMIT, as a lost connection or a server error would: GUARDIAN_TEST_FAIL_STEP names it as "<kind> <objectName>".
      if (process.env.GUARDIAN_TEST_FAIL_STEP && process.env.GUARDIAN_TEST_FAIL_STEP === label) {
        throw new Error(`${label}: injected failure (GUARDIAN_TEST_FAIL_STEP) after sql/${inputs.sqlFile} ran, before COMMIT`);
      }
      if (inputs.checkSql) {
        at.stage = "check";
        await c.query(inputs.checkSql);
        at.stage = "after";
      }
      await journal(c, { step: "apply", objectName: label, details: { sqlFile: inputs.sqlFile, sqlSha256: inputs.sqlSha256 } }, { optional: true });
      return String(probe.rows[0].fingerprint);
    });
  } catch (e) {
    if (at.stage === "check") {
      const hint = (e as { hint?: string }).hint;
      throw new Error(
        `${label}: NOT applied: after sql/${inputs.sqlFile} ran, its check failed: ${errorMessage(e)}` +
          `${hint ? ` (${hint})` : ""}. The transaction was rolled back: what was there before is unchanged and keeps serving.`,
      );
    }
    if (at.stage === "probe")
      throw new Error(`${label}: the probe query failed after sql/${inputs.sqlFile} ran: ${errorMessage(e)} [SQLSTATE ${errorCode(e)}]`);
    throw at.stage === "sql" ? sqlError(e, inputs.sqlFile, inputs.sql, label) : e;
  }
}

/** For statements Postgres refuses inside a transaction (CREATE INDEX CONCURRENTLY): no advisory lock is held while
 *  it runs (it can take long and blocks no writer), the same lock_timeout bounds its waits, and it is retried. */
async function applyOutsideTransaction(c: Db, inputs: SqlObjectInputs, label: string): Promise<string> {
  await c.query(`SET lock_timeout = ${lockPolicy(inputs, label).lockTimeoutMs}`);
  try {
    await withLockRetries(inputs, label, async () => {
      // A CONCURRENTLY build that failed (a deadlock or lock timeout on an earlier attempt, or a crashed earlier run)
      // leaves an INVALID index of its name, which the planner never uses and `IF NOT EXISTS` would skip: drop it
      // (concurrently too) and build again.
      if (inputs.kind === "index") {
        const stale = (
          await c.query<{ name: string }>(
            `SELECT i.indexrelid::regclass::text AS name FROM pg_index i WHERE i.indexrelid = to_regclass($1) AND NOT i.indisvalid`,
            [inputs.objectName],
          )
        ).rows[0];
        if (stale) {
          console.log(`${label}: dropping the INVALID index an interrupted build left, then building it again`);
          await c.query(`DROP INDEX CONCURRENTLY IF EXISTS ${stale.name}`);
        }
      }
      await c.query(inputs.sql);
    });
  } catch (e) {
    throw sqlError(e, inputs.sqlFile, inputs.sql, label);
  }
  const probe = await c.query<Fingerprint>(inputs.probeSql);
  if (probe.rows.length === 0) {
    throw new Error(`${label}: sql/${inputs.sqlFile} ran, but the object is not there or not valid afterwards (probe found no row)`);
  }
  await journal(c, { step: "apply", objectName: label, details: { sqlFile: inputs.sqlFile, sqlSha256: inputs.sqlSha256 } }, { optional: true });
  return String(probe.rows[0].fingerprint);
}

/** The live object's fingerprint, undefined when it is absent. */
async function probe(props: Recorded<SqlObjectOutputs>): Promise<string | undefined> {
  const probeSql = props.probeSql;
  if (!probeSql) throw new Error(`${props.kind} ${props.objectName}: no probeSql recorded`);
  return withConnection(props, APP, async (c) => {
    const r = await c.query<Fingerprint>(probeSql);
    return r.rows.length ? String(r.rows[0].fingerprint) : undefined;
  });
}

/** Whether anything but the connection differs between what was applied and what is declared. */
function onlyConnectionDiffers(olds: Recorded<SqlObjectOutputs>, news: SqlObjectInputs): boolean {
  return (
    olds.sqlSha256 === news.sqlSha256 &&
    olds.probeSql === news.probeSql &&
    (olds.checkSql ?? "") === (news.checkSql ?? "") &&
    (olds.dropSql ?? "") === (news.dropSql ?? "") &&
    olds.liveFingerprint === olds.appliedFingerprint
  );
}

export const sqlObjectProvider: Provider<SqlObjectInputs, SqlObjectOutputs> = {
  async check(_olds, news) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    for (const k of ["kind", "objectName", "sqlFile", "sql", "sqlSha256", "probeSql"] as const) {
      const v: unknown = news[k];
      if (typeof v !== "string" || v.trim() === "") failures.push({ property: k, reason: `${k} must be a non-empty string` });
    }
    if (typeof news.databaseUrl !== "string" || !/^postgres(ql)?:\/\//.test(news.databaseUrl)) {
      failures.push({ property: "databaseUrl", reason: "databaseUrl must be a postgres:// connection string" });
    }
    failures.push(...connectionFailures(news));
    return { inputs: news, failures };
  },

  async diff(_id, olds, news) {
    const replaces = IDENTITY_KEYS.filter((k) => olds[k] !== news[k]);
    const changed: string[] = [];
    if (olds.sqlSha256 !== news.sqlSha256) changed.push("sql");
    if (olds.probeSql !== news.probeSql || (olds.dropSql ?? "") !== (news.dropSql ?? "") || (olds.checkSql ?? "") !== (news.checkSql ?? ""))
      changed.push("probeSql");
    if (connectionChanged(olds, news)) changed.push("databaseUrl"); // a rotated secret (or new TLS settings): recorded, no SQL run
    // The live object was edited outside Pulumi (seen by refresh): re-apply the declared SQL.
    if (olds.liveFingerprint !== olds.appliedFingerprint) changed.push("liveFingerprint");
    return diffOf(changed, { replaces: [...replaces], deleteBeforeReplace: true, stateOnly: ["liveFingerprint"] });
  },

  async create(inputs) {
    const outs = await apply(inputs);
    return { id: `${inputs.kind}:${inputs.objectName}`, outs };
  },

  async read(id, props) {
    const fp = await probe(props);
    if (fp === undefined) return { id: "", props: {} };
    return { id, props: { ...props, liveFingerprint: fp } };
  },

  async update(_id, olds, news) {
    if (onlyConnectionDiffers(olds, news)) return { outs: recordConnection(olds, news) };
    return { outs: await apply(news) };
  },

  async delete(_id, props) {
    const dropSql = props.dropSql;
    if (!dropSql) return; // retained by design
    const label = `${props.kind} ${props.objectName}`;
    await withConnection(props, APP, (c) => retriedTransaction(c, props, label, { ddlLock: true }, () => c.query(dropSql)));
  },
};

/** A database object managed from a SQL file. Type token: pulumi-nodejs:guardian:SqlObject. */
const SqlObjectResource = connectedResource<SqlObjectInputs, typeof SQL_OBJECT_OUTPUTS, SqlObjectArgs>(sqlObjectProvider, "SqlObject", SQL_OBJECT_OUTPUTS);
export class SqlObject extends SqlObjectResource {
  constructor(name: string, args: SqlObjectArgs, opts?: pulumi.CustomResourceOptions) {
    super(name, { ...args, dropSql: args.dropSql ?? "" }, opts);
  }
}
