/**
 * `npm run rollback`: back to an earlier update of the stack history, through the real engine on a real Postgres.
 *
 * The project is a real git repository (a copy of this program, committed twice), so every update records the commit
 * of its program and the command has to check an older one out in a worktree. The stack's history, as the tests build it:
 *   v1 unified @A   v2 multi @B (HEAD), consumption   v3 = rollback (default target v1: config + program of A, worktree)
 *   v4 = rollback --to 2 (multi again, HEAD)   v5 = rollback --to 3 that fails in the engine (no verified backup)
 *   v6 = a refresh that holds the stack lock while the command is refused
 * then the history is rewritten (A and B pruned) and the passphrase rotated, for the last two refusals.
 */
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_UNIFIED_COSTS, POOLS } from "../lib/config";
import { rollbackCommand, type RollbackOptions, type RollbackResult } from "../operations/rollback";
import type { TestDb } from "./helpers/db";
import { orgs, type OrgRow, up, seededDb } from "./helpers/migration";
import { git, gitProject } from "./helpers/gitProject";
import { collect, PROJECT_ROOT, testStack, type TestStack } from "../harness/stack";

const PASSWORD = "pw-never-printed-4711";

function lockFiles(stateDir: string): string[] {
  const root = path.join(stateDir, ".pulumi", "locks");
  if (!fs.existsSync(root)) return [];
  return (fs.readdirSync(root, { recursive: true }) as string[]).filter((f) => f.endsWith(".json"));
}

