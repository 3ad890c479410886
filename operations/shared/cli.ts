/**
 * One command-line style for every script (scripts/seed.ts, rollback.ts, report.ts, rehearse.ts, demo.ts,
 * bench/run.ts), on node:util parseArgs.
 *
 * A command declares its options once: type (a flag, or a value with a validator), description, default, whether it
 * is required, and which options cannot go together (an option the run would ignore is refused, never accepted and
 * dropped). From that declaration come the parser, `--help` and the usage line.
 *
 *   - `--help` / `-h` anywhere prints the help on stdout, exit 0, whatever else is on the line.
 *   - Any refusal is ONE line on stderr naming the flag, then the usage line, exit 2:
 *       bench: --consumers: expected a positive integer, got "abc" (usage: npm run bench -- ...)
 *     unknown flags, a value missing (`--stack --yes`), a value given to a flag (`--yes=no`), an option given twice,
 *     a stray argument, a bad value, a required option missing, two options that conflict.
 *   - Values: `--orgs 5` or `--orgs=5`; a value may start with a single dash (`--seed -1` is refused by its validator,
 *     not taken for a flag); a value starting with `--` is taken as a missing value.
 *   - Option names are the declaration's camelCase keys in kebab case: `databaseUrl` is `--database-url`.
 *   - `--json` (where a command has it) prints one JSON document on stdout; human progress then goes to stderr.
 *
 * Layers: parseCommand() is pure (throws UsageError, returns the values or "help"); runCommandLine() prints the help or
 * the error and gives the exit code; the validators below are small functions `raw string -> value`, throwing a
 * ValueError whose message says what was expected.
 */
import * as fs from "fs";
import * as path from "path";
import { parseArgs as nodeParseArgs } from "node:util";
import { isPostgresUrl } from "../../lib/config";
import { GuardianRefusal } from "../../lib/errors";

/** A usage error: the message names the flag. The CLI prints `<command>: <message> (usage: ...)` and exits 2. */
export class UsageError extends GuardianRefusal {
  constructor(message: string) {
    super(message, "UsageError");
  }
}

/** Thrown by a validator: what was expected ("expected a positive integer"); the parser adds the flag and the value. */
export class ValueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ValueError";
  }
}

export type Validator<T> = (raw: string) => T;

export interface FlagSpec {
  type: "boolean";
  description: string;
  short?: string;
}

export interface ValueSpec<T = unknown, Always extends boolean = boolean> {
  type: "string";
  description: string;
  /** The placeholder in the usage line and the help: `--orgs N`. */
  valueName: string;
  parse: Validator<T>;
  required?: boolean;
  /** Applied when the option is not given (a function: computed at parse time). */
  default?: T | (() => T);
  /** How the help shows the default (default: String(default) when it is not a function). */
  defaultText?: string;
  /** Never echo the value in an error (a connection string may hold a password). */
  secret?: boolean;
  short?: string;
  /** Phantom: whether the parsed value is always present (required or defaulted). */
  readonly __always?: Always;
}

export type OptionSpec = FlagSpec | ValueSpec<any, boolean>;
export type Options = Record<string, OptionSpec>;

export type Values<O extends Options> = {
  [K in keyof O]: O[K] extends ValueSpec<infer T, infer A> ? (A extends true ? T : T | undefined) : boolean;
};

export interface Conflict<O extends Options> {
  /** Both given: refused with `--a and --b conflict: <reason>`. */
  options: [keyof O & string, keyof O & string];
  reason: string;
}

export interface Command<O extends Options> {
  /** The npm script name: `seed` runs as `npm run seed -- ...`. */
  name: string;
  /** What the command does, for the help (one paragraph a line). */
  summary: string[];
  options: O;
  conflicts?: Conflict<O>[];
  /** Options shown as one alternative in the usage line: `[--export DIR | --export-root DIR]`. */
  alternatives?: (keyof O & string)[][];
  /** Further checks across options; return a message to refuse (it should name the flags). */
  check?: (values: Values<O>, given: ReadonlySet<keyof O & string>) => string | undefined;
  /** Exit codes, one line each, for the help. */
  exitCodes?: string[];
  /** Examples or notes, for the help. */
  notes?: string[];
}

/** Declares a command: the option keys are checked in conflicts, alternatives and check(). */
export function command<O extends Options>(c: Command<O>): Command<O> {
  return c;
}

export type Parsed<O extends Options> = { help: true } | { help: false; values: Values<O>; given: ReadonlySet<keyof O & string> };

// ---------------------------------------------------------------------------------------------------------------
// Declaring options

