/**
 * Poolers, against a real PgBouncer (Debian's package, started by this file in front of the test server, stopped at the
 * end; nothing mocked):
 *
 *   - transaction mode (what Supabase's pooler serves on port 6543): go/no-go's session gate refuses, naming the session
 *     pooler or the direct connection, and leaves no setting or advisory lock behind on the pooled server connections;
 *     `pulumi preview` stops with the same words;
 *   - session mode (Supabase's pooler on port 5432, the way in for IPv4-only runners): go, and a real `pulumi up` of the
 *     multi model goes through it;
 *   - PgBouncer here speaks no TLS: libpq's prefer falls back to a plain connection, require refuses with what to do.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../lib/config";
import { connect } from "../lib/db";
import { NoGoError, preflight } from "../lib/preflight";
import { freshDb, pgServer, type TestDb } from "./helpers/db";
import { seededDb } from "./helpers/migration";
import { collect, testStack, type TestStack } from "../harness/stack";
import { type PgBouncer, startPgBouncer } from "./helpers/tlsServer";

const config = (databaseUrl: string) => parseConfig({ databaseUrl, creditModel: "multi" });

describe("poolers: go/no-go's session gate against a real PgBouncer", () => {
  let transaction: PgBouncer;
  let session: PgBouncer;
  let db: TestDb;
  let seeded: TestDb;
  const stacks: TestStack[] = [];

  beforeAll(async () => {
    const admin = new URL((await pgServer()).adminUrl);
    const upstream = { host: admin.hostname, port: Number(admin.port || 5432) };
    transaction = await startPgBouncer("transaction", upstream);
    session = await startPgBouncer("session", upstream);
    db = await freshDb({ prefix: "pooler" });
    seeded = await seededDb(25, 9, "pooler");
  });
  afterAll(async () => {
    for (const t of stacks) t.destroyWorkspace();
    // The poolers first: they hold server connections to the test databases.
    await transaction?.stop();
    await session?.stop();
    await db?.drop();
    await seeded?.drop();
  });

  it("transaction mode: no-go, the session gate naming the session pooler or direct connection; nothing left behind", async () => {
    let e: NoGoError | undefined;
    try {
      await preflight(config(transaction.url(db.name)));
    } catch (x) {
      e = x as NoGoError;
    }
    expect(e).toBeInstanceOf(NoGoError);
    expect(e!.report.failures.map((f) => f.gate)).toEqual(["session"]);
    const msg = e!.report.failures[0].message;
    expect(msg).toMatch(
      /^the connection goes through a pooler in transaction mode: a session setting \(SET\) made in one transaction was gone in the next; a session advisory lock taken in one transaction was no longer held in the next; the backend changed \(pid \d+, then \d+\); and another connection saw that setting\. The migration needs one session throughout \(session advisory locks, SET lock_timeout, CREATE INDEX CONCURRENTLY\)\. /,
    );
    expect(msg).toContain(
      "connect through a session-mode pooler (PgBouncer: pool_mode = session) or directly to PostgreSQL instead. " +
        "Supabase: the session pooler is port 5432 on the same pooler host (aws-0-<region>.pooler.supabase.com), user postgres.<project-ref>; " +
        "the direct connection is db.<project-ref>.supabase.co:5432 (IPv6 only unless the project has the IPv4 add-on; GitHub-hosted runners are IPv4 only)",
    );
    // The other gates were still evaluated, through the same pooler.
    expect(e!.report.passed).toEqual(["connection", "server", "baseline", "shape", "access", "locks", "catalogue"]);
    // Nothing left on the server: no advisory lock of the gate's class, the probe setting gone from every pooled connection.
    const locks = await db.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = ${0x4755}`);
    expect(locks[0].n).toBe(0);
    const cs = await Promise.all([1, 2, 3].map(() => connect(transaction.url(db.name))));
    try {
      await Promise.all(cs.map((c) => c.query("BEGIN")));
      for (const c of cs) {
        const v = (await c.query(`SELECT current_setting('guardian.session_probe', true) AS v`)).rows[0].v;
        expect(v ?? "").toBe("");
      }
      await Promise.all(cs.map((c) => c.query("COMMIT")));
    } finally {
      await Promise.all(cs.map((c) => c.end()));
    }
  });

  it("transaction mode: pulumi preview stops at go/no-go with the same words", async () => {
    const t = await testStack(transaction.url(seeded.name), { creditModel: "multi" });
    stacks.push(t);
    const e = await t.stack.preview({ onEvent: collect(t) }).then(
      () => undefined,
      (x: Error) => x,
    );
    expect(e?.message).toContain("NO-GO: 1 gate failed:");
    expect(e?.message).toContain("  - session: the connection goes through a pooler in transaction mode");
    expect(e?.message).toContain("connect through a session-mode pooler (PgBouncer: pool_mode = session) or directly to PostgreSQL instead");
  });

  it("session mode: go, the gate saying why", async () => {
    const report = await preflight(config(session.url(db.name)));
    expect(report.go).toBe(true);
    expect(report.passed).toEqual(["connection", "session", "server", "baseline", "shape", "access", "locks", "catalogue"]);
    expect(report.notes.join("\n")).toMatch(
      /^session: a session setting and an advisory lock survive from one transaction to the next \(backend pid \d+ throughout, a second connection on pid \d+\): no transaction-mode pooler in between$/m,
    );
  });

  it("no TLS at the pooler: libpq's prefer connects in the clear and says so; sslmode=require refuses, saying what to do", async () => {
    const report = await preflight(config(session.url(db.name)));
    expect(report.notes[0]).toBe("connection: not encrypted (sslmode prefer from libpq's default; the server offered no TLS)");
    const e = await preflight(config(`${session.url(db.name)}?sslmode=require`), { throwOnNoGo: false });
    expect(e.failures.map((f) => f.gate)).toEqual(["connection"]);
    expect(e.failures[0].message).toContain(
      "TLS: the server does not accept TLS connections, but sslmode require, from sslmode in the connection string requires TLS: " +
        "enable ssl on the server, or set guardian:tls.mode to prefer (or disable) if an unencrypted connection is acceptable",
    );
  });

  it("session mode: a real pulumi up of the multi model goes through the pooler", async () => {
    const t = await testStack(session.url(seeded.name), { creditModel: "multi" });
    stacks.push(t);
    const r = await t.stack.up({ onEvent: collect(t) });
    expect(r.summary.result).toBe("succeeded");
    expect(r.outputs.orgsMigrated.value).toBe(25);
    expect(r.outputs.restoreVerified.value).toBe(true);
    expect(t.logText()).toContain("go/no-go: session: a session setting and an advisory lock survive from one transaction to the next");
  });
});
