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
 * Methods connect through lib/pgConnection.ts (the program's one TLS rule) and capture no secret: the connection
 * string arrives as a secret input, the TLS settings as the `tls` input.
 */
import * as pulumi from "@pulumi/pulumi";
import { connectClient, connectionChanged, recordConnection, tlsInputProblem } from "../lib/pgConnection";
import { ConnectionInputs, connectionProps } from "./connectionInputs";

export interface SqlObjectArgs extends ConnectionInputs {
  /** What kind of object this is ("function", "policy", "columns", "grants", "table", ...). Part of its identity. */
  kind: pulumi.Input<string>;
  /** The object's qualified name, e.g. "public.consume_credits_rpc(uuid,text,integer,text)". Part of its identity. */
  objectName: pulumi.Input<string>;
  /** The SQL file the statement came from, relative to sql/ (for error messages and the report). */
  sqlFile: pulumi.Input<string>;
  /** The SQL applied on create and update. Shown in preview when it changes. */
  sql: pulumi.Input<string>;
  sqlSha256: pulumi.Input<string>;
  /** A query returning one row with a text column `fingerprint` for the live object, or no row if it is absent. */
  probeSql: pulumi.Input<string>;
  /** How to remove the object (must tolerate absence). Empty: retained on delete. */
  dropSql?: pulumi.Input<string>;
  /** Short lock timeout for the DDL, and how many times to retry when it expires. */
  lockTimeoutMs?: pulumi.Input<number>;
  retries?: pulumi.Input<number>;
  /** false: the SQL (one statement) runs outside a transaction, e.g. CREATE INDEX CONCURRENTLY. Default true. */
  transaction?: pulumi.Input<boolean>;
  /** Facts about the object for the policy pack (docs/architecture.md), e.g. a function's securityDefiner. */
  meta?: pulumi.Input<Record<string, unknown>>;
  /** Run after the SQL and the probe, in the same transaction; an error rolls the change back (e.g. trial calls of
   *  a function just replaced: sql/verification/trial_calls.sql). Must leave nothing behind. */
  checkSql?: pulumi.Input<string>;
}

export interface SqlObjectState {
  databaseUrl: string;
  kind: string;
  objectName: string;
  sqlFile: string;
  sql: string;
  sqlSha256: string;
  probeSql: string;
  dropSql: string;
  lockTimeoutMs: number;
  retries: number;
  /** Fingerprint of the live object right after the SQL was applied. */
  appliedFingerprint: string;
  /** Fingerprint of the live object when last read (differs from appliedFingerprint after a manual edit). */
  liveFingerprint: string;
  appliedAt: string;
}

const IDENTITY_KEYS = ["kind", "objectName"];

async function apply(inputs: any): Promise<SqlObjectState> {
  const label = `${inputs.kind} ${inputs.objectName}`;
  let client: any;
  try {
    client = await connectClient(inputs.databaseUrl, inputs.tls, { application_name: "guardian-credits:sql-object" });
  } catch (e: any) {
    throw new Error(`${label}: cannot connect to the database: ${e.code ?? ""} ${String(e.message).split(inputs.databaseUrl).join("<databaseUrl>")}`);
  }
  try {
    const retries = inputs.retries ?? 10;
    if (inputs.transaction === false) return await applyOutsideTransaction(client, inputs, label, retries);
    for (let attempt = 0; ; attempt++) {
      try {
        await client.query("BEGIN");
        // The engine applies independent objects in parallel; their DDL touches shared catalog rows (schema ACLs,
        // default privileges), so the program's own DDL is serialised. Application traffic is not affected.
        await client.query("SELECT pg_advisory_xact_lock(hashtext('guardian-credits:ddl'))");
        await client.query(`SET LOCAL lock_timeout = ${Math.floor(inputs.lockTimeoutMs ?? 2000)}`);
        await client.query(inputs.sql);
        let probe: any;
        try {
          probe = await client.query(inputs.probeSql);
        } catch (e: any) {
          e.guardianStatement = "probe";
          throw e;
        }
        if (probe.rows.length === 0) {
          throw new Error(`${label}: sql/${inputs.sqlFile} ran, but the object is not there afterwards (probe found no row)`);
        }
        // Failure-path tests (test/step-failures.test.ts) make one step fail here, after its SQL ran and before its
        // COMMIT, as a lost connection or a server error would: GUARDIAN_TEST_FAIL_STEP names it as "<kind> <objectName>".
        if (process.env.GUARDIAN_TEST_FAIL_STEP && process.env.GUARDIAN_TEST_FAIL_STEP === label) {
          throw new Error(`${label}: injected failure (GUARDIAN_TEST_FAIL_STEP) after sql/${inputs.sqlFile} ran, before COMMIT`);
        }
        if (inputs.checkSql) {
          try {
            await client.query(inputs.checkSql);
          } catch (e: any) {
            e.guardianStatement = "check";
            throw e;
          }
        }
        await client.query(
          `DO $j$ BEGIN IF to_regclass('guardian.migration_journal') IS NOT NULL THEN
             INSERT INTO guardian.migration_journal (step, object_name, details)
             VALUES ('apply', ${lit(label)}, jsonb_build_object('sqlFile', ${lit(inputs.sqlFile)}, 'sqlSha256', ${lit(inputs.sqlSha256)}));
           END IF; END $j$`,
        );
        await client.query("COMMIT");
        const fp = String(probe.rows[0].fingerprint);
        return {
          ...inputs,
          dropSql: inputs.dropSql ?? "",
          lockTimeoutMs: inputs.lockTimeoutMs ?? 2000,
          retries,
          appliedFingerprint: fp,
          liveFingerprint: fp,
          appliedAt: new Date().toISOString(),
        };
      } catch (e: any) {
        await client.query("ROLLBACK").catch(() => undefined);
        if (["55P03", "40P01", "40001"].includes(e?.code) && attempt < retries) {
          console.log(`${label}: lock not available (${e.code}), retry ${attempt + 1}/${retries}`);
          await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** attempt)));
          continue;
        }
        if (e?.guardianStatement === "check") {
          throw new Error(`${label}: NOT applied: after sql/${inputs.sqlFile} ran, its check failed: ${e.message}` +
            `${e.hint ? ` (${e.hint})` : ""}. The transaction was rolled back: what was there before is unchanged and keeps serving.`);
        }
        throw e?.guardianStatement === "probe"
          ? new Error(`${label}: the probe query failed after sql/${inputs.sqlFile} ran: ${e.message} [SQLSTATE ${e.code}]`)
          : locateError(e, inputs.sqlFile, inputs.sql, label);
      }
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** For statements Postgres refuses inside a transaction (CREATE INDEX CONCURRENTLY): no advisory lock is held while
 *  it runs (it can take long and blocks no writer), the same lock_timeout bounds its waits, and it is retried. */
async function applyOutsideTransaction(client: any, inputs: any, label: string, retries: number): Promise<SqlObjectState> {
  await client.query(`SET lock_timeout = ${Math.floor(inputs.lockTimeoutMs ?? 2000)}`);
  for (let attempt = 0; ; attempt++) {
    try {
      // A CONCURRENTLY build that failed (a deadlock or lock timeout on an earlier attempt, or a crashed earlier run)
      // leaves an INVALID index of its name, which the planner never uses and `IF NOT EXISTS` would skip: drop it
      // (concurrently too) and build again.
      if (inputs.kind === "index") {
        const stale = (await client.query(
          `SELECT i.indexrelid::regclass::text AS name FROM pg_index i WHERE i.indexrelid = to_regclass($1) AND NOT i.indisvalid`,
          [inputs.objectName])).rows[0];
        if (stale) {
          console.log(`${label}: dropping the INVALID index an interrupted build left, then building it again`);
          await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${stale.name}`);
        }
      }
      await client.query(inputs.sql);
      break;
    } catch (e: any) {
      if (["55P03", "40P01", "40001"].includes(e?.code) && attempt < retries) {
        console.log(`${label}: lock not available (${e.code}), retry ${attempt + 1}/${retries}`);
        await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** attempt)));
        continue;
      }
      throw locateError(e, inputs.sqlFile, inputs.sql, label);
    }
  }
  const probe = await client.query(inputs.probeSql);
  if (probe.rows.length === 0) {
    throw new Error(`${label}: sql/${inputs.sqlFile} ran, but the object is not there or not valid afterwards (probe found no row)`);
  }
  await client.query(
    `DO $j$ BEGIN IF to_regclass('guardian.migration_journal') IS NOT NULL THEN
       INSERT INTO guardian.migration_journal (step, object_name, details)
       VALUES ('apply', ${lit(label)}, jsonb_build_object('sqlFile', ${lit(inputs.sqlFile)}, 'sqlSha256', ${lit(inputs.sqlSha256)}));
     END IF; END $j$`,
  );
  const fp = String(probe.rows[0].fingerprint);
  return {
    ...inputs, dropSql: inputs.dropSql ?? "", lockTimeoutMs: inputs.lockTimeoutMs ?? 2000, retries,
    appliedFingerprint: fp, liveFingerprint: fp, appliedAt: new Date().toISOString(),
  };
}

function lit(s: string): string {
  return "'" + String(s).replace(/'/g, "''") + "'";
}

function locateError(e: any, file: string, text: string, label: string): Error {
  if (!e || typeof e.code !== "string") return e;
  let where = `sql/${file}`;
  let caret = "";
  const pos = Number(e.position);
  if (Number.isFinite(pos) && pos > 0) {
    const before = text.slice(0, pos - 1).split("\n");
    const line = before.length;
    const col = before[before.length - 1].length + 1;
    where += `:${line}:${col}`;
    caret = `\n    ${text.split("\n")[line - 1]}\n    ${" ".repeat(col - 1)}^`;
  } else if (e.where) {
    where += ` (${String(e.where).split("\n")[0]})`;
  }
  let msg = `${label}: ${where}: ${e.message} [SQLSTATE ${e.code}]${caret}`;
  if (e.detail) msg += `\n  detail: ${e.detail}`;
  if (e.hint) msg += `\n  hint: ${e.hint}`;
  return new Error(msg);
}

async function probe(props: any): Promise<string | undefined> {
  const client = await connectClient(props.databaseUrl, props.tls, { application_name: "guardian-credits:sql-object" });
  try {
    const r = await client.query(props.probeSql);
    return r.rows.length ? String(r.rows[0].fingerprint) : undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export const sqlObjectProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: any, news: any) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    for (const k of ["kind", "objectName", "sqlFile", "sql", "sqlSha256", "probeSql"]) {
      if (typeof news[k] !== "string" || news[k].trim() === "") failures.push({ property: k, reason: `${k} must be a non-empty string` });
    }
    if (typeof news.databaseUrl !== "string" || !/^postgres(ql)?:\/\//.test(news.databaseUrl)) {
      failures.push({ property: "databaseUrl", reason: "databaseUrl must be a postgres:// connection string" });
    }
    const tlsProblem = tlsInputProblem(news.tls);
    if (tlsProblem) failures.push({ property: "tls", reason: tlsProblem });
    return { inputs: news, failures };
  },

  async diff(_id: string, olds: any, news: any) {
    const replaces = IDENTITY_KEYS.filter((k) => olds[k] !== news[k]);
    const changes: string[] = [...replaces];
    const detailedDiff: Record<string, any> = {};
    if (olds.sqlSha256 !== news.sqlSha256) {
      changes.push("sql");
      detailedDiff.sql = { kind: "update" as any, inputDiff: true };
    }
    if (olds.probeSql !== news.probeSql || (olds.dropSql ?? "") !== (news.dropSql ?? "") || (olds.checkSql ?? "") !== (news.checkSql ?? "")) changes.push("probeSql");
    if (connectionChanged(olds, news)) {
      changes.push("databaseUrl");
      detailedDiff.databaseUrl = { kind: "update" as any, inputDiff: true };
    }
    if (olds.liveFingerprint !== olds.appliedFingerprint) {
      // The live object was edited outside Pulumi (seen by refresh): re-apply the declared SQL.
      changes.push("liveFingerprint");
      detailedDiff.liveFingerprint = { kind: "update" as any, inputDiff: false };
    }
    for (const k of replaces) detailedDiff[k] = { kind: "update-replace" as any, inputDiff: true };
    return {
      changes: changes.length > 0,
      replaces,
      deleteBeforeReplace: true,
      detailedDiff: changes.length ? detailedDiff : undefined,
    };
  },

  async create(inputs: any) {
    const outs = await apply(inputs);
    return { id: `${inputs.kind}:${inputs.objectName}`, outs };
  },

  async read(id: string, props: any) {
    const fp = await probe(props);
    if (fp === undefined) return { id: "" as any, props: {} };
    return { id, props: { ...props, liveFingerprint: fp } };
  },

  async update(_id: string, olds: any, news: any) {
    const onlyConnection = olds.sqlSha256 === news.sqlSha256 && olds.probeSql === news.probeSql &&
      (olds.checkSql ?? "") === (news.checkSql ?? "") &&
      (olds.dropSql ?? "") === (news.dropSql ?? "") && olds.liveFingerprint === olds.appliedFingerprint;
    if (onlyConnection) return { outs: recordConnection(olds, news) };
    return { outs: await apply(news) };
  },

  async delete(_id: string, props: any) {
    if (!props.dropSql) return; // retained by design
    const client = await connectClient(props.databaseUrl, props.tls, { application_name: "guardian-credits:sql-object" });
    try {
      await client.query("BEGIN");
      await client.query("SELECT pg_advisory_xact_lock(hashtext('guardian-credits:ddl'))");
      await client.query(`SET LOCAL lock_timeout = ${Math.floor(props.lockTimeoutMs ?? 2000)}`);
      await client.query(props.dropSql);
      await client.query("COMMIT");
    } catch (e) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw e;
    } finally {
      await client.end().catch(() => undefined);
    }
  },
};

/** A database object managed from a SQL file. Type token: pulumi-nodejs:guardian:SqlObject. */
export class SqlObject extends pulumi.dynamic.Resource {
  declare readonly kind: pulumi.Output<string>;
  declare readonly objectName: pulumi.Output<string>;
  declare readonly sqlFile: pulumi.Output<string>;
  declare readonly sqlSha256: pulumi.Output<string>;
  declare readonly appliedFingerprint: pulumi.Output<string>;
  declare readonly liveFingerprint: pulumi.Output<string>;
  declare readonly appliedAt: pulumi.Output<string>;

  constructor(name: string, args: SqlObjectArgs, opts?: pulumi.CustomResourceOptions) {
    const { props, secretOutputs } = connectionProps(args);
    super(
      sqlObjectProvider,
      name,
      {
        ...props,
        dropSql: args.dropSql ?? "",
        appliedFingerprint: undefined,
        liveFingerprint: undefined,
        appliedAt: undefined,
      },
      { ...opts, additionalSecretOutputs: secretOutputs },
      "guardian",
      "SqlObject",
    );
  }
}