export function flag(description: string, o: { short?: string } = {}): FlagSpec {
  return { type: "boolean", description, ...o };
}

interface ValueOpts {
  description: string;
  valueName: string;
  /** How the help shows the default, also when the command computes it itself (the option is then optional). */
  defaultText?: string;
  secret?: boolean;
  short?: string;
}
export function option<T>(parse: Validator<T>, o: ValueOpts & { required: true }): ValueSpec<T, true>;
export function option<T>(parse: Validator<T>, o: ValueOpts & { default: T | (() => T) }): ValueSpec<T, true>;
export function option<T>(parse: Validator<T>, o: ValueOpts): ValueSpec<T, false>;
export function option<T>(parse: Validator<T>, o: ValueOpts & { required?: boolean; default?: T | (() => T) }): ValueSpec<T, boolean> {
  return { type: "string", parse, ...o };
}

/** The `--json` flag, the same words everywhere. */
export function jsonFlag(what: string): FlagSpec {
  return flag(`print ${what} as one JSON document on stdout; progress and messages go to stderr`);
}

// ---------------------------------------------------------------------------------------------------------------
// Validators

const fmtInt = (n: number) => n.toLocaleString("en-US");

function integerExpectation(min?: number, max?: number): string {
  if (min !== undefined && max !== undefined) return `an integer from ${fmtInt(min)} to ${fmtInt(max)}`;
  if (min === 1) return "a positive integer";
  if (min === 0) return "a non-negative integer";
  if (min !== undefined) return `an integer of at least ${fmtInt(min)}`;
  if (max !== undefined) return `an integer of at most ${fmtInt(max)}`;
  return "an integer";
}