async function waitFor(cond: () => boolean, ms: number) {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("npm run rollback: one command back to an earlier update", () => {
  let db: TestDb;
  let t: TestStack;
  let repo: string;
  let commitA: string;
  let commitB: string;
  let original: OrgRow[];
  let v1Def: string;
  let settingsFile: string;
  const spent = new Map<string, number>(); // unified cost of every successful call made in the multi model

  /** Runs the command in-process, collecting its lines. */
  async function rollback(opts: Partial<RollbackOptions> = {}): Promise<RollbackResult & { text: string }> {
    const lines: string[] = [];
    const r = await rollbackCommand({ stack: "test", cwd: repo, envVars: t.env, log: (s) => lines.push(s), ...opts });
    return { ...r, text: lines.join("\n") };
  }

  /** Runs the command as the operator does, in a child process. */
  function rollbackProcess(args: string[], viaNpm = false) {
    const cmd = viaNpm
      ? (["npm", ["run", "--silent", "rollback", "--"]] as const)
      : (["node", ["-r", "ts-node/register/transpile-only", "scripts/rollback.ts"]] as const);
    const r = spawnSync(cmd[0], [...cmd[1], "--stack", "test", "--cwd", repo, ...args], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, ...t.env },
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  const settings = () => fs.readFileSync(settingsFile, "utf8");
  const historyLength = async () => (await t.stack.history(undefined, undefined, false)).length;
  const modelCounts = async () =>
    Object.fromEntries((await db.query(`SELECT credit_model, count(*)::int n FROM public.organization_credits GROUP BY 1`)).map((r) => [r.credit_model, r.n]));

  beforeAll(async () => {
    db = await seededDb(100, 11);
    repo = gitProject();
    commitA = git(repo, "rev-parse", "HEAD");
    // A password the server ignores (trust authentication), so the output can be checked for it.
    const withPassword = new URL(db.url);
    withPassword.password = PASSWORD;
    t = await testStack(withPassword.toString(), { creditModel: "unified" }, { dir: repo, stackName: "test" });
    settingsFile = path.join(repo, "Pulumi.test.yaml");
    original = await orgs(db);
    [{ def: v1Def }] = await db.query(`SELECT pg_get_functiondef('public.consume_credits_rpc(uuid,text)'::regprocedure) AS def`);

    await up(t); // v1: unified, nothing to roll back
    fs.appendFileSync(path.join(repo, "index.ts"), "\n// second commit: the program that migrated\n");
    git(repo, "commit", "--quiet", "-am", "program of version 2");
    commitB = git(repo, "rev-parse", "HEAD");
    await t.setConfig({ creditModel: "multi" });
    await up(t); // v2: multi

    const calls: [string, string, number][] = [];
    original.slice(0, 40).forEach((o, i) => {
      calls.push([o.organization_id, ["ai_chat", "email_send", "whatsapp_message", "form_generation", "sms_send"][i % 5], 1 + (i % 3)]);
      calls.push([o.organization_id, "ai_assistant", 2]);
    });
    for (const [org, action, qty] of calls) {
      const [{ r }] = await db.query(`SELECT public.consume_credits_rpc($1, $2, $3) AS r`, [org, action, qty]);
      if (r.success) spent.set(org, (spent.get(org) ?? 0) + DEFAULT_UNIFIED_COSTS[action] * qty);
    }
    expect(spent.size).toBeGreaterThan(20);
  });

  afterAll(async () => {
    await db?.drop();
    if (repo) fs.rmSync(repo, { recursive: true, force: true });
    if (t) fs.rmSync(t.stateDir, { recursive: true, force: true });
  });

  it("shows the default target (version 1), the preview and the database facts, and writes nothing when declined", async () => {
    const before = settings();
    let asked = "";
    const r = await rollback({
      confirm: async (q) => {
        asked = q;
        return false;
      },
    });
    expect(r.exitCode).toBe(2);
    expect(r.outcome).toBe("declined");
    expect([r.currentVersion, r.targetVersion, r.usedWorktree, r.commit]).toEqual([2, 1, true, commitA]);
    expect(asked).toBe(`Update stack test to version 1's config and program (pulumi up)? Type "yes" to continue: `);
    expect(r.text).toContain("guardian:creditModel: multi -> unified");
    expect(r.text).toContain(`program  commit ${commitA.slice(0, 10)} (HEAD is ${commitB.slice(0, 10)}): checked out in a temporary worktree`);
    expect(r.text).toContain("organizations per model: multi 100 -> unified 100");
    expect(r.text).toMatch(
      /function consume_credits_rpc\(uuid,text,integer,text\) \(md5 [0-9a-f]{32}\): replaced by consume_credits_rpc\(uuid,text\), v1 as recorded in backup guardian_backup_/,
    );
    expect(r.text).toMatch(/function consume_credits_batch\(uuid,jsonb\) \(md5 [0-9a-f]{32}\): dropped/);
    expect(r.text).toContain("balances: nothing recomputed: 100 orgs switched back by credit_model alone");
    expect(r.text).toMatch(/--- preview: .*\d+ to (create|delete|update)/);
    expect(r.message).toBe("rollback: declined; nothing was written (stack test stays at version 2)");
    expect(settings()).toBe(before);
    expect(await historyLength()).toBe(2);
    expect(await modelCounts()).toEqual({ multi: 100 });
    expect(git(repo, "worktree", "list").split("\n")).toHaveLength(1);
  });

  it("rolls back to version 1 with --yes: v1 byte for byte (pinned), balances kept, verified, report written", async () => {
    const status = git(repo, "status", "--porcelain");
    const r = await rollback({ yes: true });
    expect(r.message).toMatch(/^rollback: done\. Stack test is at version 3: version 1's config and program \(100 orgs unified\)\. Report: /);
    expect(r.exitCode).toBe(0);
    expect([r.targetVersion, r.newVersion, r.usedWorktree]).toEqual([1, 3, true]);
    expect(r.checks!.every((c) => c.agrees)).toBe(true);
    expect(r.text).toMatch(/database postgres:\/\/postgres:\*\*\*@127\.0\.0\.1/);
    expect(r.text).not.toContain(PASSWORD);
    expect(fs.readFileSync(r.reportPath!, "utf8")).not.toContain(PASSWORD);

    const now = new Map((await orgs(db)).map((o) => [o.organization_id, o]));
    for (const o of original) {
      const got = now.get(o.organization_id)!;
      const want = spent.has(o.organization_id) ? Math.max(0, o.credits_remaining - spent.get(o.organization_id)!) : o.credits_remaining;
      expect(got.credits_remaining, `${o.organization_id} (${o.plan_name})`).toBe(want);
      expect(got.credit_model).toBe("unified");
    }
    const fns = await db.query(`SELECT oid::regprocedure::text AS sig, pg_get_functiondef(oid) AS def FROM pg_proc
                                 WHERE proname IN ('consume_credits_rpc', 'consume_credits_batch') AND pronamespace = 'public'::regnamespace`);
    expect(fns.map((f) => f.sig)).toEqual(["consume_credits_rpc(uuid,text)"]);
    expect(fns[0].def.replace(/\n SET search_path TO 'public', 'pg_temp'/, "")).toBe(v1Def);

    // The program of commit A ran (from the worktree), the checkout was not touched, the worktree is gone.
    const [latest] = await t.stack.history(1, 1, false);
    expect(latest.environment["git.head"]).toBe(commitA);
    expect(latest.config["guardian:creditModel"].value).toBe("unified");
    expect(git(repo, "rev-parse", "HEAD")).toBe(commitB);
    expect(git(repo, "status", "--porcelain")).toBe(status);
    expect(git(repo, "worktree", "list").split("\n")).toHaveLength(1);
    expect(settings()).toMatch(/guardian:creditModel: unified/);

    expect(r.reportPath).toBe(path.join(repo, ".guardian", "reports", "test-rollback-v3.md"));
    const report = fs.readFileSync(r.reportPath!, "utf8");
    expect(report).toContain("# Guardian credits migration report: stack `test`");
    expect(report).toContain("unified 100");
    expect(fs.existsSync(path.join(repo, ".guardian", "reports", "test-rollback-v3.svg"))).toBe(true);
  });

  it("rolling back to the current version does nothing and says so (npm run rollback, exit 0)", async () => {
    const before = settings();
    const r = rollbackProcess(["--to", "3"], true);
    expect(r.stdout).toContain("rollback: stack test is already at version 3: nothing to do (no preview, no update, nothing written)");
    expect(r.status).toBe(0);
    expect(settings()).toBe(before);
    expect(await historyLength()).toBe(3);
  });

  it("rollback --to 2 migrates again, with the program of HEAD, giving back the pools as rolled back (no refill)", async () => {
    const atRollback = new Map((await orgs(db)).map((o) => [o.organization_id, o]));
    const r = await rollback({ to: 2, yes: true });
    expect(r.exitCode, r.message).toBe(0);
    expect([r.targetVersion, r.newVersion, r.usedWorktree, r.commit]).toEqual([2, 4, false, commitB]);
    expect(r.text).toContain("organizations per model: unified 100 -> multi 100");
    expect(r.text).toContain("function consume_credits_rpc(uuid,text)");
    for (const o of await orgs(db)) {
      const was = atRollback.get(o.organization_id)!;
      expect(o.credit_model).toBe("multi");
      // v1 served nothing since the rollback: every pool is what it was, consumed credits stay consumed.
      for (const pool of POOLS) {
        expect(o[`${pool}_credits_available`], `${o.organization_id} ${pool}`).toBe(was[`${pool}_credits_available`]);
        expect(o[`${pool}_credits_total`], `${o.organization_id} ${pool} total`).toBe(was[`${pool}_credits_total`]);
      }
    }
    const [latest] = await t.stack.history(1, 1, false);
    expect(latest.environment["git.head"]).toBe(commitB);
  });

  it("exits 1 when the update fails, and keeps the target's config so that the same update can be run again", async () => {
    await db.query(`UPDATE guardian.backups SET restore_verified = false`);
    try {
      const r = await rollback({ to: 3, yes: true });
      expect(r.exitCode).toBe(1);
      expect(r.outcome).toBe("failed");
      expect(r.message).toMatch(/^rollback failed: pulumi up failed \(recorded as version 5\): /);
      expect(r.message).toContain("no verified backup records the v1 consume_credits_rpc(uuid,text)");
      expect(r.message).toContain("The stack config keeps version 3's values");
      expect(settings()).toMatch(/guardian:creditModel: unified/);
      expect(await modelCounts()).toEqual({ multi: 100 });
    } finally {
      await db.query(`UPDATE guardian.backups SET restore_verified = true`);
    }
  });

  it("refuses a target update that failed (child process, exit 2, nothing written)", async () => {
    const before = settings();
    const r = rollbackProcess(["--to", "5", "--yes"]);
    expect(r.stderr.trim()).toBe("rollback refused: version 5 failed: only a successful update is a state to return to");
    expect(r.status).toBe(2);
    expect(settings()).toBe(before);
    expect(await historyLength()).toBe(5);
  });

  it("refuses while another update holds the stack lock", async () => {
    const before = settings();
    // A real concurrent update: a refresh, held in flight by a table lock one of its reads waits for.
    const holder = await db.client();
    await holder.query("BEGIN");
    await holder.query("LOCK TABLE guardian.provider_costs IN ACCESS EXCLUSIVE MODE");
    const refreshing = t.stack.refresh({ onEvent: collect(t) }).then(
      (x) => x,
      (e) => e,
    );
    try {
      await waitFor(() => lockFiles(t.stateDir).length > 0, 90_000);
      const r = await rollback({ to: 1, yes: true });
      expect(r.exitCode).toBe(2);
      expect(r.message).toMatch(
        /^rollback refused: stack test is locked by another update \(\S+@\S+ \(pid \d+\) since \S+\)\. Wait for it to finish; if no update is running, `pulumi cancel --stack test` removes a stale lock\.$/,
      );
      expect(r.text).not.toContain("pulumi preview");
      expect(settings()).toBe(before);
    } finally {
      await holder.query("ROLLBACK");
      await holder.end();
    }
    const refreshed = await refreshing;
    expect(refreshed instanceof Error ? refreshed.message : refreshed.summary.kind).toBe("refresh");
    expect(await historyLength()).toBe(6);
  });

  it("refuses a version that is not an update", async () => {
    const r = await rollback({ to: 6, yes: true });
    expect(r.exitCode).toBe(2);
    expect(r.message).toBe("rollback refused: version 6 is a refresh, not an update: it has no program run to return to");
  });

  it("refuses when the recorded commit is no longer in the repository (history rewritten)", async () => {
    // The branch is squashed into a new root commit and the old commits are pruned, as after a force-push and gc.
    git(repo, "checkout", "--quiet", "--orphan", "squashed");
    git(repo, "commit", "--quiet", "-m", "squashed history");
    git(repo, "branch", "-D", "main");
    git(repo, "reflog", "expire", "--expire=now", "--all");
    git(repo, "gc", "--quiet", "--prune=now");
    expect(() => git(repo, "cat-file", "-e", `${commitB}^{commit}`)).toThrow();
    const before = settings();
    const r = await rollback({ yes: true }); // default target: version 4 (5 failed, 6 is a refresh)
    expect(r.targetVersion).toBe(4);
    expect(r.exitCode).toBe(2);
    expect(r.message).toBe(
      `rollback refused: commit ${commitB} (the program of version 4) is not in the repository at ${fs.realpathSync(repo)}. ` +
        `Fetch it (git fetch origin ${commitB}) and run the command again.`,
    );
    expect(settings()).toBe(before);
  });

  it("refuses a target whose secrets the current secrets provider cannot decrypt (passphrase rotated since)", async () => {
    execFileSync("pulumi", ["stack", "change-secrets-provider", "passphrase", "--stack", "test"], {
      cwd: repo,
      env: { ...process.env, ...t.env },
      input: "rotated-passphrase\nrotated-passphrase\n",
      stdio: ["pipe", "pipe", "pipe"],
    });
    const before = settings();
    const r = await rollback({ to: 2, yes: true, envVars: { ...t.env, PULUMI_CONFIG_PASSPHRASE: "rotated-passphrase" } });
    expect(r.exitCode).toBe(2);
    expect(r.message).toBe(
      "rollback refused: the config of version 2 holds secrets (guardian:databaseUrl) that cannot be decrypted with the stack's " +
        "current secrets provider (they were encrypted under a key it does not have). The secrets provider or passphrase was " +
        "changed after that update: set those values by hand (pulumi config set --secret) and run pulumi up.",
    );
    // The old passphrase no longer opens the stack's secrets manager at all: refused as well.
    const old = await rollback({ to: 2, yes: true });
    expect(old.exitCode).toBe(2);
    expect(old.message).toMatch(
      /^rollback refused: the config of version 2 holds secrets \(guardian:databaseUrl\) that cannot be decrypted with the stack's current secrets provider \(.*incorrect passphrase\)/,
    );
    expect(settings()).toBe(before);
    expect(await modelCounts()).toEqual({ multi: 100 });
  });
});
