/**
 * The managed SQL object, the provider every database object of the program is built on, through the real engine.
 */
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshDb, type TestDb } from "./helpers/db";
import { changed } from "./helpers/migration";
import { collect, testStack, type TestStack } from "../harness/stack";

const PULUMI_YAML = "name: sql-object-fixture\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: test/fixtures/sql-object/index.ts\n";
const URN = "urn:pulumi:test::sql-object-fixture::pulumi-nodejs:dynamic/guardian:SqlObject::fixture-answer";

describe("SqlObject", () => {
  let db: TestDb;
  let t: TestStack;
  const answer = async () => (await db.query(`SELECT public.fixture_answer() AS a`))[0].a;

  beforeAll(async () => {
    db = await freshDb();
    t = await testStack(db.url, {}, { pulumiYaml: PULUMI_YAML });
    // The program's entries are linked from the project; the fixture is reached through its `test` folder.
    require("fs").symlinkSync(path.resolve(__dirname), path.join(t.dir, "test"));
  });
  afterAll(async () => {
    t?.destroyWorkspace();
    await db?.drop();
  });

  it("preview plans a create and writes nothing", async () => {
    const p = await t.stack.preview({ onEvent: collect(t) });
    expect(changed(p.changeSummary)).toEqual({ create: 2 }); // the stack and the object
    expect((await db.query(`SELECT to_regprocedure('public.fixture_answer()') AS f`))[0].f).toBeNull();
  });

  it("create is idempotent: an object already there (a retried create after a crash) converges", async () => {
    await db.query(`CREATE FUNCTION public.fixture_answer() RETURNS integer LANGUAGE sql AS $$ SELECT 99 $$`);
    await t.stack.up({ onEvent: collect(t) });
    expect(await answer()).toBe(1);
  });

  it("a second preview shows no change", async () => {
    const p = await t.stack.preview({ onEvent: collect(t) });
    expect(changed(p.changeSummary)).toEqual({});
  });

  it("a change to the SQL shows as an update, with the SQL in the diff", async () => {
    await t.setConfig({ body: "SELECT 2" });
    const p = await t.stack.preview({ onEvent: collect(t), diff: true });
    expect(changed(p.changeSummary)).toEqual({ update: 1 });
    expect(p.stdout).toContain("$$ SELECT 1 $$");
    expect(p.stdout).toContain("$$ SELECT 2 $$");
    await t.stack.up({ onEvent: collect(t) });
    expect(await answer()).toBe(2);
  });

  it("an edit made by hand shows as drift on refresh and up puts the declared SQL back", async () => {
    await db.query(`CREATE OR REPLACE FUNCTION public.fixture_answer() RETURNS integer LANGUAGE sql AS $$ SELECT 42 $$`);
    const p = await t.stack.preview({ onEvent: collect(t), refresh: true });
    expect(changed(p.changeSummary)).toEqual({ update: 1 });
    await t.stack.up({ onEvent: collect(t), refresh: true });
    expect(await answer()).toBe(2);
  });

  it("an object dropped by hand reads as gone, and up creates it again", async () => {
    await db.query(`DROP FUNCTION public.fixture_answer()`);
    const p = await t.stack.preview({ onEvent: collect(t), refresh: true });
    expect(changed(p.changeSummary)).toEqual({ create: 1 });
    await t.stack.up({ onEvent: collect(t), refresh: true });
    expect(await answer()).toBe(2);
  });

  it("reports a SQL error with file, line, column, caret and SQLSTATE, and changes nothing", async () => {
    await t.setConfig({ body: "SELEC 3" });
    const err = await t.stack.up({ onEvent: collect(t) }).then(
      () => undefined,
      (e) => e,
    );
    expect(String(err?.message)).toMatch(
      /function public\.fixture_answer\(\): sql\/fixture\/answer\.sql:1:\d+: syntax error at or near "SELEC" \[SQLSTATE 42601\]/,
    );
    expect(String(err?.message)).toMatch(/\n\s+\^/);
    expect(await answer()).toBe(2);
    await t.setConfig({ body: "SELECT 2" });
  });

  it("delete tolerates an object that is already gone", async () => {
    await db.query(`DROP FUNCTION public.fixture_answer()`);
    await t.stack.destroy({ onEvent: collect(t) });
    const state = await t.stack.exportStack();
    expect((state.deployment.resources ?? []).map((r: any) => r.urn)).not.toContain(URN);
  });
});