/** Decimal digits (underscores allowed as separators: 1_000_000), within [min, max]. */
export function integer(o: { min?: number; max?: number; what?: string } = {}): Validator<number> {
  const expected = o.what ?? integerExpectation(o.min, o.max);
  return (raw) => {
    const s = raw.trim().replace(/(\d)_(?=\d)/g, "$1");
    const n = Number(s);
    if (!/^-?\d+$/.test(s) || !Number.isSafeInteger(n) || (o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) {
      throw new ValueError(`expected ${expected}`);
    }
    return n;
  };
}

export const positiveInteger = (what?: string) => integer({ min: 1, what });

/** A finite number > 0 (decimals allowed). */
export function positiveNumber(what = "a positive number"): Validator<number> {
  return (raw) => {
    const n = Number(raw.trim());
    if (!/^\+?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(raw.trim()) || !Number.isFinite(n) || n <= 0) throw new ValueError(`expected ${what}`);
    return n;
  };
}

export function oneOf<T extends string>(...choices: T[]): Validator<T> {
  return (raw) => {
    if (!(choices as string[]).includes(raw)) throw new ValueError(`expected one of ${choices.join(", ")}`);
    return raw as T;
  };
}

/** Any non-empty text (a stack name, a file name). */
export function text(what = "a non-empty value"): Validator<string> {
  return (raw) => {
    if (!raw.trim()) throw new ValueError(`expected ${what}`);
    return raw;
  };
}

export function matching(re: RegExp, what: string): Validator<string> {
  return (raw) => {
    if (!re.test(raw)) throw new ValueError(`expected ${what}`);
    return raw;
  };
}

/** Comma-separated values, each through `item`: `--sizes 10000,100000`. */
export function list<T>(item: Validator<T>, what: string): Validator<T[]> {
  return (raw) => {
    const parts = raw.split(",").map((p) => p.trim());
    if (!parts.length || parts.some((p) => !p)) throw new ValueError(`expected ${what}`);
    try {
      return parts.map(item);
    } catch (e) {
      if (e instanceof ValueError) throw new ValueError(`expected ${what}`);
      throw e;
    }
  };
}

/** A postgres:// or postgresql:// URL with a host, as the config accepts it (lib/config.ts isPostgresUrl). Declare the
 *  option `secret`: the value is never echoed. */
export function postgresUrl(): Validator<string> {
  return (raw) => {
    if (!isPostgresUrl(raw)) throw new ValueError("expected a postgres:// or postgresql:// connection string");
    return raw;
  };
}

/** An existing directory; returns the path as given (relative paths stay relative to the current directory). */
export function existingDir(what = "an existing directory"): Validator<string> {
  return (raw) => {
    if (!raw || !isDir(raw)) throw new ValueError(`expected ${what}`);
    return raw;
  };
}

/** An existing regular file. */
export function existingFile(what = "an existing file"): Validator<string> {
  return (raw) => {
    let ok = false;
    try {
      ok = fs.statSync(raw).isFile();
    } catch {
      /* missing */
    }
    if (!raw || !ok) throw new ValueError(`expected ${what}`);
    return raw;
  };
}

/**
 * A path to write to: a file (missing folders are created), or an existing directory when `directoryOk` (the command
 * then writes into it). Refused when something on the way is a file (`--out README.md/x.md`), or when it is a directory
 * and directories are not allowed.
 */
export function outputPath(o: { directoryOk?: boolean; what?: string } = {}): Validator<string> {
  const what = o.what ?? (o.directoryOk ? "a file or directory path" : "a file path");
  return (raw) => {
    if (!raw.trim()) throw new ValueError(`expected ${what}`);
    const abs = path.resolve(raw);
    if (isDir(abs) && !o.directoryOk) throw new ValueError(`expected ${what}; this is a directory`);
    if (fs.existsSync(abs) && !isDir(abs) && !fs.statSync(abs).isFile()) throw new ValueError(`expected ${what}; this is not a regular file`);
    for (let up = path.dirname(abs); ; up = path.dirname(up)) {
      if (fs.existsSync(up)) {
        if (!isDir(up)) throw new ValueError(`expected ${what}; ${up} is not a directory`);
        break;
      }
      if (path.dirname(up) === up) break;
    }
    return raw;
  };
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing

export const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function quote(raw: string): string {
  return JSON.stringify(raw.length > 40 ? `${raw.slice(0, 37)}...` : raw);
}

/** Parses argv against the command's declaration. Pure: throws UsageError, never prints or exits. */
export function parseCommand<O extends Options>(cmd: Command<O>, argv: readonly string[]): Parsed<O> {
  const keys = Object.keys(cmd.options) as (keyof O & string)[];
  const byName = new Map<string, keyof O & string>(keys.map((k) => [kebab(k), k]));
  const byShort = new Map<string, keyof O & string>();
  for (const k of keys) {
    if (k === "help" || kebab(k) === "help") throw new Error(`${cmd.name}: --help is built in, do not declare it`);
    const s = cmd.options[k].short;
    if (s) byShort.set(s, k);
  }
  const nodeOptions: Record<string, { type: "string" | "boolean"; short?: string }> = { help: { type: "boolean", short: "h" } };
  for (const k of keys) nodeOptions[kebab(k)] = { type: cmd.options[k].type, ...(cmd.options[k].short ? { short: cmd.options[k].short } : {}) };
  // strict: false, so that every refusal is this module's own message (the flag named, one line); tokens say what was where.
  const { tokens = [] } = nodeParseArgs({ args: [...argv], options: nodeOptions, strict: false, allowPositionals: true, tokens: true });

  // `--stack --help` asks for help too (the parser took --help as the value of --stack).
  if (tokens.some((t) => t.kind === "option" && (t.name === "help" || (!t.inlineValue && t.value === "--help")))) return { help: true };

  const raw = new Map<keyof O & string, string | true>();
  for (const t of tokens) {
    if (t.kind === "option-terminator") continue;
    if (t.kind === "positional") throw new UsageError(`unexpected argument ${quote(t.value)}`);
    // A known short option comes back under its long name; an unknown one under its letter.
    const key = t.rawName.startsWith("--") ? byName.get(t.name) : byShort.get(t.rawName.slice(1));
    if (!key) throw new UsageError(`unknown flag ${t.rawName}`);
    const flagName = `--${kebab(key)}`;
    const spec = cmd.options[key];
    if (raw.has(key)) throw new UsageError(`${flagName} given twice`);
    if (spec.type === "boolean") {
      if (t.value !== undefined) throw new UsageError(`${flagName} takes no value (got ${quote(t.value)})`);
      raw.set(key, true);
    } else {
      const v = t.value;
      if (v === undefined || v === "" || (!t.inlineValue && v.startsWith("--"))) throw new UsageError(`${flagName} needs a value`);
      raw.set(key, v);
    }
  }

  const values: Record<string, unknown> = {};
  for (const key of keys) {
    const spec = cmd.options[key];
    const flagName = `--${kebab(key)}`;
    const given = raw.get(key);
    if (spec.type === "boolean") {
      values[key] = given === true;
      continue;
    }
    if (given === undefined) {
      if (spec.required) throw new UsageError(`${flagName} is required`);
      values[key] = typeof spec.default === "function" ? (spec.default as () => unknown)() : spec.default;
      continue;
    }
    try {
      values[key] = spec.parse(given as string);
    } catch (e) {
      if (!(e instanceof ValueError)) throw e;
      throw new UsageError(`${flagName}: ${e.message}${spec.secret ? "" : `, got ${quote(given as string)}`}`);
    }
  }
  const givenKeys = new Set(raw.keys());
  for (const c of cmd.conflicts ?? []) {
    if (givenKeys.has(c.options[0]) && givenKeys.has(c.options[1])) {
      throw new UsageError(`--${kebab(c.options[0])} and --${kebab(c.options[1])} conflict: ${c.reason}`);
    }
  }
  const problem = cmd.check?.(values as Values<O>, givenKeys);
  if (problem) throw new UsageError(problem);
  return { help: false, values: values as Values<O>, given: givenKeys };
}

// ---------------------------------------------------------------------------------------------------------------
// Help

function optionSyntax(key: string, spec: OptionSpec): string {
  return `--${kebab(key)}${spec.type === "string" ? ` ${spec.valueName}` : ""}`;
}

/** `npm run seed -- --database-url URL --orgs N [--seed S] [--json]` */
export function usageLine<O extends Options>(cmd: Command<O>): string {
  const parts: string[] = [];
  const done = new Set<string>();
  for (const key of Object.keys(cmd.options)) {
    if (done.has(key)) continue;
    const group = cmd.alternatives?.find((g) => g.includes(key as keyof O & string));
    if (group) {
      for (const k of group) done.add(k);
      parts.push(`[${group.map((k) => optionSyntax(k, cmd.options[k])).join(" | ")}]`);
      continue;
    }
    done.add(key);
    const spec = cmd.options[key];
    const s = optionSyntax(key, spec);
    parts.push(spec.type === "string" && spec.required ? s : `[${s}]`);
  }
  return `npm run ${cmd.name} --${parts.length ? ` ${parts.join(" ")}` : ""}`;
}

export function helpText<O extends Options>(cmd: Command<O>): string {
  const L: string[] = [`usage: ${usageLine(cmd)}`, ""];
  L.push(...cmd.summary, "", "options:");
  const rows: [string, string][] = Object.entries(cmd.options).map(([key, spec]) => {
    const left = `${spec.short ? `-${spec.short}, ` : ""}${optionSyntax(key, spec)}`;
    let right = spec.description;
    if (spec.type === "string") {
      if (spec.required) right += " (required)";
      else if (spec.defaultText !== undefined) right += ` (default: ${spec.defaultText})`;
      else if (spec.default !== undefined && typeof spec.default !== "function")
        right += ` (default: ${Array.isArray(spec.default) ? spec.default.join(",") : String(spec.default)})`;
    }
    return [left, right];
  });
  rows.push(["-h, --help", "print this help and exit"]);
  const w = Math.min(30, Math.max(...rows.map(([l]) => l.length)));
  const indent = " ".repeat(w + 4);
  for (const [l, r] of rows) {
    const lines = wrap(r, Math.max(40, 116 - indent.length));
    if (l.length > w) L.push(`  ${l}`);
    else L.push(`  ${l.padEnd(w)}  ${lines.shift()}`);
    L.push(...lines.map((x) => indent + x));
  }
  const conflicts = cmd.conflicts ?? [];
  if (conflicts.length) {
    L.push("", "not together:");
    for (const c of conflicts) L.push(`  --${kebab(c.options[0])} and --${kebab(c.options[1])}: ${c.reason}`);
  }
  if (cmd.exitCodes?.length) L.push("", "exit codes:", ...cmd.exitCodes.map((e) => `  ${e}`));
  if (cmd.notes?.length) L.push("", ...cmd.notes);
  return `${L.join("\n")}\n`;
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The CLI entry

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

const processIo: CliIo = { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) };

/**
 * Parses the command line. On --help prints the help on stdout and returns { exitCode: 0 }; on a usage error prints
 * `<name>: <message> (usage: <usage line>)` on stderr and returns { exitCode: 2 }; else the values.
 */
export function runCommandLine<O extends Options>(
  cmd: Command<O>,
  argv: readonly string[],
  io: CliIo = processIo,
): { values: Values<O>; given: ReadonlySet<keyof O & string> } | { exitCode: 0 | 2 } {
  let parsed: Parsed<O>;
  try {
    parsed = parseCommand(cmd, argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.stderr(`${cmd.name}: ${e.message} (usage: ${usageLine(cmd)})\n`);
    return { exitCode: 2 };
  }
  if (parsed.help) {
    io.stdout(helpText(cmd));
    return { exitCode: 0 };
  }
  return { values: parsed.values, given: parsed.given };
}

/** One JSON document on stdout. */
export function printJson(doc: unknown): void {
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
}
