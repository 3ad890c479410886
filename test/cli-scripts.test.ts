/**
 * Every script's command line: run as the operator runs it (a child process from the project root) for --help and an
 * unknown flag, which prove the script is wired to its declaration and exits 0 or 2 with one line; its bad values,
 * conflicts and other refusals through the same parser in-process (runCommandLine with the script's own COMMAND, the
 * call its main makes first), since the process would add nothing those two runs have not proven. Then the machine-readable outputs on real data: `seed --json`, `report --json`
 * with --out a directory, and `rollback --dry-run` (--json, then through npm) on a real stack with a git history,
 * proving that nothing changed: the stack history, the settings file, the database (rows and functions), the worktrees.
 * The parser's own logic is test/cli-args.test.ts.
 */
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rollbackCommand } from "../operations/rollback";
import { type Command, runCommandLine } from "../operations/shared/cli";
import { COMMAND as DEMO } from "../scripts/demo";
import { COMMAND as REHEARSE } from "../scripts/rehearse";
import { COMMAND as REPORT } from "../scripts/report";
import { COMMAND as ROLLBACK } from "../scripts/rollback";
import { COMMAND as SEED } from "../scripts/seed";
import { freshDb, type TestDb } from "./helpers/db";
import { git, gitProject } from "./helpers/gitProject";
import { up, seededDb } from "./helpers/migration";
import { PROJECT_ROOT, testStack, type TestStack } from "../harness/stack";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** node -r ts-node/register/transpile-only <file> <args>, or any command; stdin is not a terminal (it is closed). */
function run(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { cwd: opts.cwd ?? PROJECT_ROOT, env: { ...process.env, ...opts.env }, maxBuffer: 64 * 1024 * 1024 },
      (err: any, stdout, stderr) => resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr }),
    );
    child.stdin?.end();
  });
}
const script = (file: string, args: string[], opts?: Parameters<typeof run>[2]) =>
  run(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(PROJECT_ROOT, file), ...args], opts);

/** The script's first step, in-process: its declaration through runCommandLine, with stdout and stderr captured. */
function parsed(cmd: Command<any>, args: string[]): Run {
  let stdout = "";
  let stderr = "";
  const r = runCommandLine(cmd, args, { stdout: (x) => (stdout += x), stderr: (x) => (stderr += x) });
  return { code: "exitCode" in r ? r.exitCode : null, stdout, stderr };
}

/** One line on stderr: `<name>: <message> (usage: npm run <name> -- ...)`, nothing on stdout, exit 2. */
function expectUsageError(r: Run, name: string, message: string) {
  expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: "" });
  expect(r.stderr.split("\n")).toHaveLength(2); // one line and its newline
  expect(r.stderr.startsWith(`${name}: ${message} (usage: npm run ${name} -- `)).toBe(true);
  expect(r.stderr).toMatch(/\)\n$/);
  expect(r.stderr).not.toMatch(/\bat .*\.ts:\d+/); // no stack trace
}

const SCRIPTS: { name: string; cmd?: Command<any>; file: string; bad: [string[], string]; conflict?: [string[], string] }[] = [
  {
    name: "seed",
    cmd: SEED,
    file: "scripts/seed.ts",
    bad: [["--database-url", "postgres://h/db", "--orgs", "abc"], '--orgs: expected an integer from 0 to 10,000,000, got "abc"'],
  },
  {
    name: "report",
    cmd: REPORT,
    file: "scripts/report.ts",
    bad: [
      ["--stack", "s", "--out", "README.md/r.md"],
      `--out: expected a file or directory path; ${path.join(PROJECT_ROOT, "README.md")} is not a directory, got "README.md/r.md"`,
    ],
  },
  {
    name: "rollback",
    cmd: ROLLBACK,
    file: "scripts/rollback.ts",
    bad: [["--stack", "s", "--to", "abc"], '--to: expected a version number (a positive integer), got "abc"'],
    conflict: [["--stack", "s", "--dry-run", "--yes"], "--dry-run and --yes conflict: a dry run asks nothing and changes nothing"],
  },
  {
    name: "rehearse",
    cmd: REHEARSE,
    file: "scripts/rehearse.ts",
    bad: [["--database", "Bad-Name"], '--database: expected a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 characters), got "Bad-Name"'],
    conflict: [["--target-url", "postgres://h/db", "--drop"], "--target-url and --drop conflict: the rehearsal drops only a database it created (--database)"],
  },
  { name: "demo", cmd: DEMO, file: "scripts/demo.ts", bad: [["--orgs", "lots"], '--orgs: expected an integer from 1 to 10,000,000, got "lots"'] },
  {
    name: "bench",
    file: "bench/run.ts",
    bad: [["--consumers", "abc"], '--consumers: expected a positive integer, got "abc"'],
    conflict: [["--zero-downtime", "--rpc-seconds", "2"], "--zero-downtime and --rpc-seconds conflict: the zero-downtime run has no pgbench cases"],
  },
];

