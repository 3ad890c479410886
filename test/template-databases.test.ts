/**
 * The test databases' starting points (harness/db.ts fromTemplate): built once per test run into a template, copied
 * (CREATE DATABASE ... TEMPLATE) for each test, so a test still writes to a database of its own; a failed build leaves
 * no template; the run's templates are dropped at its end, and another run's are left alone.
 */
import * as crypto from "crypto";
import { afterAll, describe, expect, it } from "vitest";
import { dropTemplates, fromTemplate, pgServer, TEMPLATE_PREFIX, templateDigest, type TestDb } from "./helpers/db";
import { scratchDatabases } from "../operations/shared/pgserver";

const made: TestDb[] = [];
afterAll(async () => {
  for (const d of made) await d.drop().catch(() => undefined);
});

const uniqueKey = () => `template-test:${crypto.randomUUID()}`;

async function buildCounting(key: string, counter: { n: number }): Promise<TestDb> {
  const db = await fromTemplate(key, async (tpl) => {
    counter.n++;
    await tpl.query(`CREATE TABLE public.t (v int); INSERT INTO public.t VALUES (1)`);
  });
  made.push(db);
  return db;
}

async function templates(run: string): Promise<string[]> {
  return (await scratchDatabases(await pgServer(), `${TEMPLATE_PREFIX}${run}_`)).map((d) => d.name);
}

describe("test databases copied from a template built once per run", () => {
  it("builds the template once for concurrent callers; each gets a database of its own, with the build's content", async () => {
    const key = uniqueKey();
    const counter = { n: 0 };
    const [a, b, c] = await Promise.all([buildCounting(key, counter), buildCounting(key, counter), buildCounting(key, counter)]);
    expect(counter.n).toBe(1);
    expect(new Set([a.name, b.name, c.name]).size).toBe(3);
    await a.query(`INSERT INTO public.t VALUES (2)`);
    expect(await a.query(`SELECT v FROM public.t ORDER BY v`)).toEqual([{ v: 1 }, { v: 2 }]);
    expect(await b.query(`SELECT v FROM public.t ORDER BY v`)).toEqual([{ v: 1 }]);
    const d = await buildCounting(key, counter); // later, the template is there: copied, not built
    expect(counter.n).toBe(1);
    expect(await d.query(`SELECT v FROM public.t ORDER BY v`)).toEqual([{ v: 1 }]);
  });

  it("a failed build leaves no template behind; the next caller builds again", async () => {
    const key = uniqueKey();
    const run = process.env.GUARDIAN_TEST_RUN!;
    const before = await templates(run);
    const err = await fromTemplate(key, async () => {
      throw new Error("build failed on purpose");
    }).catch((e) => e);
    expect(err.message).toBe("build failed on purpose");
    expect(await templates(run)).toEqual(before);
    const counter = { n: 0 };
    await buildCounting(key, counter);
    expect(counter.n).toBe(1);
  });

  it("drops the run's templates at its end, and leaves another run's alone", async () => {
    const mine = `t${crypto.randomBytes(4).toString("hex")}`;
    const theirs = `t${crypto.randomBytes(4).toString("hex")}`;
    const saved = process.env.GUARDIAN_TEST_RUN;
    try {
      for (const run of [mine, theirs]) {
        process.env.GUARDIAN_TEST_RUN = run;
        made.push(await fromTemplate(uniqueKey(), async () => undefined));
      }
    } finally {
      process.env.GUARDIAN_TEST_RUN = saved;
    }
    expect(await templates(mine)).toHaveLength(1);
    expect((await dropTemplates(mine)).every((n) => !n.startsWith(`${TEMPLATE_PREFIX}${theirs}_`))).toBe(true);
    expect(await templates(mine)).toEqual([]);
    expect(await templates(theirs)).toHaveLength(1);
    await dropTemplates(theirs);
    expect(await templates(theirs)).toEqual([]);
  });

  it("outside a test run (a bench, a script) builds each database itself and leaves no template", async () => {
    const key = uniqueKey();
    const saved = process.env.GUARDIAN_TEST_RUN;
    delete process.env.GUARDIAN_TEST_RUN;
    try {
      const counter = { n: 0 };
      await buildCounting(key, counter);
      await buildCounting(key, counter);
      expect(counter.n).toBe(2);
    } finally {
      process.env.GUARDIAN_TEST_RUN = saved;
    }
    const all = (await scratchDatabases(await pgServer(), TEMPLATE_PREFIX)).map((d) => d.name);
    expect(all.filter((n) => n.endsWith(`_${templateDigest(key)}`))).toEqual([]);
  });
});
