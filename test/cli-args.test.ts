/**
 * operations/shared/cli.ts: the one command-line parser of every script. Pure logic (no child process here; test/cli-scripts.test.ts
 * runs each script for real).
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { describe, expect, it } from "vitest";
import {
  command,
  existingDir,
  existingFile,
  flag,
  helpText,
  integer,
  jsonFlag,
  list,
  oneOf,
  option,
  outputPath,
  parseCommand,
  positiveInteger,
  positiveNumber,
  postgresUrl,
  runCommandLine,
  text,
  usageLine,
  UsageError,
} from "../operations/shared/cli";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-cli-args-"));
fs.writeFileSync(path.join(tmp, "a-file.md"), "x");

const CMD = command({
  name: "tool",
  summary: ["Does the thing."],
  options: {
    stack: option(text("a stack name"), { valueName: "NAME", description: "the stack", required: true }),
    consumers: option(positiveInteger(), { valueName: "N", description: "concurrent consumers", default: 4 }),
    seconds: option(positiveNumber(), { valueName: "S", description: "seconds" }),
    mode: option(oneOf("fast", "slow"), { valueName: "MODE", description: "how", default: "fast" as "fast" | "slow" }),
    sizes: option(list(integer({ min: 16 }), "comma-separated integers of at least 16"), { valueName: "N,N", description: "sizes", default: [10_000] }),
    databaseUrl: option(postgresUrl(), { valueName: "URL", description: "the database", secret: true }),
    out: option(outputPath({ directoryOk: true }), { valueName: "PATH", description: "where to write" }),
    dryRun: flag("change nothing"),
    yes: flag("do not ask", { short: "y" }),
    json: jsonFlag("the result"),
  },
  conflicts: [{ options: ["dryRun", "yes"], reason: "a dry run asks nothing" }],
  exitCodes: ["0 done", "2 refused"],
});

const parse = (...argv: string[]) => parseCommand(CMD, argv);
const values = (...argv: string[]) => {
  const p = parse(...argv);
  if (p.help) throw new Error("help");
  return p.values;
};
const refusal = (...argv: string[]) => {
  try {
    parse(...argv);
  } catch (e) {
    if (e instanceof UsageError) return e.message;
    throw e;
  }
  return "accepted";
};

describe("operations/shared/cli: parsing", () => {
  it("applies defaults, types the values, and says which options were given", () => {
    const p = parse("--stack", "dev");
    expect(p.help).toBe(false);
    if (p.help) return;
    expect(p.values).toEqual({
      stack: "dev",
      consumers: 4,
      seconds: undefined,
      mode: "fast",
      sizes: [10_000],
      databaseUrl: undefined,
      out: undefined,
      dryRun: false,
      yes: false,
      json: false,
    });
    expect([...p.given]).toEqual(["stack"]);
    const q = values("--stack=prod", "--consumers", "8", "--seconds=2.5", "--mode", "slow", "--sizes", "16,1_000_000", "-y", "--json");
    expect(q).toMatchObject({ stack: "prod", consumers: 8, seconds: 2.5, mode: "slow", sizes: [16, 1_000_000], yes: true, json: true });
  });

  it("refuses an unknown flag, naming it", () => {
    expect(refusal("--stack", "dev", "--bogus")).toBe("unknown flag --bogus");
    expect(refusal("--stack", "dev", "--bogus=1")).toBe("unknown flag --bogus");
    expect(refusal("--stack", "dev", "-x")).toBe("unknown flag -x");
    expect(refusal("--Stack", "dev")).toBe("unknown flag --Stack");
    expect(refusal("--dry_run", "--stack", "dev")).toBe("unknown flag --dry_run");
  });

  it("refuses a bad value with the flag, what was expected and what was given", () => {
    expect(refusal("--stack", "dev", "--consumers", "abc")).toBe('--consumers: expected a positive integer, got "abc"');
    expect(refusal("--stack", "dev", "--consumers", "0")).toBe('--consumers: expected a positive integer, got "0"');
    expect(refusal("--stack", "dev", "--consumers", "1.5")).toBe('--consumers: expected a positive integer, got "1.5"');
    expect(refusal("--stack", "dev", "--consumers", "-3")).toBe('--consumers: expected a positive integer, got "-3"');
    expect(refusal("--stack", "dev", "--seconds", "0")).toBe('--seconds: expected a positive number, got "0"');
    expect(refusal("--stack", "dev", "--seconds", "NaN")).toBe('--seconds: expected a positive number, got "NaN"');
    expect(refusal("--stack", "dev", "--seconds", "Infinity")).toBe('--seconds: expected a positive number, got "Infinity"');
    expect(refusal("--stack", "dev", "--mode", "medium")).toBe('--mode: expected one of fast, slow, got "medium"');
    expect(refusal("--stack", "dev", "--sizes", "10000,abc")).toBe('--sizes: expected comma-separated integers of at least 16, got "10000,abc"');
    expect(refusal("--stack", "dev", "--sizes", "10000,,5")).toBe('--sizes: expected comma-separated integers of at least 16, got "10000,,5"');
    expect(refusal("--stack", "   ")).toBe('--stack: expected a stack name, got "   "');
  });

  it("never echoes a secret value", () => {
    const m = refusal("--stack", "dev", "--database-url", "mysql://root:hunter2@h/db");
    expect(m).toBe("--database-url: expected a postgres:// or postgresql:// connection string");
    expect(m).not.toContain("hunter2");
  });

  it("refuses a missing value, a value given to a flag, a repeated option, a stray argument, a missing required option", () => {
    expect(refusal("--stack")).toBe("--stack needs a value");
    expect(refusal("--stack=")).toBe("--stack needs a value");
    expect(refusal("--stack", "--yes")).toBe("--stack needs a value");
    expect(refusal("--stack", "dev", "--yes=no")).toBe('--yes takes no value (got "no")');
    expect(refusal("--stack", "dev", "--stack", "prod")).toBe("--stack given twice");
    expect(refusal("--stack", "dev", "extra")).toBe('unexpected argument "extra"');
    expect(refusal("--stack", "dev", "--", "--yes")).toBe('unexpected argument "--yes"');
    expect(refusal("--consumers", "2")).toBe("--stack is required");
    // A value may start with one dash: it goes to the validator, not taken for a flag.
    expect(refusal("--stack", "dev", "--consumers", "-1")).toBe('--consumers: expected a positive integer, got "-1"');
  });

  it("refuses options that conflict, naming both", () => {
    expect(refusal("--stack", "dev", "--dry-run", "-y")).toBe("--dry-run and --yes conflict: a dry run asks nothing");
  });

  it("checks paths: existing directories and files, and where an output may go", () => {
    expect(existingDir()(tmp)).toBe(tmp);
    expect(() => existingDir()(path.join(tmp, "nope"))).toThrow("expected an existing directory");
    expect(() => existingDir()(path.join(tmp, "a-file.md"))).toThrow("expected an existing directory");
    expect(existingFile()(path.join(tmp, "a-file.md"))).toBe(path.join(tmp, "a-file.md"));
    expect(() => existingFile()(tmp)).toThrow("expected an existing file");
    expect(values("--stack", "s", "--out", tmp).out).toBe(tmp); // a directory: the command writes into it
    expect(values("--stack", "s", "--out", path.join(tmp, "new", "deeper", "r.md")).out).toBe(path.join(tmp, "new", "deeper", "r.md"));
    expect(refusal("--stack", "s", "--out", path.join(tmp, "a-file.md", "r.md"))).toMatch(
      new RegExp(`^--out: expected a file or directory path; ${path.join(tmp, "a-file.md").replace(/[.]/g, "\\.")} is not a directory, got "`),
    );
    expect(() => outputPath()(tmp)).toThrow("expected a file path; this is a directory");
  });
});

describe("operations/shared/cli: help and the command line", () => {
  it("--help wins over everything else on the line", () => {
    expect(parse("--help")).toEqual({ help: true });
    expect(parse("--bogus", "-h")).toEqual({ help: true });
    expect(parse("--consumers", "abc", "--help")).toEqual({ help: true });
    expect(parse("--stack", "--help")).toEqual({ help: true });
  });

  it("generates the usage line and the help from the declaration", () => {
    expect(usageLine(CMD)).toBe(
      "npm run tool -- --stack NAME [--consumers N] [--seconds S] [--mode MODE] [--sizes N,N] [--database-url URL] [--out PATH] [--dry-run] [--yes] [--json]",
    );
    const h = helpText(CMD);
    expect(h).toMatch(/^usage: npm run tool -- --stack NAME /);
    expect(h).toContain("Does the thing.");
    expect(h).toMatch(/\n {2}--stack NAME +the stack \(required\)\n/);
    expect(h).toMatch(/\n {2}--consumers N +concurrent consumers \(default: 4\)\n/);
    expect(h).toMatch(/\n {2}--sizes N,N +sizes \(default: 10000\)\n/);
    expect(h).toMatch(/\n {2}-y, --yes +do not ask\n/);
    expect(h).toMatch(/\n {2}--json +print the result as one JSON document on stdout; progress and messages go to stderr\n/);
    expect(h).toMatch(/\n {2}-h, --help +print this help and exit\n/);
    expect(h).toContain("not together:\n  --dry-run and --yes: a dry run asks nothing");
    expect(h).toContain("exit codes:\n  0 done\n  2 refused\n");
    for (const line of h.split("\n")) expect(line.length).toBeLessThanOrEqual(160);
  });

  it("runCommandLine prints the help (exit 0) or one error line with the usage (exit 2)", () => {
    const out: string[] = [];
    const err: string[] = [];
    const io = { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s) };
    expect(runCommandLine(CMD, ["-h"], io)).toEqual({ exitCode: 0 });
    expect(out.join("")).toBe(helpText(CMD));
    expect(err).toEqual([]);
    out.length = 0;
    expect(runCommandLine(CMD, ["--stack", "dev", "--consumers", "abc"], io)).toEqual({ exitCode: 2 });
    expect(err).toEqual([`tool: --consumers: expected a positive integer, got "abc" (usage: ${usageLine(CMD)})\n`]);
    expect(out).toEqual([]);
    const ok = runCommandLine(CMD, ["--stack", "dev"], io);
    expect("values" in ok && ok.values.stack).toBe("dev");
  });

  it("refuses to declare --help itself", () => {
    expect(() => parseCommand({ name: "x", summary: [], options: { help: flag("mine") } }, [])).toThrow("--help is built in");
  });
});
