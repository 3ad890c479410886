/**
 * The program of an earlier commit, checked out where it cannot disturb the operator: a detached `git worktree` in a
 * temporary directory, with the project's node_modules symlinked into it, removed afterwards.
 *
 * The operator's working tree, index, HEAD and branches are never touched: `git worktree add` only writes the new
 * directory and its bookkeeping under .git/worktrees/ (pruned again by `git worktree remove`). Hooks are disabled for
 * these git commands, so a post-checkout hook of the repository does not run.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

export interface GitRepo {
  /** Top level of the working tree. */
  top: string;
  /** The project directory relative to `top` ("" when the project is the top level). */
  prefix: string;
  /** The commit checked out now. */
  head: string;
}

function git(cwd: string, args: string[]): string {
  return execFileSync("git", ["-c", "core.hooksPath=/dev/null", ...args], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** The git repository holding `dir`, or undefined when it is not in one (or git is missing). */
export function repoOf(dir: string): GitRepo | undefined {
  try {
    const top = git(dir, ["rev-parse", "--show-toplevel"]);
    const prefix = git(dir, ["rev-parse", "--show-prefix"]).replace(/\/$/, "");
    const head = git(dir, ["rev-parse", "--verify", "HEAD^{commit}"]);
    return { top, prefix, head };
  } catch {
    return undefined;
  }
}

/** True when the repository holds that commit object (reachable or not, as long as it was not pruned). */
export function hasCommit(repo: GitRepo, sha: string): boolean {
  if (!/^[0-9a-f]{7,64}$/i.test(sha)) return false;
  try {
    git(repo.top, ["cat-file", "-e", `${sha}^{commit}`]);
    return true;
  } catch {
    return false;
  }
}

export interface Worktree {
  /** The project directory inside the worktree (where Pulumi.yaml is). */
  projectDir: string;
  root: string;
  remove(): void;
}

/** Checks `sha` out in a temporary detached worktree and links `nodeModulesFrom` into its project directory. */
export function addWorktree(repo: GitRepo, sha: string, nodeModulesFrom: string): Worktree {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-rollback-"));
  const root = path.join(parent, "program");
  git(repo.top, ["worktree", "add", "--detach", "--quiet", root, sha]);
  const remove = () => {
    try {
      git(repo.top, ["worktree", "remove", "--force", root]);
    } catch {
      fs.rmSync(root, { recursive: true, force: true });
      try {
        git(repo.top, ["worktree", "prune"]);
      } catch {
        /* best effort */
      }
    }
    fs.rmSync(parent, { recursive: true, force: true });
  };
  try {
    const projectDir = path.join(root, repo.prefix);
    if (!fs.existsSync(path.join(projectDir, "Pulumi.yaml"))) {
      throw new Error(`commit ${sha.slice(0, 10)} has no Pulumi.yaml in ${repo.prefix || "the repository root"}`);
    }
    const link = path.join(projectDir, "node_modules");
    if (!fs.existsSync(link) && fs.existsSync(nodeModulesFrom)) fs.symlinkSync(nodeModulesFrom, link);
    return { projectDir, root, remove };
  } catch (e) {
    remove();
    throw e;
  }
}
