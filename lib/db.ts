/**
 * Connections to the Guardian database. One client per call, always closed; the connection string is a secret and is
 * never printed: redactUrl() is what logs, labels, manifests and reports show, redactSecrets() scrubs a message.
 *
 * Connections follow lib/pgConnection.ts (one TLS rule, libpq's), which the dynamic providers use too.
 */
import type { Client, ClientConfig } from "pg";
import { connectClient, TlsConfigError, type TlsSettings } from "./pgConnection";
import { errorCode, errorMessage } from "./errors";

/**
 * Query parameters of a connection string whose values are secrets, or name where one is kept: `password` (which `pg`
 * accepts as `?password=`), libpq's `sslpassword`, `passfile`, and anything else that looks like a credential.
 */
const SECRET_PARAMETER = /pass|secret|token|credential|^sslkey$/i;

/** libpq keyword/value form (`host=... password=...`), which a few tools print: keys whose values are masked. */
const KEYWORD_SECRET = /\b([A-Za-z_]*(?:pass|secret|token|credential)[A-Za-z_]*|sslkey)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/gi;

/**
 * The connection string as logs, labels, manifests and reports may show it: every password masked as `***`, whatever
 * form it takes (the userinfo `user:pw@`, `?password=`, `?sslpassword=`, `?passfile=`, repeated or mixed-case
 * parameters, the libpq keyword/value form). A fragment is dropped. This is the project's one redaction function: every
 * label of a database is made by it.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // Not a URL: the keyword/value form, or garbage. Mask what looks like a secret; never echo anything else.
    if (/^\s*[A-Za-z_]+\s*=/.test(url)) return url.replace(KEYWORD_SECRET, (_m, k) => `${k}=***`);
    return "<unparseable connection string>";
  }
  if (u.password) u.password = "***";
  if ([...u.searchParams.keys()].some((k) => SECRET_PARAMETER.test(k))) {
    // Rebuilt in place, so the parameters keep their order.
    const masked = new URLSearchParams([...u.searchParams].map(([k, v]) => [k, SECRET_PARAMETER.test(k) ? "***" : v]));
    u.search = masked.toString();
  }
  u.hash = "";
  return u.toString();
}

/**
 * Every secret value a connection string carries (decoded), as redactUrl masks them: the userinfo password and the
 * values of secret parameters. Used to prove that a text holds none of them and to scrub one that might.
 */
export function connectionSecrets(url: string): string[] {
  const out = new Set<string>();
  const add = (v: string | null | undefined) => {
    if (v) out.add(v);
  };
  try {
    const u = new URL(url);
    if (u.password) {
      add(u.password);
      try {
        add(decodeURIComponent(u.password));
      } catch {
        // an invalid escape: the raw form is kept
      }
    }
    for (const [k, v] of u.searchParams) if (SECRET_PARAMETER.test(k)) add(v);
  } catch {
    for (const m of url.matchAll(KEYWORD_SECRET)) add(m[2].replace(/^'|'$/g, ""));
  }
  return [...out];
}

/**
 * text with the connection string and every secret it carries masked: the whole string (raw) becomes its redacted
 * label, then each secret (raw and URL-encoded) becomes `***`. Secrets shorter than 4 characters are masked only where
 * they stand as a credential (`:pw@`, `=pw`), so that a short password does not blank every occurrence of a letter.
 */
export function redactSecrets(text: string, url: string): string {
  let out = text.split(url).join(redactUrl(url));
  for (const s of connectionSecrets(url).sort((a, b) => b.length - a.length)) {
    for (const form of new Set([s, encodeURIComponent(s)])) {
      if (form.length >= 4) out = out.split(form).join("***");
      else out = out.split(`:${form}@`).join(":***@").split(`=${form}`).join("=***");
    }
  }
  return out;
}

/** Describes a connection failure without echoing the connection string. */
export function explainConnectError(err: unknown, url: string): Error {
  const where = redactUrl(url);
  const errCode = errorCode(err);
  const code = errCode ? ` [${errCode}]` : "";
  let why = errorMessage(err);
  if ((err as { tls?: boolean } | null)?.tls || err instanceof TlsConfigError) {
    // lib/pgConnection.ts already said what is wrong and what to do
  } else if (errCode === "28P01" || /password authentication failed/i.test(why)) why = "password authentication failed";
  else if (errCode === "ECONNREFUSED") why = "connection refused (is the server running and listening there?)";
  else if (errCode === "ENOTFOUND" || errCode === "EAI_AGAIN") why = "host name does not resolve";
  else if (errCode === "3D000") why = "database does not exist";
  else if (errCode === "ETIMEDOUT" || /timeout/i.test(why)) why = "connection timed out";
  // pg can echo the raw string in some messages; never let a password through, in any of its forms.
  why = redactSecrets(why, url);
  return new Error(`cannot connect to the Guardian database at ${where}: ${why}${code}`);
}

/**
 * A connected client. TLS follows lib/pgConnection.ts (libpq's rule: guardian:tls, else sslmode in the URL, else
 * prefer); pass the program's resolved settings as `tls`.
 */
export async function connect(url: string, extra: Partial<ClientConfig> & { tls?: TlsSettings } = {}): Promise<Client> {
  const { tls, ...rest } = extra;
  try {
    return await connectClient(url, tls, {
      connectionTimeoutMillis: 10000,
      application_name: "guardian-credits",
      ...rest,
    });
  } catch (e) {
    throw explainConnectError(e, url);
  }
}

export async function withClient<T>(url: string, fn: (c: Client) => Promise<T>, tls?: TlsSettings): Promise<T> {
  const client = await connect(url, { tls });
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** fn in a transaction (no lock_timeout, no retries: the DDL of the program goes through the dynamic providers, whose
 *  one lock-retry policy, driven by guardian:ddl, is providers/kernel.ts). */
/** For the rest of the open transaction, act as a Supabase request does: its JWT claims (request.jwt.claims: the
 *  user's `sub` and the role, or the role alone for anon and service_role) and SET LOCAL ROLE. */
export async function actAs(c: Pick<Client, "query">, who: { role: string; sub?: string | null }): Promise<void> {
  await c.query(`SELECT set_config('request.jwt.claims', $1, true)`, [JSON.stringify(who.sub ? { sub: who.sub, role: who.role } : { role: who.role })]);
  await c.query(`SET LOCAL ROLE ${who.role}`);
}

/** fn in a transaction that is always rolled back (trial calls, reads and probes as another role: nothing they do
 *  stays). `begin` opens it (BEGIN READ ONLY for a probe that must not write). */
export async function rolledBack<T>(c: Pick<Client, "query">, fn: () => Promise<T>, begin = "BEGIN"): Promise<T> {
  await c.query(begin);
  try {
    return await fn();
  } finally {
    await c.query("ROLLBACK").catch(() => undefined);
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
