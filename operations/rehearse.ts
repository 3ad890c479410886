/**
 * Rehearsal: the whole migration on a scratch copy of the latest backup export before it runs on the real database.
 * The operation (scripts/rehearse.ts is its command line): rehearseCommand runs the steps below in order on one context.
 *
 *   1. export    chooseExport: opts.export, else the newest guardian_backup_* with a manifest.json under opts.exportRoot
 *   2. database  scratchDatabase: opts.targetUrl (an empty database), else a new database opts.database on the server
 *                operations/shared/pgserver.ts finds (GUARDIAN_TEST_DATABASE_URL, else 127.0.0.1:5432, else an embedded Postgres;
 *                never DATABASE_URL)
 *   3. restore   restore: operations/shared/restoreExport.ts, its signature (the passphrase's key) and rows checked against the
 *                manifest before anything is committed; a difference stops the rehearsal here
 *                (RestoreError, exit 2); opts.restoreOnly ends here
 *   4. migrate   migrate: stack opts.stack in a project directory of its own (symlinks to this program) with the
 *                settings of opts.settings (secrets dropped, settingsWithoutSecrets), its guardian:databaseUrl the scratch
 *                database (a secret); pulumi preview then up, with the policy pack unless opts.noPolicyPack
 *   5. report    report: operations/report buildReport, into .guardian/rehearsal/<database>/report.md (+ .svg);
 *                dropScratch then drops a database it created when opts.drop
 *
 * Without a passphrase (PULUMI_CONFIG_PASSPHRASE[_FILE]) the rehearsal is refused before anything is read or written
 * (exit 2; operations/shared/safeDefaults.ts rehearsalPassphrase), unless opts.restoreOnly.
 * Exit codes: 0 rehearsed; 2 refused (no passphrase, export or restore check failed); 1 the migration failed.
 */
import * as fs from "fs";
import * as path from "path";
import type { Stack } from "@pulumi/pulumi/automation";
import { redactUrl } from "../lib/db";
import { createDatabase, dropDatabase, findPgServer, PROJECT_ROOT } from "./shared/pgserver";
import { latestExport, RestoreError, restoreExport } from "./shared/restoreExport";
import { rehearsalPassphrase } from "./shared/safeDefaults";
import { linkedProgramDir, openStack } from "./shared/workspace";
import { buildReport } from "./report";
import { pulumiCli } from "./stack/stackHistory";

export interface RehearseOptions {
  /** The export to restore. */
  export?: string;
  /** Where exports are: the newest guardian_backup_* with a manifest.json (used when export is not given). */
  exportRoot: string;
  /** An empty database to restore into. */
  targetUrl?: string;
  /** A new scratch database on the server operations/shared/pgserver.ts finds (used when targetUrl is not given). */
  database: string;
  /** The rehearsal's stack. */
  stack: string;
  /** The stack settings file to rehearse (secrets dropped; the database URL is the scratch one). */
  settings: string;
  restoreOnly?: boolean;
  /** Restore an export without manifest.sig (lib/manifestSignature.ts); a signature that does not verify is refused even so. */
  allowUnsigned?: boolean;
  previewOnly?: boolean;
  noPolicyPack?: boolean;
  drop?: boolean;
}

/** Where the rehearsal's lines go: log (lines), write (engine output as it comes), error (the refusal or failure). */
export interface RehearseIo {
  log: (line: string) => void;
  write: (chunk: string) => void;
  error: (line: string) => void;
}

const consoleIo: RehearseIo = {
  log: (s) => console.log(s),
  write: (s) => process.stdout.write(s),
  error: (s) => console.error(s),
};

export interface RehearseContext {
  opts: RehearseOptions;
  io: RehearseIo;
  /** The passphrase settings of the rehearsal's stack (PULUMI_CONFIG_PASSPHRASE or _FILE; none for --restore-only). */
  passphraseEnv: Record<string, string>;
}

export interface ScratchContext extends RehearseContext {
  exportDir: string;
  url: string;
  dbName: string;
  /** .guardian/rehearsal/<database>/: everything the rehearsal writes. */
  workDir: string;
}

