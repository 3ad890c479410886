/**
 * The README's first steps on a real database ("Pointing it at your database"), run as written in a fresh clone on a
 * machine whose global `pulumi login` is another project's backend. The old instruction (`pulumi login
 * file://$PWD/.guardian/state`) failed there (the folder does not exist) and the next `pulumi stack init` silently
 * used that other backend. The README's lines up to `pulumi stack init` must create the stack in the project's own
 * .guardian/state and leave the other backend alone.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = path.resolve(__dirname, "..");
const CLI_BIN = path.join(os.homedir(), ".pulumi", "versions", "3.274.1", "bin");

/** The README's shell block that starts the section, up to and including `pulumi stack init staging`. */
function readmeFirstSteps(): string[] {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Pointing it at your database"));
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1].split("\n");
  const end = block.findIndex((l) => l.startsWith("pulumi stack init staging"));
  expect(end, "the README's block has `pulumi stack init staging`").toBeGreaterThan(0);
  return block.slice(0, end + 1);
}

describe("README: the project's own backend in a fresh clone", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-readme-login-"));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const home = path.join(tmp, "pulumi-home");
  const other = path.join(tmp, "another-project-state");
  const clone = path.join(tmp, "clone");
  fs.mkdirSync(other, { recursive: true });
  fs.mkdirSync(clone, { recursive: true });
  fs.copyFileSync(path.join(ROOT, "Pulumi.yaml"), path.join(clone, "Pulumi.yaml"));
  const env = {
    ...process.env,
    PATH: `${CLI_BIN}:${process.env.PATH}`,
    PULUMI_HOME: home,
    PULUMI_CONFIG_PASSPHRASE: "readme-test",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_BACKEND_URL: "",
  };
  const bash = (script: string) => spawnSync("bash", ["-c", script], { cwd: clone, env, encoding: "utf8", timeout: 120_000 });
  const stackFiles = (dir: string) =>
    fs.existsSync(dir)
      ? fs
          .readdirSync(dir, { recursive: true })
          .map(String)
          .filter((f) => f.endsWith(".json"))
      : [];

  it("runs the README's lines as written: the stack lands in <clone>/.guardian/state, not in the global login's backend", () => {
    // The machine's global login: another project's state.
    const login = bash(`pulumi login file://${other}`);
    expect(login.status, login.stderr).toBe(0);
    expect(stackFiles(other)).toEqual([]);

    const lines = readmeFirstSteps();
    expect(lines.join("\n")).not.toMatch(/^pulumi login/m); // a login is global: the README sets the backend per project
    const r = bash(["set -euo pipefail", ...lines].join("\n"));
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toContain(`file://${clone}/.guardian/state`); // pulumi whoami --verbose: Backend URL
    expect(fs.existsSync(path.join(clone, ".guardian", "state", ".pulumi", "stacks", "guardian-credits", "staging.json"))).toBe(true);
    expect(stackFiles(other)).toEqual([]); // the other project's backend is untouched
  }, 180_000);

  it("(the old instruction fails in a fresh clone: the folder does not exist)", () => {
    const fresh = path.join(tmp, "fresh");
    fs.mkdirSync(fresh);
    const r = spawnSync("bash", ["-c", 'pulumi login "file://$PWD/.guardian/state"'], { cwd: fresh, env, encoding: "utf8", timeout: 60_000 });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/no such file or directory/);
  }, 60_000);
});
