/**
 * The one TLS rule (lib/pgConnection.ts), as libpq reads sslmode: which mode and root certificate a connection uses,
 * what pg is told, and the contradictions refused. The real handshakes are test/tls.test.ts's (a server with TLS on).
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { sessionAdvice } from "../../lib/preflight";
import { clientConfig, clientConfigs, connectionChanged, recordConnection, resolveTls, sameTls, sslOptions, TlsConfigError } from "../../lib/pgConnection";

const URL = "postgres://app:pw@db.example.invalid:5432/postgres";
const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const noEnv = {};

describe("TLS rule (lib/pgConnection.ts)", () => {
  it("defaults to libpq's prefer: TLS without verification first, then plain", () => {
    const r = resolveTls(URL, undefined, noEnv);
    expect([r.mode, r.modeFrom]).toEqual(["prefer", "libpq's default"]);
    const { configs } = clientConfigs(URL, undefined, { application_name: "x" });
    expect(configs.map((c) => c.ssl)).toEqual([{ rejectUnauthorized: false }, false]);
    expect(configs[0].application_name).toBe("x");
  });

  it("reads sslmode in the URL as libpq does: require encrypts without verifying (pg alone would verify)", () => {
    expect(clientConfig(`${URL}?sslmode=require`, undefined)).toMatchObject({ connectionString: URL, ssl: { rejectUnauthorized: false } });
    expect(clientConfig(`${URL}?sslmode=disable`, undefined).ssl).toBe(false);
    expect(clientConfig(`${URL}?sslmode=verify-full`, undefined).ssl).toEqual({ rejectUnauthorized: true });
    expect(clientConfigs(`${URL}?sslmode=allow`, undefined).configs.map((c) => c.ssl)).toEqual([false, { rejectUnauthorized: false }]);
    // pg's own spellings
    expect(resolveTls(`${URL}?ssl=true`, undefined, noEnv).mode).toBe("verify-full");
    expect(resolveTls(`${URL}?ssl=no-verify`, undefined, noEnv).mode).toBe("require");
    expect(resolveTls(`${URL}?sslmode=no-verify`, undefined, noEnv).mode).toBe("require");
    expect(() => resolveTls(`${URL}?sslmode=verify`, undefined, noEnv)).toThrow(/sslmode=verify in guardian:databaseUrl is not a TLS mode/);
  });

  it("removes the TLS parameters from the string pg parses (pg would override the options with them), keeping the rest", () => {
    const r = resolveTls(`${URL}?sslmode=require&application_name=app&uselibpqcompat=true&options=-c%20x%3D1`, undefined, noEnv);
    expect(r.url).toBe(`${URL}?application_name=app&options=-c+x%3D1`);
    expect(resolveTls(URL, undefined, noEnv).url).toBe(URL); // untouched when there is nothing to remove
  });

  it("takes guardian:tls first, then sslmode, then PGSSLMODE and PGSSLROOTCERT", () => {
    expect(resolveTls(URL, { mode: "verify-full", ca: PEM, caFrom: "guardian:tls.rootCertPem" }, noEnv)).toMatchObject({
      mode: "verify-full",
      modeFrom: "guardian:tls.mode",
      ca: PEM,
      caFrom: "guardian:tls.rootCertPem",
    });
    expect(resolveTls(URL, undefined, { PGSSLMODE: "require" })).toMatchObject({ mode: "require", modeFrom: "PGSSLMODE" });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-ca-"));
    try {
      fs.writeFileSync(path.join(dir, "ca.crt"), PEM);
      const env = { PGSSLMODE: "verify-ca", PGSSLROOTCERT: path.join(dir, "ca.crt") };
      expect(resolveTls(URL, undefined, env)).toMatchObject({ mode: "verify-ca", ca: PEM, caFrom: `sslrootcert (${path.join(dir, "ca.crt")})` });
      const viaUrl = resolveTls(`${URL}?sslmode=verify-full&sslrootcert=${encodeURIComponent(path.join(dir, "ca.crt"))}`, undefined, noEnv);
      expect(viaUrl).toMatchObject({ mode: "verify-full", ca: PEM, url: URL });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses contradictions instead of ignoring one side", () => {
    expect(() => resolveTls(`${URL}?sslmode=require`, { mode: "verify-full" }, noEnv)).toThrow(
      "guardian:tls.mode is verify-full but guardian:databaseUrl says sslmode=require: one of them would be ignored; " +
        "remove sslmode from the connection string or set guardian:tls.mode to require",
    );
    expect(() => resolveTls(`${URL}?sslrootcert=/x.crt`, { ca: PEM, caFrom: "guardian:tls.rootCert (a.crt)" }, noEnv)).toThrow(
      /names sslrootcert=\/x\.crt and guardian:tls\.rootCert \(a\.crt\) gives a root certificate too/,
    );
    expect(() => resolveTls(URL, { mode: "verify-ca" }, noEnv)).toThrow(TlsConfigError);
    expect(() => resolveTls(URL, { mode: "verify-ca" }, noEnv)).toThrow(/verify-ca \(guardian:tls.mode\) needs a root certificate: set guardian:tls.rootCert/);
    expect(() => resolveTls(`${URL}?sslmode=require&sslrootcert=system`, undefined, noEnv)).toThrow(/sslrootcert=system needs sslmode verify-full/);
    expect(resolveTls(`${URL}?sslrootcert=system`, undefined, noEnv)).toMatchObject({ mode: "verify-full", systemRoots: true });
  });

  it("verifies as each mode says: verify-ca checks the chain only; require with a root certificate is verify-ca (libpq)", () => {
    const r = (mode: any, ca?: string) => resolveTls(URL, { mode, ca }, noEnv);
    const full = sslOptions(r("verify-full", PEM), true) as any;
    expect(full).toEqual({ ca: PEM, rejectUnauthorized: true });
    const ca = sslOptions(r("verify-ca", PEM), true) as any;
    expect([ca.ca, ca.rejectUnauthorized, typeof ca.checkServerIdentity]).toEqual([PEM, true, "function"]);
    const req = sslOptions(r("require", PEM), true) as any;
    expect([req.rejectUnauthorized, typeof req.checkServerIdentity]).toEqual([true, "function"]);
    expect(sslOptions(r("require"), true)).toEqual({ rejectUnauthorized: false });
  });

  it("records a TLS change like a rotated connection string", () => {
    const olds = { databaseUrl: URL, x: 1 };
    expect(connectionChanged(olds, { databaseUrl: URL })).toBe(false);
    expect(connectionChanged(olds, { databaseUrl: URL, tls: { mode: "verify-full", ca: PEM } })).toBe(true);
    expect(sameTls({ mode: "require" }, { mode: "require" })).toBe(true);
    expect(recordConnection({ ...olds, tls: { mode: "require" } }, { databaseUrl: "postgres://h/d" })).toEqual({ databaseUrl: "postgres://h/d", x: 1 });
    expect(recordConnection(olds, { databaseUrl: URL, tls: { mode: "require" } })).toEqual({ ...olds, tls: { mode: "require" } });
  });

  it("every dynamic provider connects through lib/pgConnection.ts (by the provider kernel), never with a pg Client of its own", () => {
    const dir = path.resolve(__dirname, "..", "..", "providers");
    const files = fs.readdirSync(dir).filter((f) => f.endsWith(".ts"));
    const connecting = files.filter((f) => /connectClient\(/.test(fs.readFileSync(path.join(dir, f), "utf8")));
    expect(connecting.sort()).toEqual(["kernel.ts"]);
    for (const f of ["backfill.ts", "backup.ts", "restoreCheck.ts", "rollback.ts", "sqlObject.ts", "verification.ts"]) {
      const src = fs.readFileSync(path.join(dir, f), "utf8");
      expect(src, f).toMatch(/\b(connect|withConnection)\(/);
      expect(src, f).toMatch(/from "\.\/kernel"/);
    }
    for (const f of files) {
      const src = fs.readFileSync(path.join(dir, f), "utf8");
      expect(src, f).not.toMatch(/new Client\(|require\("pg"\)/);
    }
  });
});

describe("session gate advice (lib/preflight.ts sessionAdvice)", () => {
  it("names Supabase's session pooler for its transaction pooler URL, password masked", () => {
    const a = sessionAdvice("postgresql://postgres.abcdefghijklmnop:s3cret@aws-0-eu-central-1.pooler.supabase.com:6543/postgres");
    expect(a).toBe(
      "connect through Supabase's session pooler instead: postgresql://postgres.abcdefghijklmnop:***@aws-0-eu-central-1.pooler.supabase.com:5432/postgres " +
        "(port 5432, not 6543), or directly to db.abcdefghijklmnop.supabase.co:5432 (IPv6 only unless the project has the IPv4 add-on)",
    );
    expect(sessionAdvice("postgres://u@127.0.0.1:6432/db")).toMatch(
      /^connect through a session-mode pooler \(PgBouncer: pool_mode = session\) or directly to PostgreSQL instead\. Supabase: the session pooler is port 5432/,
    );
  });
});