/** The settings of another stack's file without its secrets (and their salt): the rehearsal sets its own. */
export function settingsWithoutSecrets(text: string): string {
  const out: string[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (/^encryptionsalt:/.test(l)) continue;
    if (/^(\s+)guardian:databaseUrl:/.test(l)) {
      const indent = /^(\s+)/.exec(l)![1].length;
      while (i + 1 < lines.length && lines[i + 1].trim() && /^(\s*)/.exec(lines[i + 1])![1].length > indent) i++;
      continue;
    }
    out.push(l);
  }
  return out.join("\n");
}

/** The heading of step n of 5. */
export function stepHeading(n: number, title: string): string {
  return `\n=== rehearsal ${n}/5 ${title} ${"=".repeat(Math.max(3, 66 - title.length))}`;
}

/** The failure as printed: a RestoreError (a refusal, exit 2) as its message, anything else (exit 1) in at most 40 lines. */
export function failureOf(e: unknown): { message: string; exitCode: 1 | 2 } {
  if (e instanceof RestoreError) return { message: e.message, exitCode: 2 };
  const text = String((e as { message?: unknown } | null | undefined)?.message ?? e);
  return { message: `rehearsal failed: ${text.split("\n").slice(0, 40).join("\n")}`, exitCode: 1 };
}

/** 1. The export to restore. */
export function chooseExport(ctx: RehearseContext): string {
  const { opts, io } = ctx;
  io.log(stepHeading(1, "export"));
  const exportDir = opts.export ? path.resolve(opts.export) : latestExport(path.resolve(opts.exportRoot));
  io.log(`export: ${exportDir}`);
  return exportDir;
}

/** 2. The scratch database (given, or created), and the rehearsal's directory. */
export async function scratchDatabase(ctx: RehearseContext, exportDir: string): Promise<ScratchContext> {
  const { opts, io } = ctx;
  io.log(stepHeading(2, "scratch database"));
  let url: string;
  if (opts.targetUrl) {
    url = opts.targetUrl;
  } else {
    const server = await findPgServer(io.log);
    url = await createDatabase(server, opts.database);
  }
  const dbName = decodeURIComponent(new URL(url).pathname.slice(1)) || opts.database;
  io.log(`scratch database: ${redactUrl(url)}`);
  const workDir = path.join(PROJECT_ROOT, ".guardian", "rehearsal", dbName);
  fs.mkdirSync(workDir, { recursive: true });
  return Object.assign(ctx, { exportDir, url, dbName, workDir });
}

/** 3. The restore, checked against the manifest: a difference is a RestoreError. */
export async function restore(ctx: ScratchContext): Promise<void> {
  const { io } = ctx;
  io.log(stepHeading(3, "restore the export and check it against the manifest"));
  const restored = await restoreExport(ctx.exportDir, ctx.url, { log: io.log, allowUnsigned: ctx.opts.allowUnsigned });
  if (!restored.ok) {
    throw new RestoreError(
      `restore of ${restored.backupId} does not match its manifest; the rehearsal stops here`,
      Object.entries(restored.tables)
        .filter(([, t]) => !t.ok)
        .map(([k, t]) => `${k}: ${t.rows} rows / checksum ${t.checksum}, manifest ${t.expectedRows} / ${t.expectedChecksum}`),
    );
  }
  io.log(`restored ${restored.backupId} into ${restored.database} in ${(restored.durationMs / 1000).toFixed(1)} s; every table equals the manifest`);
}

