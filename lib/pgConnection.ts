/**
 * How every connection of the program is made: one rule for TLS, used by lib/db.ts connect() and by every dynamic
 * provider (providers/*.ts import this module; being a local module, Pulumi serializes it with their methods, so it
 * holds no state and requires what it needs inside its functions).
 *
 * The rule is libpq's (https://www.postgresql.org/docs/current/libpq-ssl.html), not node-postgres's (which treats
 * sslmode=prefer, require and verify-ca as verify-full):
 *
 *   disable      no TLS
 *   allow        plain first; TLS (unverified) if the server refuses a plain connection
 *   prefer       TLS (unverified) first; plain if the server does not support TLS (libpq's default)
 *   require      TLS, the certificate not verified; with a root certificate given, as verify-ca (libpq does so)
 *   verify-ca    TLS, the certificate must chain to the root certificate given (required), any host name
 *   verify-full  TLS, the certificate must chain to the root certificate given (or, without one, to the system's
 *                roots, as libpq's sslrootcert=system) and name the host connected to
 *
 * Where the mode comes from, first found: guardian:tls.mode (the `tls` settings the program resolved), `sslmode` in the
 * connection string, PGSSLMODE, then `prefer`. The root certificate: guardian:tls.rootCert / rootCertPem, `sslrootcert`
 * in the connection string (a file, or `system`), PGSSLROOTCERT. A mode or root certificate given both in guardian:tls
 * and in the connection string, differently, is refused (one of them would be silently ignored). `sslcert`, `sslkey` and
 * `sslpassword` (a client certificate) are honoured as libpq does. pg's own `ssl=` and `uselibpqcompat=` parameters are
 * understood and removed: the TLS options are always given to pg explicitly.
 */
import type { Client, ClientConfig } from "pg";
import { errorCode, errorMessage, GuardianRefusal } from "./errors";

export const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** TLS settings the program resolved from guardian:tls: what lib/db.ts connect() and the providers' `tls` input carry. */
export interface TlsSettings {
  mode?: SslMode;
  /** PEM of the root certificate(s) to trust (a CA certificate: public, not a secret). */
  ca?: string;
  /** Where `ca` came from, for messages: "guardian:tls.rootCert (certs/supabase.crt)" or "guardian:tls.rootCertPem". */
  caFrom?: string;
}

/** The rule applied to one connection string: what connectClient() does, and why. */
export interface ResolvedTls {
  mode: SslMode;
  /** "guardian:tls.mode", "sslmode in the connection string", "PGSSLMODE", or "libpq's default". */
  modeFrom: string;
  ca?: string;
  /** Where the root certificate came from; undefined: none given. */
  caFrom?: string;
  /** sslrootcert=system: the system's roots (Node's bundled CAs). */
  systemRoots: boolean;
  /** The connection string without its TLS parameters (pg is given them as options). */
  url: string;
  /** Client certificate files (sslcert, sslkey) and the key's passphrase (sslpassword). */
  certFile?: string;
  keyFile?: string;
  keyPassphrase?: string;
  /** The host connected to (for messages). */
  host?: string;
}

/** A TLS setting that contradicts another, or cannot be honoured: raised before any connection is attempted. */
export class TlsConfigError extends GuardianRefusal {
  constructor(message: string) {
    super(message, "TlsConfigError");
  }
}

