/**
 * Declares a SqlObject from a file under sql/. Components use this so that every database object carries its file,
 * its sha256 (preview shows a change as a change) and a probe that tells whether it is there.
 */
import type * as pulumi from "@pulumi/pulumi";
import type { GuardianConfig } from "../lib/config";
import type { TlsSettings } from "../lib/pgConnection";
import type { Discovery } from "../lib/preflight";
import { type DatabaseShape, SEED_SHAPE } from "../lib/shape";
import { loadSql, sha256 } from "../lib/sql";
import { SqlObject } from "../providers/sqlObject";

/** What every component receives. */
export interface GuardianContext {
  /** Connection string, as a secret. */
  databaseUrl: pulumi.Input<string>;
  /** guardian:tls as the connections use it (lib/config.ts tlsSettings); omitted: the connection string's sslmode. */
  tls?: TlsSettings;
  /** guardian:tls was stored as a secret: the providers keep it secret in state. */
  tlsSecret?: boolean;
  config: GuardianConfig;
  /** What go/no-go found in the database (its shape, live prices, foreign policies, v1). Absent in unit tests with
   *  mocks, where the seed's shape applies. */
  discovery?: Discovery;
}

/** The connection inputs of every dynamic resource (providers/kernel.ts ResourceArgs, connectionProps). */
export function connection(ctx: GuardianContext): { databaseUrl: pulumi.Input<string>; tls?: TlsSettings; tlsSecret?: boolean } {
  return ctx.tls ? { databaseUrl: ctx.databaseUrl, tls: ctx.tls, tlsSecret: ctx.tlsSecret === true } : { databaseUrl: ctx.databaseUrl };
}

/** The shape SQL files are rendered for. */
export function shapeOf(ctx: GuardianContext): DatabaseShape {
  return ctx.discovery?.shape ?? SEED_SHAPE;
}

export interface SqlFileObjectArgs {
  /** Path under sql/, e.g. "functions/consume_credits_rpc_v2.sql". */
  file: string;
  kind: string;
  objectName: string;
  /** One row with a text column `fingerprint` when the object exists, no row when it does not. */
  probeSql: string;
  /** How to remove it; must tolerate absence. Omit to retain the object on delete. */
  dropSql?: string;
  /** Facts for the policy pack (see docs/architecture.md). */
  meta?: Record<string, unknown>;
  /** false: run outside a transaction (one statement, e.g. CREATE INDEX CONCURRENTLY). Default true. */
  transaction?: boolean;
  /** Run in the same transaction after the SQL; an error rolls it back (providers/sqlObject.ts checkSql). */
  checkSql?: string;
}

export function sqlFileObject(name: string, ctx: GuardianContext, args: SqlFileObjectArgs, opts?: pulumi.CustomResourceOptions): SqlObject {
  const f = loadSql(args.file, shapeOf(ctx));
  return sqlTextObject(name, ctx, { ...args, sql: f.text, sqlFile: f.file }, opts);
}

/** As sqlFileObject, for SQL generated from config (the catalogue); sqlFile names where it was generated from. */
export function sqlTextObject(
  name: string,
  ctx: GuardianContext,
  args: Omit<SqlFileObjectArgs, "file"> & { sql: string; sqlFile: string },
  opts?: pulumi.CustomResourceOptions,
): SqlObject {
  return new SqlObject(
    name,
    {
      ...connection(ctx),
      kind: args.kind,
      objectName: args.objectName,
      sqlFile: args.sqlFile,
      sql: args.sql,
      sqlSha256: sha256(args.sql),
      probeSql: args.probeSql,
      dropSql: args.dropSql,
      lockTimeoutMs: ctx.config.ddl.lockTimeoutMs,
      retries: ctx.config.ddl.retries,
      ...(args.meta ? { meta: args.meta } : {}),
      ...(args.transaction === false ? { transaction: false } : {}),
      ...(args.checkSql ? { checkSql: args.checkSql } : {}),
    } as any,
    opts,
  );
}

/** Probe for a function by signature: fingerprint = md5 of its definition and ACL. */
export function functionProbe(signature: string): string {
  return `SELECT md5(pg_get_functiondef(p.oid) || coalesce(p.proacl::text, '')) AS fingerprint
            FROM pg_proc p WHERE p.oid = to_regprocedure('${signature.replace(/'/g, "''")}')`;
}