/** 4. pulumi preview and up (no up with previewOnly) on the rehearsal's stack, in a project directory of its own. */
export async function migrate(ctx: ScratchContext): Promise<Stack> {
  const { opts, io, workDir, dbName, url } = ctx;
  io.log(stepHeading(4, `pulumi preview and up on stack ${opts.stack}`));
  const env: Record<string, string> = {
    PULUMI_BACKEND_URL: process.env.PULUMI_BACKEND_URL ?? `file://${path.join(PROJECT_ROOT, ".guardian", "state")}`,
    ...ctx.passphraseEnv,
    // The rehearsal's own backup of the scratch database goes beside it, not among the real exports.
    GUARDIAN_EXPORT_ROOT: path.join(workDir, "exports"),
  };
  if (env.PULUMI_BACKEND_URL.startsWith("file://")) fs.mkdirSync(env.PULUMI_BACKEND_URL.slice("file://".length), { recursive: true });
  // The rehearsal stack gets a project directory of its own (symlinks to this program), so its settings file
  // Pulumi.<stack>.yaml, with its encryption salt and the scratch database's URL (encrypted), never lands in the checkout.
  const programDir = linkedProgramDir(path.join(workDir, "program"));
  const settingsFile = path.join(programDir, `Pulumi.${opts.stack}.yaml`);
  if (!fs.existsSync(settingsFile)) {
    fs.writeFileSync(
      settingsFile,
      `# Rehearsal settings, from ${path.relative(PROJECT_ROOT, opts.settings)} (secrets dropped)\n${settingsWithoutSecrets(fs.readFileSync(opts.settings, "utf8"))}`,
    );
  } else {
    // A rehearsal of this database ran before: its settings (salt, encrypted URL) are kept, not replaced by --settings.
    io.log(
      `settings: ${path.relative(process.cwd(), settingsFile)} from the earlier rehearsal of ${dbName} is kept (${path.relative(PROJECT_ROOT, opts.settings)} is not read)`,
    );
  }
  const stack = await openStack({ stackName: opts.stack, workDir: programDir, envVars: env, create: true });
  // The scratch URL (with its password) goes on the CLI's standard input, never into its arguments.
  await pulumiCli(stack, ["config", "set", "guardian:databaseUrl", "--secret", "--stack", stack.name, "--config-file", settingsFile], url);
  const policyPacks = !opts.noPolicyPack ? [path.join(PROJECT_ROOT, "policies", "run-policy-pack")] : [];
  const where = `(in ${path.relative(process.cwd(), programDir)})`;
  io.log(`$ pulumi preview --stack ${opts.stack} --diff${!opts.noPolicyPack ? " --policy-pack policies/run-policy-pack" : ""}   ${where}`);
  await stack.preview({ policyPacks, diff: true, onOutput: io.write });
  if (!opts.previewOnly) {
    io.log(`$ pulumi up --stack ${opts.stack} --yes${!opts.noPolicyPack ? " --policy-pack policies/run-policy-pack" : ""}   ${where}`);
    await stack.up({ policyPacks, onOutput: io.write });
  }
  return stack;
}

/** 5. The report, beside the rehearsal. */
export async function report(ctx: ScratchContext, stack: Stack): Promise<void> {
  const { io, workDir } = ctx;
  io.log(stepHeading(5, "report"));
  const out = path.join(workDir, "report.md");
  const r = await buildReport({ stack, svgFileName: "report.svg" });
  fs.writeFileSync(out, r.markdown);
  fs.writeFileSync(path.join(workDir, "report.svg"), r.svg);
  io.log(`report: ${path.relative(process.cwd(), out)} (${r.figures.orgsByModel.multi ?? 0}/${r.figures.orgsTotal} orgs multi)`);
}

/** With opts.drop, the scratch database is dropped (only one the rehearsal created, never opts.targetUrl). */
export async function dropScratch(ctx: ScratchContext): Promise<void> {
  const { opts, io, dbName } = ctx;
  if (!opts.drop || opts.targetUrl) return;
  const server = await findPgServer();
  await dropDatabase(server, dbName);
  io.log(`dropped the scratch database ${dbName} (the stack ${opts.stack} still records it: \`pulumi stack rm ${opts.stack} --force\` to forget it)`);
}

/** The steps in order. Throws a RestoreError (refusal) or the migration's error. */
export async function rehearse(ctx: RehearseContext): Promise<void> {
  const exportDir = chooseExport(ctx);
  const scratch = await scratchDatabase(ctx, exportDir);
  await restore(scratch);
  if (ctx.opts.restoreOnly) return;
  const stack = await migrate(scratch);
  await report(scratch, stack);
  await dropScratch(scratch);
}

/** The command as an API: the passphrase check, then the steps; never throws, returns the exit code. */
export async function rehearseCommand(opts: RehearseOptions, io: RehearseIo = consoleIo, env: NodeJS.ProcessEnv = process.env): Promise<0 | 1 | 2> {
  // A real customer export is restored and its scratch URL kept encrypted: no default passphrase, refused up front.
  const passphrase = rehearsalPassphrase(env, !opts.restoreOnly);
  if ("refused" in passphrase) {
    io.error(passphrase.refused);
    return 2;
  }
  try {
    await rehearse({ opts, io, passphraseEnv: passphrase.env });
    return 0;
  } catch (e) {
    const f = failureOf(e);
    io.error(f.message);
    return f.exitCode;
  }
}