const TLS_PARAMETERS = ["sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "ssl", "uselibpqcompat", "sslcompat"];

function isMode(s: unknown): s is SslMode {
  return typeof s === "string" && (SSL_MODES as readonly string[]).includes(s);
}

/**
 * The one rule: which TLS mode and root certificate a connection to `url` uses, given the program's settings and the
 * environment. Throws TlsConfigError for contradictions (guardian:tls against the connection string) and for modes that
 * cannot be honoured (verify-ca without a root certificate). Reads no file.
 */
export function resolveTls(url: string, tls: TlsSettings | undefined, env: Record<string, string | undefined> = process.env): ResolvedTls {
  let u: URL | undefined;
  try {
    u = url.startsWith("/") ? undefined : new URL(url);
  } catch {
    u = undefined;
  }
  const param = (k: string): string | undefined => {
    if (!u) return undefined;
    const v = u.searchParams.get(k);
    return v === null ? undefined : v;
  };

  // The connection string's own view, as libpq (sslmode) or pg (ssl=) would read it.
  let urlMode: SslMode | undefined;
  const sslmode = param("sslmode");
  if (sslmode !== undefined) {
    if (sslmode === "no-verify")
      urlMode = "require"; // pg's alias
    else if (isMode(sslmode)) urlMode = sslmode;
    else throw new TlsConfigError(`sslmode=${sslmode} in guardian:databaseUrl is not a TLS mode (${SSL_MODES.join(", ")})`);
  } else {
    const ssl = param("ssl");
    if (ssl === "true" || ssl === "1")
      urlMode = "verify-full"; // what pg means by ssl=true
    else if (ssl === "no-verify") urlMode = "require";
    else if (ssl === "false" || ssl === "0") urlMode = "disable";
  }

  let mode: SslMode;
  let modeFrom: string;
  if (tls?.mode) {
    if (urlMode && urlMode !== tls.mode) {
      throw new TlsConfigError(
        `guardian:tls.mode is ${tls.mode} but guardian:databaseUrl says sslmode=${urlMode}: one of them would be ignored; ` +
          `remove sslmode from the connection string or set guardian:tls.mode to ${urlMode}`,
      );
    }
    mode = tls.mode;
    modeFrom = "guardian:tls.mode";
  } else if (urlMode) {
    mode = urlMode;
    modeFrom = "sslmode in the connection string";
  } else if (isMode(env.PGSSLMODE)) {
    mode = env.PGSSLMODE;
    modeFrom = "PGSSLMODE";
  } else {
    mode = "prefer";
    modeFrom = "libpq's default";
  }

  let ca = tls?.ca;
  let caFrom = tls?.ca ? (tls.caFrom ?? "guardian:tls.rootCert") : undefined;
  let systemRoots = false;
  const rootcert = param("sslrootcert");
  if (rootcert !== undefined && ca !== undefined) {
    throw new TlsConfigError(`guardian:databaseUrl names sslrootcert=${rootcert} and ${caFrom} gives a root certificate too: keep one of them`);
  }
  let caFile: string | undefined;
  if (rootcert !== undefined) {
    if (rootcert === "system") systemRoots = true;
    else caFile = rootcert;
  } else if (ca === undefined && env.PGSSLROOTCERT) {
    if (env.PGSSLROOTCERT === "system") systemRoots = true;
    else caFile = env.PGSSLROOTCERT;
  }
  if (systemRoots) {
    // libpq: sslrootcert=system implies verify-full and refuses weaker modes.
    if (modeFrom === "libpq's default") {
      mode = "verify-full";
      modeFrom = "sslrootcert=system";
    } else if (mode !== "verify-full") {
      throw new TlsConfigError(`sslrootcert=system needs sslmode verify-full (${modeFrom} says ${mode})`);
    }
    caFrom = "the system's root certificates (sslrootcert=system)";
  }
  if (caFile !== undefined) {
    try {
      ca = require("fs").readFileSync(caFile, "utf8");
    } catch (e) {
      throw new TlsConfigError(`the root certificate file ${caFile} (sslrootcert) cannot be read: ${errorCode(e) ?? errorMessage(e)}`);
    }
    caFrom = `sslrootcert (${caFile})`;
  }
  if (mode === "verify-ca" && ca === undefined) {
    throw new TlsConfigError(
      `sslmode verify-ca (${modeFrom}) needs a root certificate: set guardian:tls.rootCert to the CA's file ` +
        `(or guardian:tls.rootCertPem to its PEM), or use verify-full`,
    );
  }

  let stripped = url;
  if (u && TLS_PARAMETERS.some((k) => u!.searchParams.has(k))) {
    for (const k of TLS_PARAMETERS) u.searchParams.delete(k);
    stripped = u.toString();
  }
  return {
    mode,
    modeFrom,
    ca,
    caFrom,
    systemRoots,
    url: stripped,
    certFile: param("sslcert"),
    keyFile: param("sslkey"),
    keyPassphrase: param("sslpassword"),
    host: u ? u.hostname.replace(/^\[(.+)\]$/, "$1") || u.searchParams.get("host") || undefined : undefined,
  };
}

/** pg's `ssl` option for one attempt: false (plain) or the TLS options the mode calls for. */
export function sslOptions(r: ResolvedTls, encrypted: boolean): false | Record<string, unknown> {
  if (!encrypted) return false;
  const fs = require("fs");
  const o: Record<string, unknown> = {};
  if (r.ca !== undefined) o.ca = r.ca;
  if (r.certFile) o.cert = fs.readFileSync(r.certFile, "utf8");
  if (r.keyFile) o.key = fs.readFileSync(r.keyFile, "utf8");
  if (r.keyPassphrase) o.passphrase = r.keyPassphrase;
  const verifyChain = r.mode === "verify-ca" || r.mode === "verify-full" || (r.mode === "require" && r.ca !== undefined);
  if (!verifyChain) {
    o.rejectUnauthorized = false;
  } else {
    o.rejectUnauthorized = true;
    // verify-ca (and require with a root certificate, as libpq): the chain is verified, the host name is not.
    if (r.mode !== "verify-full") o.checkServerIdentity = () => undefined;
  }
  return o;
}

/**
 * The attempts connectClient() makes, in order: for prefer, TLS then plain; for allow, plain then TLS; otherwise one.
 */
export function clientConfigs(
  url: string,
  tls: TlsSettings | undefined,
  extra: Partial<ClientConfig> = {},
): { configs: ClientConfig[]; resolved: ResolvedTls } {
  const r = resolveTls(url, tls);
  const order: boolean[] = r.mode === "disable" ? [false] : r.mode === "prefer" ? [true, false] : r.mode === "allow" ? [false, true] : [true];
  return {
    resolved: r,
    configs: order.map((enc) => ({ ...extra, connectionString: r.url, ssl: sslOptions(r, enc) as ClientConfig["ssl"] })),
  };
}

/** The first attempt's pg config (the mode's preferred one): for code that builds its own Client or Pool. */
export function clientConfig(url: string, tls: TlsSettings | undefined, extra: Partial<ClientConfig> = {}): ClientConfig {
  return clientConfigs(url, tls, extra).configs[0];
}

const CHAIN_ERRORS = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_CHAIN_TOO_LONG",
  "INVALID_CA",
]);

