/**
 * SQL lives in files under sql/<capability>/. This module loads them, hashes them, and turns a Postgres error raised
 * while running one into an error that names the file, line and column, with a caret and Postgres's code, detail, hint.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { type DatabaseShape, renderSql, SEED_SHAPE, unrenderedTokens } from "./shape";
import { errorCode, errorMessage } from "./errors";

export const SQL_ROOT = path.resolve(__dirname, "..", "sql");

export interface SqlFile {
  /** Path relative to sql/, e.g. "functions/consume_credits_rpc_v2.sql". */
  file: string;
  text: string;
  sha256: string;
}

export function sha256(text: string): string {
  return crypto.createHash("sha256").update(text).digest("hex");
}

/** One sha256 over several files' sha256s, as `sha256sum` lists them (sorted by file): a component's combined input. */
export function combinedSha256(shas: Record<string, string>): string {
  return sha256(
    Object.keys(shas)
      .sort()
      .map((f) => `${shas[f]}  ${f}\n`)
      .join(""),
  );
}

/**
 * A SQL file, with its shape tokens ({{profile_role:p}}, {{is_trial:oc}}; lib/shape.ts) rendered for `shape`: the
 * database's, as go/no-go found it, or the seed's where a caller (a test, the bench) applies SQL to a seeded database.
 */
export function loadSql(file: string, shape: DatabaseShape = SEED_SHAPE): SqlFile {
  const full = path.join(SQL_ROOT, file);
  let raw: string;
  try {
    raw = fs.readFileSync(full, "utf8");
  } catch (e) {
    throw new Error(`SQL file "sql/${file}" cannot be read: ${errorCode(e) ?? errorMessage(e)}`);
  }
  const text = renderSql(raw, shape);
  const left = unrenderedTokens(text);
  if (left.length)
    throw new Error(
      `SQL file "sql/${file}": unknown token(s) ${left.join(", ")} (lib/shape.ts renders {{profile_role}}, {{profile_role:<alias>}} and {{is_trial:<alias>}})`,
    );
  return { file, text, sha256: sha256(text) };
}

/** A Postgres error located in the SQL file that raised it. */
export class SqlFileError extends Error {
  constructor(
    message: string,
    public readonly file: string,
    public readonly code?: string,
    public readonly line?: number,
    public readonly column?: number,
  ) {
    super(message);
    this.name = "SqlFileError";
  }
}

export function locate(text: string, position: number): { line: number; column: number; lineText: string } {
  const before = text.slice(0, Math.max(0, position - 1));
  const lines = before.split("\n");
  const line = lines.length;
  const column = lines[lines.length - 1].length + 1;
  const lineText = text.split("\n")[line - 1] ?? "";
  return { line, column, lineText };
}

/**
 * What a pg error raised by `text` (the content of `file`) says, located: `sql/<file>:<line>:<column>: <message>
 * [SQLSTATE <code>]`, a caret under the spot, Postgres's detail and hint. undefined for anything that is not a pg
 * error. A plain function of plain values: the dynamic providers' closures carry it (providers/kernel.ts sqlError),
 * where a class extending Error does not survive Pulumi's serialization.
 */
export function describeSqlError(err: unknown, file: string, text: string): { message: string; code: string; line?: number; column?: number } | undefined {
  if (!err || typeof err !== "object" || !("code" in err)) return undefined;
  const e = err as {
    code: unknown;
    message?: string;
    position?: string;
    internalPosition?: string;
    internalQuery?: string;
    where?: string;
    detail?: string;
    hint?: string;
  };
  if (typeof e.code !== "string") return undefined;
  const parts = [`sql/${file}`];
  let line: number | undefined;
  let column: number | undefined;
  let caret = "";
  const pos = Number(e.position ?? (e.internalPosition && !e.internalQuery ? e.internalPosition : NaN));
  if (Number.isFinite(pos) && pos > 0) {
    const l = locate(text, pos);
    line = l.line;
    column = l.column;
    parts[0] += `:${line}:${column}`;
    caret = `\n    ${l.lineText}\n    ${" ".repeat(Math.max(0, column - 1))}^`;
  } else if (e.where) {
    parts.push(`(${String(e.where).split("\n")[0]})`);
  }
  let message = `${parts.join(" ")}: ${e.message} [SQLSTATE ${e.code}]${caret}`;
  if (e.detail) message += `\n  detail: ${e.detail}`;
  if (e.hint) message += `\n  hint: ${e.hint}`;
  return { message, code: e.code, line, column };
}

/** Wraps a pg error raised by `text` (the content of `file`) into a SqlFileError; other errors pass through. */
export function explainSqlError(err: unknown, file: string, text: string): unknown {
  const d = describeSqlError(err, file, text);
  return d ? new SqlFileError(d.message, file, d.code, d.line, d.column) : err;
}