describe.each(SCRIPTS)("npm run $name: the command line", ({ name, cmd, file, bad, conflict }) => {
  it("--help prints the usage, every option and the exit codes on stdout, exit 0", async () => {
    const r = await script(file, ["--help"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith(`usage: npm run ${name} -- `)).toBe(true);
    expect(r.stdout).toMatch(/\noptions:\n/);
    expect(r.stdout).toMatch(/\n {2}-h, --help +print this help and exit\n/);
    expect(r.stdout).toMatch(/\nexit codes:\n {2}0 /);
  });

  it("refuses an unknown flag, naming it, exit 2", async () => {
    expectUsageError(await script(file, ["--bogus-flag"]), name, "unknown flag --bogus-flag");
  });

  // The bench's declaration stays in bench/ (tests never import it: test/unit/layout.test.ts): run as a process.
  const refused = async (args: string[]) => (cmd ? parsed(cmd, args) : await script(file, args));

  it("refuses a bad value, naming the flag, what it expects and what it got, exit 2", async () => {
    expectUsageError(await refused(bad[0]), name, bad[1]);
  });

  it.runIf(conflict)("refuses two flags of which one would be ignored", async () => {
    expectUsageError(await refused(conflict![0]), name, conflict![1]);
  });
});

describe("the other refusals, as the operator meets them", () => {
  it("a missing required option, a missing value, a value to a flag", () => {
    expectUsageError(parsed(REPORT, []), "report", "--stack is required");
    expectUsageError(parsed(ROLLBACK, ["--stack", "--yes"]), "rollback", "--stack needs a value");
    expectUsageError(parsed(ROLLBACK, ["--stack", "s", "--yes=no"]), "rollback", '--yes takes no value (got "no")');
    expectUsageError(parsed(ROLLBACK, ["--stack", "s", "--dry-run", "--out", "x.md"]), "rollback", "--dry-run and --out conflict: a dry run writes no report");
  });

  it("npm run demo answers a bad flag before the setup runs", async () => {
    const r = await run("bash", [path.join(PROJECT_ROOT, "scripts", "demo.sh"), "--bogus-flag"]);
    expectUsageError(r, "demo", "unknown flag --bogus-flag");
  });

  it("a secret value is never echoed", () => {
    const r = parsed(REHEARSE, ["--target-url", "mysql://root:hunter2-pw@h/db"]);
    expectUsageError(r, "rehearse", "--target-url: expected a postgres:// or postgresql:// connection string");
    expect(r.stderr).not.toContain("hunter2");
  });
});

describe("seed --json", () => {
  let db: TestDb;
  afterAll(async () => db?.drop());

  it("prints the result as one JSON document on stdout, progress on stderr", async () => {
    db = await freshDb({ baseline: false });
    const r = await script("scripts/seed.ts", ["--database-url", db.url, "--orgs", "20", "--seed", "3", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ seed: 3, orgsRequested: 20, orgsAdded: 20, orgsSkipped: 0, negativeBalances: 1 });
    expect(Object.values(doc.orgsPerPlan as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(20);
    expect(doc.database).toMatch(/^postgres(ql)?:\/\//);
    expect(r.stderr).toMatch(/^seed: baseline created/);
    expect(r.stderr).toContain("seed: 20/20 orgs (100%)");
    expect((await db.query(`SELECT count(*)::int AS n FROM organizations`))[0].n).toBe(20);
  });
});

describe("rollback --dry-run and report --json on a real stack", () => {
  const PASSWORD = "pw-dry-run-never-printed-2231";
  let db: TestDb;
  let t: TestStack;
  let repo: string;
  let commitA: string;
  let settingsFile: string;

  /** Everything a rollback could change: the history, the settings file, the rows, the functions, the worktrees. */
  async function snapshot() {
    const [rows] = await db.query(`SELECT md5(string_agg(c::text, ',' ORDER BY c.organization_id)) AS credits, count(*)::int AS n,
                                          (SELECT count(*)::int FROM public.credit_consumption_logs) AS logs
                                     FROM public.organization_credits c`);
    const fns = await db.query(`SELECT p.oid::regprocedure::text AS sig, md5(pg_get_functiondef(p.oid)) AS md5 FROM pg_proc p
                                 WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1`);
    const models = await db.query(`SELECT credit_model, count(*)::int AS n FROM public.organization_credits GROUP BY 1 ORDER BY 1`);
    return {
      history: (await t.stack.history(undefined, undefined, false)).length,
      settings: fs.readFileSync(settingsFile, "utf8"),
      rows,
      fns,
      models,
      worktrees: git(repo, "worktree", "list").split("\n").length,
      head: git(repo, "rev-parse", "HEAD"),
      status: git(repo, "status", "--porcelain"),
      reports: fs.existsSync(path.join(repo, ".guardian", "reports")),
    };
  }

  beforeAll(async () => {
    db = await seededDb(60, 17);
    repo = gitProject();
    commitA = git(repo, "rev-parse", "HEAD");
    const withPassword = new URL(db.url); // trust authentication: the server ignores it, the output must not show it
    withPassword.password = PASSWORD;
    t = await testStack(withPassword.toString(), { creditModel: "unified" }, { dir: repo, stackName: "test" });
    settingsFile = path.join(repo, "Pulumi.test.yaml");
    await up(t); // version 1: unified, program of commit A
    fs.appendFileSync(path.join(repo, "index.ts"), "\n// second commit: the program that migrated\n");
    git(repo, "commit", "--quiet", "-am", "program of version 2");
    await t.setConfig({ creditModel: "multi" });
    await up(t); // version 2: multi, program of commit B (HEAD)
  }, 600_000);

  afterAll(async () => {
    await db?.drop();
    if (repo) fs.rmSync(repo, { recursive: true, force: true });
    if (t) fs.rmSync(t.stateDir, { recursive: true, force: true });
  });

  it("rollback --dry-run --json, without a terminal: the plan as one JSON document, exit 0, nothing changed", async () => {
    const before = await snapshot();
    expect([before.history, before.models]).toEqual([2, [{ credit_model: "multi", n: 60 }]]);
    const r = await script("scripts/rollback.ts", ["--stack", "test", "--cwd", repo, "--dry-run", "--json"], { env: t.env });
    expect(r.code, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout); // stdout is the document only
    expect(plan).toMatchObject({
      exitCode: 0,
      outcome: "dry-run",
      currentVersion: 2,
      targetVersion: 1,
      commit: commitA,
      usedWorktree: true,
      model: "unified",
    });
    expect(plan.message).toBe(
      `rollback: dry run: nothing was written (stack test stays at version 2). To apply this plan: npm run rollback -- --stack test --to 1 --cwd ${repo} --yes`,
    );
    expect(plan.configChanges).toEqual([{ key: "guardian:creditModel", from: "multi", to: "unified" }]);
    expect(plan.database).toMatch(/^postgres(ql)?:\/\/postgres:\*\*\*@/);
    expect(plan.databaseChanges).toContain("organizations per model: multi 60 -> unified 60");
    expect(plan.databaseChanges.join("\n")).toMatch(
      /function consume_credits_rpc\(uuid,text,integer,text\) \(md5 [0-9a-f]{32}\): replaced by consume_credits_rpc\(uuid,text\), v1 as recorded in backup guardian_backup_/,
    );
    expect(plan.before).toMatchObject({ orgsTotal: 60, orgsByModel: { multi: 60 } });
    const changes = Object.entries(plan.preview.changeSummary as Record<string, number>).filter(([k, v]) => k !== "same" && v > 0);
    expect(changes.length).toBeGreaterThan(0);
    for (const k of ["up", "after", "checks", "reportPath", "newVersion"]) expect(plan[k], k).toBeUndefined();
    // The human lines went to stderr; the password appears nowhere.
    expect(r.stderr).toContain("  target   version 1: update succeeded");
    expect(r.stderr).toContain("--- preview: ");
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);

    expect(await snapshot()).toEqual(before);
  }, 300_000);

  it("npm run rollback -- --dry-run prints the plan for a person, without a terminal, and changes nothing", async () => {
    const before = await snapshot();
    const r = await run("npm", ["run", "--silent", "rollback", "--", "--stack", "test", "--cwd", repo, "--dry-run"], { env: t.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`rollback: stack test, project ${repo}`);
    expect(r.stdout).toContain("    guardian:creditModel: multi -> unified");
    expect(r.stdout).toContain(`  program  commit ${commitA.slice(0, 10)}`);
    expect(r.stdout).toContain("    organizations per model: multi 60 -> unified 60");
    expect(r.stdout).toMatch(/--- preview: .*\d+ to (create|delete|update|replace)/);
    expect(r.stdout).toContain("rollback: dry run: nothing was written (stack test stays at version 2)");
    expect(r.stdout).not.toContain('Type "yes"');
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
    expect(await snapshot()).toEqual(before);
  }, 300_000);

  it("the API's dryRun never asks and never updates", async () => {
    const before = await snapshot();
    const lines: string[] = [];
    const r = await rollbackCommand({
      stack: "test",
      cwd: repo,
      envVars: t.env,
      dryRun: true,
      to: 1,
      log: (s) => lines.push(s),
      confirm: async () => {
        throw new Error("a dry run must not ask");
      },
    });
    expect(r.outcome, r.message).toBe("dry-run");
    expect(r.exitCode).toBe(0);
    expect(r.preview?.changeSummary).toBeDefined();
    expect(r.up).toBeUndefined();
    expect(await snapshot()).toEqual(before);
  }, 300_000);

  it("report --out <directory> writes <stack>.md and .svg into it; --json prints them with the figures", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-report-dir-"));
    try {
      const r = await script("scripts/report.ts", ["--stack", "test", "--out", dir, "--json"], { cwd: repo, env: t.env });
      expect(r.code, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc.markdown).toBe(path.join(dir, "test.md"));
      expect(doc.svg).toBe(path.join(dir, "test.svg"));
      expect(doc.figures).toMatchObject({ stack: "test", orgsTotal: 60, orgsByModel: { multi: 60 }, creditModel: "multi" });
      expect(fs.readFileSync(doc.markdown, "utf8")).toMatch(/^# Guardian credits migration report: stack `test`/);
      expect(fs.existsSync(doc.svg)).toBe(true);
      expect(r.stderr).toContain(`report: wrote `);
      expect(r.stdout + r.stderr).not.toContain(PASSWORD);

      // A path ending in a slash is a directory too, created when missing; without --json the lines go to stdout.
      const sub = `${path.join(dir, "nested", "reports")}/`;
      const h = await script("scripts/report.ts", ["--stack", "test", "--out", sub], { cwd: repo, env: t.env });
      expect(h.code, h.stderr).toBe(0);
      expect(h.stdout).toContain(`report: stack test, update version 2, 60/60 orgs multi`);
      expect(fs.existsSync(path.join(sub, "test.md"))).toBe(true);
      expect(fs.existsSync(path.join(sub, "test.svg"))).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
