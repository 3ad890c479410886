/**
 * No silent config keys, through the real engine: the project is named guardian-credits and the program reads namespace
 * guardian, so `pulumi config set creditModel multi` (no namespace) writes guardian-credits:creditModel. The program
 * refuses it, and an unknown guardian: key, before touching the database, naming the key meant.
 */
import { execFile } from "child_process";
import * as path from "path";
import { promisify } from "util";
import { afterAll, describe, expect, it } from "vitest";
import { collect, testStack, type TestStack } from "../harness/stack";

// Nothing listens on port 1: had the config been accepted, go/no-go would fail on the connection instead.
const UNREACHABLE = "postgres://guardian:pw@127.0.0.1:1/guardian";

describe("config keys the program would never read (index.ts readConfig)", () => {
  const stacks: TestStack[] = [];
  afterAll(() => {
    for (const t of stacks) t.destroyWorkspace();
  });

  it("`pulumi config set creditModel multi` (guardian-credits:creditModel) stops preview with 'did you mean guardian:creditModel?'", async () => {
    const t = await testStack(UNREACHABLE);
    stacks.push(t);
    // As an operator types it: the CLI puts a key without namespace in the project's namespace.
    const pulumi = path.join(t.env.PATH.split(":")[0], "pulumi");
    await promisify(execFile)(pulumi, ["config", "set", "creditModel", "multi", "--stack", "test"], { cwd: t.dir, env: { ...process.env, ...t.env } });
    expect(await t.stack.getAllConfig()).toMatchObject({ "guardian-credits:creditModel": { value: "multi", secret: false } });
    await t.stack.setConfig("guardian:creditModl", { value: "unified" });

    const e = await t.stack.preview({ onEvent: collect(t) }).then(
      () => undefined,
      (x: Error) => x,
    );
    expect(e).toBeDefined();
    const text = `${e!.message}\n${t.logText()}`;
    expect(text).toContain("invalid guardian configuration:");
    expect(text).toContain(
      "guardian-credits:creditModel: never read: guardian-credits is the project's name, and `pulumi config set` without a namespace " +
        "writes there; the program reads namespace guardian; did you mean guardian:creditModel? " +
        "(pulumi config rm guardian-credits:creditModel; pulumi config set guardian:creditModel <value>)",
    );
    expect(text).toContain("guardian:creditModl: unknown key; did you mean guardian:creditModel?");
    expect(text).not.toContain("cannot connect"); // refused before any connection
    expect(text).not.toMatch(/\n\s+at /); // the message alone, no stack trace

    // Fixed as the message says, the config passes (and go/no-go is reached: the unreachable server is next).
    await t.stack.removeConfig("guardian-credits:creditModel");
    await t.stack.removeConfig("guardian:creditModl");
    await t.setConfig({ creditModel: "multi" });
    const next = await t.stack.preview({ onEvent: collect(t) }).then(
      () => undefined,
      (x: Error) => x,
    );
    expect(next?.message).toContain("NO-GO: 1 gate failed:");
    expect(next?.message).toContain("connection: cannot connect to the Guardian database at postgres://guardian:***@127.0.0.1:1/guardian");
    expect(next?.message).not.toContain("invalid guardian configuration");
  });
});
