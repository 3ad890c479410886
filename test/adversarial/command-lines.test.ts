/**
 * No secret on a command line: any local user reads every process's arguments in /proc/<pid>/cmdline. The attack:
 * watch them while the tool writes a stack's config (what `npm run rollback`, even with --dry-run, and the CI
 * rollback job do through writeConfigFile) and while the rehearsal sets its scratch URL. The connection string's
 * password must never be seen there; it goes on the CLI's standard input.
 */
import * as fs from "fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pulumiCli, readConfigFile, stackConfigFile, writeConfigFile } from "../../operations/stack/stackHistory";
import { testStack, type TestStack } from "../../harness/stack";

const PASSWORD = "cmdline-Secret-7f3a9c";
const URL = `postgresql://postgres:${PASSWORD}@127.0.0.1:5432/postgres`;

/** Polls every process's arguments until stopped; returns the pids and programs in which `needle` appeared. */
function watchCmdlines(needle: string) {
  const seen: string[] = [];
  let stop = false;
  let polls = 0;
  const loop = (async () => {
    while (!stop) {
      polls++;
      for (const pid of fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
        try {
          const args = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
          if (args.includes(needle) && Number(pid) !== process.pid) seen.push(`${pid}: ${args.split("\0")[0]}`);
        } catch {
          // gone already
        }
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  return {
    async done() {
      stop = true;
      await loop;
      return { seen, polls };
    },
  };
}

describe("no secret on a command line", () => {
  let t: TestStack;
  beforeAll(async () => {
    t = await testStack(undefined, { creditModel: "multi" });
  });
  afterAll(() => {
    t?.destroyWorkspace();
    if (t) fs.rmSync(t.stateDir, { recursive: true, force: true });
  });

  it("writing a stack's config (the rollback command's step) passes the connection string on standard input", async () => {
    const file = stackConfigFile(t.stack);
    const current = await readConfigFile(t.stack, file);
    const target = { ...current, "guardian:databaseUrl": { value: URL, secret: true }, "guardian:creditModel": { value: "unified", secret: false } };
    const w = watchCmdlines(PASSWORD);
    await writeConfigFile(t.stack, file, current, target);
    const { seen, polls } = await w.done();
    expect(polls).toBeGreaterThan(10); // the watcher was looking while the CLI ran
    expect(seen).toEqual([]);
    const now = await readConfigFile(t.stack, file);
    expect(now["guardian:databaseUrl"]).toEqual({ value: URL, secret: true });
    expect(now["guardian:creditModel"].value).toBe("unified");
    expect(fs.readFileSync(file, "utf8")).not.toContain(PASSWORD); // encrypted at rest
  });

  it("a value on standard input is set exactly, and the watcher does see a value passed as an argument", async () => {
    const file = stackConfigFile(t.stack);
    // The control: the same watcher sees a needle that is on a command line, so an empty result above means something.
    const w = watchCmdlines("visible-needle-42");
    await pulumiCli(t.stack, ["config", "set", "guardian:note", "visible-needle-42", "--stack", t.stack.name, "--config-file", file]);
    expect((await w.done()).seen.length).toBeGreaterThan(0);
    await pulumiCli(t.stack, ["config", "set", "guardian:note", "--secret", "--stack", t.stack.name, "--config-file", file], "a:b@c/d");
    expect((await readConfigFile(t.stack, file))["guardian:note"]).toEqual({ value: "a:b@c/d", secret: true });
  });
});
