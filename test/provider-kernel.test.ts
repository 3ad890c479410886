/**
 * The provider kernel (providers/kernel.ts) against a real Postgres: the journal writer (what it writes is what was
 * given, whatever the strings hold; optional entries wait for the journal to exist), transactions (a statement sent
 * with the COMMIT; everything rolled back on an error), the one lock-retry policy (guardian:ddl's lockTimeoutMs and
 * retries: a lock held elsewhere is waited for at most lockTimeoutMs per attempt, retried, then reported), SQL
 * errors located in their file; and all of it as Pulumi stores a provider (its serialized closure).
 */
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Client } from "pg";
import { loadSql } from "../lib/sql";
import { connect, journal, journalSql, retriedTransaction, sqlError, transaction, withLockRetries } from "../providers/kernel";
import { sqlObjectProvider } from "../providers/sqlObject";
import { freshDb, type TestDb } from "./helpers/db";

describe("provider kernel (providers/kernel.ts)", () => {
  let db: TestDb;
  let c: Client;
  beforeAll(async () => {
    db = await freshDb({ baseline: false });
    c = await connect({ databaseUrl: db.url }, "kernel-test");
  });
  afterAll(async () => {
    await c?.end();
    await db?.drop();
  });

  it("an optional journal entry is skipped while guardian.migration_journal does not exist; a required one fails", async () => {
    await journal(c, { step: "apply", objectName: "x", details: {} }, { optional: true });
    await expect(journal(c, { step: "apply", objectName: "x", details: {} })).rejects.toThrow(/relation "guardian.migration_journal" does not exist/);
  });

  it("writes step, object_name and details exactly as given, whatever the strings hold", async () => {
    await c.query(loadSql("schema/01_guardian_schema.sql").text);
    const details = {
      quote: "it's",
      backslash: "C:\\dir\\n",
      dollar: "$j$ END IF; END $j$ $$",
      unicode: "ü→✓",
      newline: "a\nb",
      count: 12,
      big: 9007199254740991,
      ratio: 0.25,
      yes: true,
      none: null,
      list: [1, "two"],
      nested: { rowCounts: { organizations: 3 } },
    };
    await journal(c, { step: "apply", objectName: "function public.f(text) 'x' $1", details }, { optional: true });
    await journal(c, { step: "backfill_batch", objectName: "public.organization_credits", details: { flipped: 5, pass: 1 } });
    const rows = (await c.query(`SELECT step, object_name, details FROM guardian.migration_journal ORDER BY id`)).rows;
    expect(rows).toEqual([
      { step: "apply", object_name: "function public.f(text) 'x' $1", details },
      { step: "backfill_batch", object_name: "public.organization_credits", details: { flipped: 5, pass: 1 } },
    ]);
    // The same jsonb as the statements it replaces wrote (jsonb_build_object of the same values).
    const [{ same }] = (
      await c.query(`SELECT details = jsonb_build_object('flipped', 5, 'pass', 1) AS same FROM guardian.migration_journal WHERE step = 'backfill_batch'`)
    ).rows;
    expect(same).toBe(true);
  });

  it("a transaction commits the statement sent with its COMMIT, and rolls everything back on an error", async () => {
    await c.query(`CREATE TABLE public.kernel_t (id int)`);
    await transaction(c, { lockTimeoutMs: 100, settings: { synchronous_commit: "off" } }, async (tx) => {
      await c.query(`INSERT INTO public.kernel_t VALUES (1)`);
      expect((await c.query(`SELECT current_setting('lock_timeout') AS t, current_setting('synchronous_commit') AS s`)).rows[0]).toEqual({
        t: "100ms",
        s: "off",
      });
      tx.atCommit(journalSql({ step: "kernel_test", objectName: "public.kernel_t", details: { n: 1 } }));
    });
    await expect(
      transaction(c, {}, async (tx) => {
        await c.query(`INSERT INTO public.kernel_t VALUES (2)`);
        tx.atCommit(journalSql({ step: "kernel_test", objectName: "public.kernel_t", details: { n: 2 } }));
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect((await c.query(`SELECT array_agg(id) AS ids FROM public.kernel_t`)).rows[0].ids).toEqual([1]);
    expect((await c.query(`SELECT array_agg(details ->> 'n') AS n FROM guardian.migration_journal WHERE step = 'kernel_test'`)).rows[0].n).toEqual(["1"]);
    expect((await c.query(`SELECT current_setting('lock_timeout') AS t`)).rows[0].t).toBe("0"); // SET LOCAL ended with it
  });

  it("a lock held elsewhere: each attempt waits lockTimeoutMs, `retries` retries follow, then the lock timeout is reported", async () => {
    const holder = await db.client();
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    try {
      await holder.query(`BEGIN; LOCK TABLE public.kernel_t IN ACCESS EXCLUSIVE MODE`);
      let attempts = 0;
      const e = await retriedTransaction(c, { lockTimeoutMs: 50, retries: 2 }, "test lock", {}, async () => {
        attempts++;
        await c.query(`INSERT INTO public.kernel_t VALUES (3)`);
      }).then(
        () => undefined,
        (x: { code?: string }) => x,
      );
      expect(e?.code).toBe("55P03");
      expect(attempts).toBe(3);
      expect(log.mock.calls.map((a) => a[0])).toEqual(["test lock: lock not available (55P03), retry 1/2", "test lock: lock not available (55P03), retry 2/2"]);

      // Released while it waits: a later attempt gets it.
      attempts = 0;
      const released = new Promise((r) => setTimeout(r, 150)).then(() => holder.query("COMMIT"));
      await retriedTransaction(c, { lockTimeoutMs: 50, retries: 10 }, "test lock", {}, async () => {
        attempts++;
        await c.query(`INSERT INTO public.kernel_t VALUES (4)`);
      });
      await released;
      expect(attempts).toBeGreaterThan(1);
      expect((await c.query(`SELECT array_agg(id ORDER BY id) AS ids FROM public.kernel_t`)).rows[0].ids).toEqual([1, 4]);
    } finally {
      log.mockRestore();
      await holder.query("ROLLBACK").catch(() => undefined);
      await holder.end();
    }
  });

  it("retries only lock conflicts: any other error is thrown at once", async () => {
    let attempts = 0;
    await expect(
      withLockRetries({ retries: 5 }, "x", async () => {
        attempts++;
        throw Object.assign(new Error("unique violation"), { code: "23505" });
      }),
    ).rejects.toThrow("unique violation");
    expect(attempts).toBe(1);
    await expect(withLockRetries({ lockTimeoutMs: -1 }, "backfill", async () => 1)).rejects.toThrow(
      "backfill: lockTimeoutMs must be a non-negative number, got -1",
    );
  });

  it("locates a SQL error in its file (lib/sql.ts explainSqlError), naming the resource", async () => {
    const text = "SELECT 1;\nSELEC 2;\n";
    const e = await c.query(text).then(
      () => undefined,
      (x: unknown) => sqlError(x, "fixture/bad.sql", text, "function public.f()"),
    );
    expect((e as Error).message).toBe(`function public.f(): sql/fixture/bad.sql:2:1: syntax error at or near "SELEC" [SQLSTATE 42601]\n    SELEC 2;\n    ^`);
    const plain = new Error("not from Postgres");
    expect(sqlError(plain, "fixture/bad.sql", text, "x")).toBe(plain);
  });

  it("works as Pulumi stores it: the serialized SqlObject provider locates a SQL error, applies and journals", async () => {
    const s = await pulumi.runtime.serializeFunction(() => sqlObjectProvider, { allowSecrets: false });
    const mod: { exports: { handler?: () => typeof sqlObjectProvider } } = { exports: {} };
    new Function("exports", "require", "module", s.text)(mod.exports, require, mod);
    const stored = mod.exports.handler!();
    const inputs = {
      databaseUrl: db.url,
      kind: "table",
      objectName: "public.kernel_obj",
      sqlFile: "fixture/kernel_obj.sql",
      sql: "CREATE TABLE IF NOT EXISTS public.kernel_obj (id int);\nSELEC 1",
      sqlSha256: "sha-bad",
      probeSql: "SELECT 'present'::text AS fingerprint FROM pg_class WHERE oid = to_regclass('public.kernel_obj')",
      retries: 0,
    };
    await expect(stored.create(inputs)).rejects.toThrow(
      /^table public\.kernel_obj: sql\/fixture\/kernel_obj\.sql:2:1: syntax error at or near "SELEC" \[SQLSTATE 42601\]\n {4}SELEC 1\n {4}\^$/,
    );
    const ok = await stored.create({ ...inputs, sql: "CREATE TABLE IF NOT EXISTS public.kernel_obj (id int)", sqlSha256: "sha-good" });
    expect(ok).toMatchObject({ id: "table:public.kernel_obj", outs: { appliedFingerprint: "present", liveFingerprint: "present", retries: 0 } });
    const [entry] = (await c.query(`SELECT step, object_name, details FROM guardian.migration_journal WHERE object_name = 'table public.kernel_obj'`)).rows;
    expect(entry).toEqual({ step: "apply", object_name: "table public.kernel_obj", details: { sqlFile: "fixture/kernel_obj.sql", sqlSha256: "sha-good" } });
  });
});
