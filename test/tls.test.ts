/**
 * TLS against a real server: a second PostgreSQL started by this file with ssl = on, a server certificate signed by a CA
 * the test generates (openssl), and pg_hba accepting TLS connections only (test/helpers/tlsServer.ts). Nothing is mocked.
 *
 *   - verify-full with the right CA: go/no-go says go (TLS 1.3, certificate and host verified), and a real `pulumi up`
 *     of the multi model runs every step over it (the server refuses any plain connection), the CA given inline as a
 *     secret PEM (kept secret in state);
 *   - a wrong CA: go/no-go and `pulumi preview` refuse, naming guardian:tls.rootCert and what to do;
 *   - sslmode=require in the URL is libpq's require: encrypted, the certificate not verified (pg alone verifies);
 *   - every provider connects with its `tls` input: a wrong CA fails each of them.
 */
import * as fs from "fs";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../lib/config";
import { connect } from "../lib/db";
import { connectClient } from "../lib/pgConnection";
import { NoGoError, preflight } from "../lib/preflight";
import { loadSql } from "../lib/sql";
import { ISOLATION_TABLES } from "../lib/isolation";
import { backfillProvider } from "../providers/backfill";
import { backupProvider } from "../providers/backup";
import { restoreCheckProvider } from "../providers/restoreCheck";
import { sqlObjectProvider } from "../providers/sqlObject";
import { verificationProvider } from "../providers/verification";
import { seed } from "../operations/seed";
import { buildReport } from "../operations/report";
import { collect, testStack, type TestStack } from "../harness/stack";
import { startTlsPostgres, type TlsPostgres } from "./helpers/tlsServer";

const DB = "guardian_tls";

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(fs.readFileSync(p, "utf8"));
  }
  return out;
}
const PASSWORD = "tls-test-pw-7731"; // the server trusts 127.0.0.1; the password is there to prove it is never echoed