/**
 * A TLS failure explained, saying what to do; undefined for anything else. Never contains the connection string.
 */
export function explainTlsError(err: unknown, r: Pick<ResolvedTls, "mode" | "modeFrom" | "caFrom" | "host">): string | undefined {
  const code = errorCode(err) ?? "";
  const msg = errorMessage(err);
  const how = `sslmode ${r.mode}, from ${r.modeFrom}`;
  const giveCa =
    `set guardian:tls.rootCert to the file of the CA certificate that signed the server's certificate ` +
    `(pulumi config set --path guardian:tls.rootCert certs/ca.crt), or put its PEM in guardian:tls.rootCertPem ` +
    `(Supabase: the dashboard's Database settings, SSL Configuration, Download certificate)`;
  if (CHAIN_ERRORS.has(code)) {
    const against = r.caFrom ? `the root certificate of ${r.caFrom}` : "any root certificate this machine trusts (no guardian:tls.rootCert was given)";
    return (
      `TLS: the server's certificate does not verify against ${against} (${code}: ${msg}; ${how}): ${giveCa}. ` +
      `(sslmode=require would encrypt without verifying the certificate.)`
    );
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return (
      `TLS: the server's certificate does not name the host ${r.host ?? "connected to"} (${msg}; ${how}): connect by a ` +
      `name the certificate carries, or set guardian:tls.mode to verify-ca (the chain is still verified against guardian:tls.rootCert)`
    );
  }
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") {
    return `TLS: the server's certificate is not valid now (${code}: ${msg}; ${how}): renew the server's certificate`;
  }
  if (/The server does not support SSL connections/.test(msg)) {
    return (
      `TLS: the server does not accept TLS connections, but ${how} requires TLS: enable ssl on the server, ` +
      `or set guardian:tls.mode to prefer (or disable) if an unencrypted connection is acceptable`
    );
  }
  if (/There was an error establishing an SSL connection/.test(msg)) {
    return `TLS: the server answered the TLS request with something other than yes or no (${how}): is this a PostgreSQL server?`;
  }
  return undefined;
}

