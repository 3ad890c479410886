/**
 * A git repository holding a copy (not links) of the program, as an operator's checkout is: `npm run rollback` checks
 * an earlier commit of it out in a worktree. node_modules is linked; one commit.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { PROJECT_ROOT } from "../../harness/stack";

const PROGRAM = ["index.ts", "components", "providers", "lib", "sql", "Pulumi.yaml", "package.json", "tsconfig.json"];

export function git(dir: string, ...args: string[]): string {
  return execFileSync("git", args, { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

export function gitProject(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-repo-"));
  for (const e of PROGRAM) fs.cpSync(path.join(PROJECT_ROOT, e), path.join(dir, e), { recursive: true });
  fs.symlinkSync(path.join(PROJECT_ROOT, "node_modules"), path.join(dir, "node_modules"));
  fs.writeFileSync(path.join(dir, ".gitignore"), "node_modules\n.guardian/\nPulumi.*.yaml\n");
  git(dir, "init", "--quiet", "--initial-branch=main");
  git(dir, "config", "user.email", "ops@example.invalid");
  git(dir, "config", "user.name", "ops");
  git(dir, "add", "-A");
  git(dir, "commit", "--quiet", "-m", "program of version 1");
  return dir;
}
