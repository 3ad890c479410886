/**
 * The Pulumi CLI as a child process, for tests that must do what an operator's shell (or a CI runner) does to it:
 * start `pulumi up`, kill it with SIGKILL at a chosen moment, then run `pulumi cancel`, `pulumi up` again, ...
 *
 * Why not Automation API here: a crash test needs the CLI's pid to kill it, and the recovery commands must be the
 * documented shell commands of docs/recovery.md.
 *
 * Killing "everything": the CLI starts each plugin (the Node language host, the dynamic-provider host) in a process
 * group of its own, so `kill -9 -<pgid of pulumi>` leaves them running as orphans, and the provider goes on with the
 * step it was executing (a backfill runs to its end with nobody to record it). A real crash (OOM killer on the
 * runner, a lost machine) kills them too. `killSession` therefore kills every process of the CLI's session: the CLI
 * is spawned detached (setsid, so session id = its pid) and the plugins keep that session id.
 */
import { type ChildProcess, execFile, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { promisify } from "util";
import type { TestStack } from "../../harness/stack";

export interface CliRun {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** The engine event log (`--event-log`), when requested. */
  eventLog?: string;
}

/** The environment of the test stack plus PULUMI_DEBUG_COMMANDS, without which the CLI refuses `--event-log`. */
export function cliEnv(t: TestStack): NodeJS.ProcessEnv {
  return { ...process.env, ...t.env, PULUMI_DEBUG_COMMANDS: "true" };
}

/** Starts `pulumi <args>` in the stack's project directory, detached (its own session and process group). */
export function startPulumi(t: TestStack, args: string[], opts: { eventLog?: string } = {}): CliRun {
  const full = [...args, "--stack", "test", "--non-interactive", "--color", "never"];
  if (opts.eventLog) full.push("--event-log", opts.eventLog);
  const child = spawn("pulumi", full, { cwd: t.dir, env: cliEnv(t), detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, output: () => out, exited, eventLog: opts.eventLog };
}

/** Runs `pulumi <args>` to its end; never throws, returns the exit code and the output. */
export async function pulumi(t: TestStack, args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)("pulumi", [...args, "--stack", "test", "--non-interactive", "--color", "never"], {
      cwd: t.dir,
      env: cliEnv(t),
      maxBuffer: 256 * 1024 * 1024,
    });
    return { code: 0, output: stdout + stderr };
  } catch (e: any) {
    return { code: typeof e.code === "number" ? e.code : 1, output: String(e.stdout ?? "") + String(e.stderr ?? "") };
  }
}

/** Pids of every live process whose session id is `sid` (the CLI and the plugins it started). */
export function sessionPids(sid: number): number[] {
  const pids: number[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      // /proc/<pid>/stat: pid (comm) state ppid pgrp session ...; comm may contain spaces and parentheses.
      const stat = fs.readFileSync(path.join("/proc", d, "stat"), "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[3]) === sid && fields[0] !== "Z") pids.push(Number(d));
    } catch {
      // the process ended meanwhile
    }
  }
  return pids;
}

/**
 * SIGKILL for the CLI and every plugin it started (its session), as a crash of the machine running `pulumi up`
 * would. Returns the pids killed. Waits until none of them is left.
 */
export async function killSession(run: CliRun): Promise<number[]> {
  const sid = run.child.pid!;
  const pids = sessionPids(sid);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  for (let i = 0; i < 200 && sessionPids(sid).length > 0; i++) await new Promise((r) => setTimeout(r, 25));
  await run.exited;
  return pids;
}

/** Reads an event log as it grows: each call returns the events written since the last one. */
export function eventTail(file: string): () => any[] {
  let offset = 0;
  let rest = "";
  return () => {
    if (!fs.existsSync(file)) return [];
    const fd = fs.openSync(file, "r");
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= offset) return [];
      const buf = Buffer.alloc(size - offset);
      fs.readSync(fd, buf, 0, buf.length, offset);
      offset = size;
      const lines = (rest + buf.toString("utf8")).split("\n");
      rest = lines.pop() ?? "";
      const out: any[] = [];
      for (const l of lines) if (l.trim()) out.push(JSON.parse(l));
      return out;
    } finally {
      fs.closeSync(fd);
    }
  };
}

/**
 * The file backend after a SIGKILL. The CLI writes `<stack>.json` through a temporary file and a rename, but its
 * metadata sidecar `<stack>.json.attrs` in place: a kill in that instant leaves an empty sidecar, and every command
 * then fails with "failed to load checkpoint: EOF". The repair (docs/recovery.md): remove the empty sidecar (it only
 * holds a content type and a checksum) and the temporary files; should `<stack>.json` itself not parse, put back
 * `<stack>.json.bak` (the checkpoint before the last write). Returns what it did (empty: nothing needed).
 */
export function repairFileBackend(stateDir: string): string[] {
  const done: string[] = [];
  const root = path.join(stateDir, ".pulumi", "stacks");
  if (!fs.existsSync(root)) return done;
  for (const project of fs.readdirSync(root)) {
    const dir = path.join(root, project);
    for (const f of fs.readdirSync(dir)) {
      const file = path.join(dir, f);
      if (f.endsWith(".attrs") && fs.statSync(file).size === 0) {
        fs.rmSync(file);
        done.push(`removed empty ${path.relative(stateDir, file)}`);
      } else if (/\.json\.[0-9a-f]+\.tmp$/.test(f)) {
        fs.rmSync(file);
        done.push(`removed ${path.relative(stateDir, file)}`);
      }
    }
    for (const f of fs.readdirSync(dir).filter((x) => x.endsWith(".json"))) {
      const file = path.join(dir, f);
      try {
        JSON.parse(fs.readFileSync(file, "utf8"));
      } catch {
        fs.copyFileSync(`${file}.bak`, file);
        fs.rmSync(`${file}.attrs`, { force: true });
        done.push(`restored ${path.relative(stateDir, file)} from its .bak`);
      }
    }
  }
  return done;
}

/** Engine events written so far to the run's event log (one JSON object per line; a partial last line is skipped). */
export function readEvents(file: string): any[] {
  if (!fs.existsSync(file)) return [];
  const out: any[] = [];
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // the line being written
    }
  }
  return out;
}

/** The `pending_operations` of the stack's checkpoint (what a killed update left behind). */
export async function pendingOperations(t: TestStack): Promise<{ urn: string; type: string }[]> {
  const r = await pulumi(t, ["stack", "export"]);
  if (r.code !== 0) throw new Error(`pulumi stack export failed:\n${r.output}`);
  const d = JSON.parse(r.output).deployment;
  return (d.pending_operations ?? []).map((p: any) => ({ urn: p.resource.urn, type: p.type }));
}

/** URNs of the resources in the stack's checkpoint. */
export async function stateUrns(t: TestStack): Promise<string[]> {
  const r = await pulumi(t, ["stack", "export"]);
  if (r.code !== 0) throw new Error(`pulumi stack export failed:\n${r.output}`);
  return (JSON.parse(r.output).deployment.resources ?? []).map((x: any) => x.urn).sort();
}