describe("TLS (lib/pgConnection.ts) against a PostgreSQL with ssl = on", () => {
  let server: TlsPostgres;
  let url: string; // no sslmode: the tests add what they test
  let ca: string;

  beforeAll(async () => {
    server = await startTlsPostgres();
    ca = fs.readFileSync(server.certs.caFile, "utf8");
    const admin = await connectClient(server.url("postgres"), { mode: "verify-full", ca });
    try {
      await admin.query(`CREATE DATABASE ${DB}`);
    } finally {
      await admin.end();
    }
    url = server.url(DB).replace("postgres@", `postgres:${PASSWORD}@`);
    await seed({ databaseUrl: `${url}?sslmode=require`, orgs: 30, seed: 5, log: () => undefined });
  });
  afterAll(async () => {
    await server?.stop();
  });

  const config = (tls?: unknown, databaseUrl = url) => parseConfig({ databaseUrl, creditModel: "multi", ...(tls ? { tls } : {}) });

  it("verify-full with the project's CA: go/no-go says go, over TLS, certificate and host name verified", async () => {
    const report = await preflight(config({ mode: "verify-full", rootCert: server.certs.caFile }));
    expect(report.go).toBe(true);
    expect(report.passed).toEqual(["connection", "session", "server", "baseline", "shape", "access", "locks", "catalogue"]);
    expect(report.notes[0]).toBe(
      `connection: TLSv1.3, certificate and host name verified against guardian:tls.rootCert (${server.certs.caFile}) (sslmode verify-full from guardian:tls.mode)`,
    );
    // The server agrees: the connection is encrypted (and pg_hba takes nothing else).
    const c = await connect(url, { tls: { mode: "verify-full", ca } });
    try {
      expect((await c.query(`SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()`)).rows[0]).toEqual({ ssl: true, version: "TLSv1.3" });
    } finally {
      await c.end();
    }
  });

  it("a wrong CA: no-go, naming guardian:tls.rootCert and what to do, without the password", async () => {
    let e: NoGoError | undefined;
    try {
      await preflight(config({ mode: "verify-full", rootCert: server.certs.wrongCaFile }));
    } catch (x) {
      e = x as NoGoError;
    }
    expect(e).toBeInstanceOf(NoGoError);
    expect(e!.message).toContain(
      `  - connection: cannot connect to the Guardian database at postgres://postgres:***@127.0.0.1:${server.port}/${DB}: ` +
        `TLS: the server's certificate does not verify against the root certificate of guardian:tls.rootCert (${server.certs.wrongCaFile}) (UNABLE_TO_VERIFY_LEAF_SIGNATURE`,
    );
    expect(e!.message).toContain(
      "set guardian:tls.rootCert to the file of the CA certificate that signed the server's certificate " +
        "(pulumi config set --path guardian:tls.rootCert certs/ca.crt), or put its PEM in guardian:tls.rootCertPem",
    );
    expect(e!.message).not.toContain(PASSWORD);
    // No root certificate at all: Node's public roots do not know a project CA either.
    const none = await preflight(config(undefined, `${url}?sslmode=verify-full`), { throwOnNoGo: false });
    expect(none.failures[0].message).toContain("does not verify against any root certificate this machine trusts (no guardian:tls.rootCert was given)");
  });

  it("verify-full refuses a host the certificate does not name; verify-ca (chain only) accepts it", async () => {
    const other = server.url(DB, "127.0.0.2");
    const full = await preflight(config({ mode: "verify-full", rootCert: server.certs.caFile }, other), { throwOnNoGo: false });
    expect(full.failures[0].message).toContain("TLS: the server's certificate does not name the host 127.0.0.2");
    expect(full.failures[0].message).toContain("or set guardian:tls.mode to verify-ca");
    const chain = await preflight(config({ mode: "verify-ca", rootCert: server.certs.caFile }, other));
    expect(chain.go).toBe(true);
    expect(chain.notes[0]).toMatch(
      /^connection: TLSv1\.3, certificate verified against guardian:tls\.rootCert \(.*\), host name not checked \(sslmode verify-ca/,
    );
  });

  it("sslmode=require in the URL is libpq's require: encrypted, the certificate not verified (pg alone would verify it)", async () => {
    const c = await connect(`${url}?sslmode=require`);
    try {
      expect((await c.query(`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`)).rows[0].ssl).toBe(true);
    } finally {
      await c.end();
    }
    const report = await preflight(config(undefined, `${url}?sslmode=require`));
    expect(report.notes[0]).toBe("connection: TLSv1.3, certificate not verified (sslmode require from sslmode in the connection string)");
    // What node-postgres does with the same string by itself: verify-full, which the project's CA fails.
    const { Client } = require("pg");
    const raw = new Client({ connectionString: `${url}?sslmode=require` });
    raw.on("error", () => undefined);
    await expect(raw.connect()).rejects.toThrow(/unable to verify the first certificate|self[- ]signed/);
    await raw.end().catch(() => undefined);
    // And the server really takes nothing but TLS: sslmode=disable is refused by pg_hba.
    await expect(connect(`${url}?sslmode=disable`)).rejects.toThrow(/no encryption/);
    // A contradiction between guardian:tls and the URL is refused before any connection.
    const both = await preflight(config({ mode: "verify-full" }, `${url}?sslmode=require`), { throwOnNoGo: false });
    expect(both.failures[0].message).toContain("guardian:tls.mode is verify-full but guardian:databaseUrl says sslmode=require");
  });

  it("every provider connects with its tls input: a wrong CA fails each, naming guardian:tls.rootCert; the right one works", async () => {
    const wrong = { mode: "verify-full" as const, ca: fs.readFileSync(server.certs.wrongCaFile, "utf8"), caFrom: "guardian:tls.rootCert (wrong-ca.crt)" };
    const right = { mode: "verify-full" as const, ca, caFrom: "guardian:tls.rootCert (ca.crt)" };
    const object = {
      databaseUrl: url,
      kind: "table",
      objectName: "public.tls_probe",
      sqlFile: "test/tls_probe.sql",
      sql: "CREATE TABLE IF NOT EXISTS public.tls_probe (id int)",
      sqlSha256: "x",
      probeSql: "SELECT 'present'::text AS fingerprint FROM pg_class WHERE oid = to_regclass('public.tls_probe')",
      dropSql: "DROP TABLE IF EXISTS public.tls_probe",
      lockTimeoutMs: 2000,
      retries: 0,
    };
    const verification = {
      databaseUrl: url,
      model: "unified",
      sql: loadSql("verification/unified.sql").text,
      sqlSha256: "x",
      upstream: {},
      trialCallsSql: "SELECT 1",
      profileRoleColumn: "role",
      isolationTables: ISOLATION_TABLES,
    };
    const tlsMessage = /TLS: the server's certificate does not verify against the root certificate of guardian:tls\.rootCert \(wrong-ca\.crt\)/;
    await expect(sqlObjectProvider.create!({ ...object, tls: wrong })).rejects.toThrow(tlsMessage);
    await expect(sqlObjectProvider.read!("table:public.tls_probe", { ...object, tls: wrong })).rejects.toThrow(tlsMessage);
    await expect(backupProvider.read!("b", { databaseUrl: url, schemaName: "guardian_backup_x", tls: wrong })).rejects.toThrow(tlsMessage);
    await expect(restoreCheckProvider.read!("r", { databaseUrl: url, backupId: "b", tls: wrong })).rejects.toThrow(tlsMessage);
    await expect(backfillProvider.read!("f", { databaseUrl: url, tls: wrong })).rejects.toThrow(tlsMessage);
    expect((await verificationProvider.read!("v", { ...verification, tls: wrong })).props.liveCheck).toMatch(tlsMessage);
    // With the right CA the same calls connect (and verify-full is what they used: the URL has no sslmode).
    const created = await sqlObjectProvider.create!({ ...object, tls: right });
    expect(created.outs.appliedFingerprint).toBe("present");
    expect((await sqlObjectProvider.read!("table:public.tls_probe", { ...created.outs, tls: right })).props.liveFingerprint).toBe("present");
    // (before the migration there is no credit_model column: the read connected and asked)
    await expect(backfillProvider.read!("f", { databaseUrl: url, tls: right })).rejects.toThrow(/column "credit_model" does not exist/);
    await sqlObjectProvider.delete!("table:public.tls_probe", { ...created.outs, tls: right });
    // A new CA is recorded like a rotated connection string, without running the SQL again.
    const d = await sqlObjectProvider.diff!("table:public.tls_probe", created.outs, { ...object, tls: { ...right, caFrom: "guardian:tls.rootCertPem" } });
    expect(d.changes).toBe(true);
  });

  describe("through the real engine", () => {
    let t: TestStack | undefined;
    afterAll(() => t?.destroyWorkspace());

    it("pulumi up of the multi model over verify-full, the CA inline as a secret: every step over TLS, tls secret in state", async () => {
      t = await testStack(url, { creditModel: "multi" });
      await t.setConfig({ tls: { mode: "verify-full", rootCertPem: ca } }, ["tls"]);
      const r = await t.stack.up({ onEvent: collect(t) });
      expect(r.summary.result).toBe("succeeded");
      expect(r.outputs.orgsMigrated.value).toBe(30);
      expect(r.outputs.restoreVerified.value).toBe(true);
      expect(t.logText()).toContain(
        "go/no-go: connection: TLSv1.3, certificate and host name verified against guardian:tls.rootCertPem (sslmode verify-full from guardian:tls.mode)",
      );
      // Every dynamic resource got the TLS settings, and keeps them secret as the config was.
      const state = await t.stack.exportStack();
      // Every resource that connects (the ModelSwitch record touches no database).
      const dynamic = (state.deployment.resources as any[]).filter(
        (res) => String(res.type).startsWith("pulumi-nodejs:dynamic/") && !String(res.type).endsWith(":ModelSwitch"),
      );
      expect(dynamic.length).toBeGreaterThan(20);
      for (const res of dynamic) {
        expect(res.inputs.tls?.["4dabf18193072939515e22adb298388d"], res.urn).toBe("1b47061264138c4ac30d75fd1eb44270");
      }
      // (exportStack decrypts; the state files on disk hold the PEM and the password only encrypted)
      const stateText = filesUnder(t.stateDir).join("\n");
      expect(stateText).toContain("1b47061264138c4ac30d75fd1eb44270");
      expect(stateText).not.toContain("BEGIN CERTIFICATE");
      expect(stateText).not.toContain(PASSWORD);

      // The report's own queries follow guardian:tls too: with the right CA it reads the database...
      const report = await buildReport({ stack: t.stack });
      expect(report.figures.orgsByModel.multi).toBe(30);

      // The operator points guardian:tls at the wrong CA: preview stops with what to do.
      await t.setConfig({ tls: { mode: "verify-full", rootCert: server.certs.wrongCaFile } });
      const e = await t.stack.preview({ onEvent: collect(t) }).then(
        () => undefined,
        (x: Error) => x,
      );
      expect(e?.message).toContain(
        `TLS: the server's certificate does not verify against the root certificate of guardian:tls.rootCert (${server.certs.wrongCaFile})`,
      );
      expect(e?.message).not.toContain(PASSWORD);
      // ...and so does the report: it refuses to read over an unverified connection.
      const re = await buildReport({ stack: t.stack }).then(
        () => undefined,
        (x: Error) => x,
      );
      expect(re?.message).toContain("guardian:tls.rootCert");
      expect(re?.message).not.toContain(PASSWORD);
    });
  });
});