/** Whether an attempt's failure lets the next attempt run (libpq's fallbacks for prefer and allow). */
function fallsBack(mode: SslMode, attempt: number, err: unknown): boolean {
  if (attempt > 0) return false;
  const msg = err instanceof Error ? err.message : "";
  if (mode === "prefer") return /does not support SSL connections|error establishing an SSL connection/.test(msg);
  // allow: the server refused the plain connection (pg_hba.conf hostssl only, or a server that requires TLS).
  if (mode === "allow") return errorCode(err) === "28000" || /SSL|encryption/i.test(msg);
  return false;
}

/**
 * A connected pg Client for `url` under the rule above (fallbacks included). A TLS failure is thrown as an Error whose
 * message says what to do (code kept); any other failure as pg reported it. The caller ends the client.
 */
export async function connectClient(url: string, tls: TlsSettings | undefined, extra: Partial<ClientConfig> = {}): Promise<Client> {
  const { Client } = require("pg") as typeof import("pg");
  const { configs, resolved } = clientConfigs(url, tls, extra);
  for (let i = 0; ; i++) {
    const client = new Client(configs[i]);
    client.on("error", () => undefined); // a dropped connection surfaces on the next query
    try {
      await client.connect();
      return client;
    } catch (e) {
      await client.end().catch(() => undefined);
      if (i + 1 < configs.length && fallsBack(resolved.mode, i, e)) continue;
      const explained = explainTlsError(e, resolved);
      if (!explained) throw e;
      throw Object.assign(new Error(explained), { code: errorCode(e), tls: true });
    }
  }
}

/** Whether two `tls` inputs are the same settings (a change is recorded like a rotated connection string). */
export function sameTls(a: TlsSettings | undefined, b: TlsSettings | undefined): boolean {
  const norm = (t: TlsSettings | undefined) => JSON.stringify(t ? [t.mode ?? null, t.ca ?? null, t.caFrom ?? null] : null);
  return norm(a) === norm(b);
}

/** A provider's `tls` input, checked: undefined or a TlsSettings. Returns the problem, if any. */
export function tlsInputProblem(t: unknown): string | undefined {
  if (t === undefined || t === null) return undefined;
  if (typeof t !== "object") return "tls must be an object { mode?, ca?, caFrom? }";
  const o = t as Record<string, unknown>;
  if (o.mode !== undefined && !isMode(o.mode)) return `tls.mode must be one of ${SSL_MODES.join(", ")}`;
  if (o.ca !== undefined && typeof o.ca !== "string") return "tls.ca must be a PEM string";
  return undefined;
}

/** A provider's diff: the connection string or the TLS settings changed (recorded in place, like a rotated secret). */
export function connectionChanged(olds: { databaseUrl?: string; tls?: TlsSettings }, news: { databaseUrl?: string; tls?: TlsSettings }): boolean {
  return olds.databaseUrl !== news.databaseUrl || !sameTls(olds.tls, news.tls);
}

/** A provider's update that only records the new connection: the old state with the new connection string and TLS. */
export function recordConnection<T extends { databaseUrl?: string; tls?: TlsSettings }>(olds: T, news: { databaseUrl?: string; tls?: TlsSettings }): T {
  const { tls: _recorded, ...rest } = olds;
  return (
    news.tls === undefined || news.tls === null ? { ...rest, databaseUrl: news.databaseUrl } : { ...rest, databaseUrl: news.databaseUrl, tls: news.tls }
  ) as T;
}
