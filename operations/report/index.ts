/**
 * The migration report: Markdown plus an SVG chart, every figure read from the stack or queried from the database at
 * report time (nothing is copied from a template). The operation; scripts/report.ts is its command line.
 *
 * buildReport() reads the stack through Automation API (outputs, `pulumi stack history` for the update version, the
 * decrypted config for the database URL, which is only ever shown redacted), then queries the database (./figures.ts)
 * and cross-checks the stack's outputs against it (crossCheck). renderMarkdown() (./markdown.ts) and ./svg.ts render;
 * reportPaths() says where the command line writes them.
 *
 * A Pulumi program cannot run code after its own update has completed (the stack version and the final outputs only
 * exist then), so the report is the next command: the demo, rehearse, rollback and the CI workflow run it after `up`.
 */
import * as fs from "fs";
import * as path from "path";
import type { ConfigMap, OutputMap, Stack, UpdateSummary } from "@pulumi/pulumi/automation";
import { GuardianConfigError, parseConfig, tlsSettings } from "../../lib/config";
import type { CreditModel, GuardianConfig } from "../../lib/config";
import { connectionSecrets, redactSecrets, redactUrl, withClient } from "../../lib/db";
import { GuardianRefusal } from "../../lib/errors";
import { guardianKeys, openStack, readStackConfig } from "../shared/workspace";
import { databaseFigures, type DatabaseFigures } from "./figures";
import { renderMarkdown } from "./markdown";
import { renderSvg } from "./svg";

export { renderMarkdown } from "./markdown";

export interface ReportOptions {
  /** A stack name (opened on workDir with the CLI of scripts/setup-pulumi.sh) or an open Automation API stack. */
  stack: string | Stack;
  /** Stack settings file, as `pulumi --config-file` (the demo keeps its copy under .guardian/demo). */
  configFile?: string;
  /** Project directory when `stack` is a name (default: the current directory when it holds a Pulumi.yaml, as for
   *  `pulumi` itself, else this project). */
  workDir?: string;
  /** Extra CLI environment when `stack` is a name. */
  envVars?: Record<string, string>;
  /** File name the Markdown uses to show the chart (default: report.svg). */
  svgFileName?: string;
  now?: Date;
}

export interface OutputCheck {
  output: string;
  stack: unknown;
  database: unknown;
  agrees: boolean;
}

export interface ReportFigures extends DatabaseFigures {
  generatedAt: string;
  stack: string;
  /** Version of the stack's latest update (`pulumi stack history`), null when it was never updated. */
  updateVersion: number | null;
  /** Where updateVersion comes from: the backend's number, or (DIY backends, which record 0) the position in the history. */
  versionSource: "backend" | "position in pulumi stack history";
  lastUpdate: { version: number; kind: string; result: string; startTime: string; endTime: string; resourceChanges: Record<string, number> } | null;
  /** The last successful update before the latest one: the default rollback target. */
  previousSuccessfulVersion: number | null;
  creditModel: string;
  marginGate: string;
  /** The connection string with its password replaced by ***. */
  database: string;
  outputsCheck: OutputCheck[];
  rollbackCommands: string[];
}

export interface Report {
  markdown: string;
  svg: string;
  figures: ReportFigures;
}

export class ReportError extends GuardianRefusal {
  constructor(message: string) {
    super(message, "ReportError");
  }
}

function summarise(u: UpdateSummary & { version: number }): NonNullable<ReportFigures["lastUpdate"]> {
  return {
    version: u.version,
    kind: String(u.kind),
    result: String(u.result),
    startTime: new Date(u.startTime).toISOString(),
    endTime: u.endTime ? new Date(u.endTime).toISOString() : "",
    resourceChanges: { ...(u.resourceChanges ?? {}) },
  };
}

function plainOutput(outputs: OutputMap, key: string): unknown {
  const o = outputs[key];
  return o && !o.secret ? o.value : undefined;
}

/** Each plain stack output the database can confirm, with both values and whether they agree. */
export function crossCheck(outputs: OutputMap, db: DatabaseFigures): OutputCheck[] {
  const checks: OutputCheck[] = [];
  const add = (output: string, database: unknown, normalise: (v: any) => unknown = (v) => v) => {
    const raw = plainOutput(outputs, output);
    if (raw === undefined) return;
    const stack = normalise(raw);
    checks.push({ output, stack, database, agrees: JSON.stringify(stack) === JSON.stringify(database) });
  };
  const sorted = (v: any) => (Array.isArray(v) ? [...v].sort() : v);
  add("orgsTotal", db.orgsTotal);
  add("orgsMigrated", db.orgsByModel.multi ?? 0);
  add("backupId", db.backup?.backupId ?? null);
  add("rollbackBackupId", db.backup?.backupId ?? null);
  add("restoreVerified", db.backup?.restoreVerified ?? null);
  add(
    "negativeBalanceOrgs",
    db.anomalies
      .filter((a) => a.kind === "negative_balance")
      .map((a) => a.organizationId)
      .sort(),
    sorted,
  );
  return checks;
}

/** The commands the report's Rollback section suggests. `npm run rollback` needs an earlier successful update to go
 *  back to: after a stack's first update it would only refuse ("no successful update before its current version"),
 *  so it is suggested only when there is one; the config switch always is. */
export function suggestedRollback(stack: string, model: CreditModel, previousVersion: number | null, cfgFlag = ""): string[] {
  const other = model === "multi" ? "unified" : "multi";
  return [
    ...(previousVersion !== null ? [`npm run rollback -- --stack ${stack} --to ${previousVersion}`] : []),
    `pulumi config set guardian:creditModel ${other} --stack ${stack}${cfgFlag} && pulumi up --stack ${stack}${cfgFlag}`,
  ];
}

export async function buildReport(opts: ReportOptions): Promise<Report> {
  const stack =
    typeof opts.stack === "string"
      ? await openStack({ stackName: opts.stack, workDir: opts.workDir ?? projectDir(), envVars: opts.envVars }).catch((e: Error) => {
          throw new ReportError(`report: cannot open stack "${opts.stack}": ${firstLine(e.message)}`);
        })
      : opts.stack;
  const configMap: ConfigMap = await readStackConfig(stack, opts.configFile);
  let config: GuardianConfig;
  try {
    config = parseConfig(guardianKeys(configMap));
  } catch (e) {
    if (e instanceof GuardianConfigError) throw new ReportError(`report: stack ${stack.name}: ${e.message}`);
    throw e;
  }
  // History without --show-secrets: its config values are not needed, and with the passphrase provider showing them
  // would make the CLI write an encryption salt into a Pulumi.<stack>.yaml of the project directory.
  const [outputs, history] = await Promise.all([stack.outputs(), stack.history(undefined, undefined, false)]);
  // `pulumi stack history` lists newest first. Pulumi Cloud numbers updates; a DIY backend (file://, s3://...) reports
  // version 0 for every one of them, so there the version is the update's position in the history (1 = oldest), the
  // same number an operator counts in `pulumi stack history`.
  const numbered = history.map((u, i) => ({ ...u, version: u.version > 0 ? u.version : history.length - i }));
  const versionSource: ReportFigures["versionSource"] = history.some((u) => u.version > 0) ? "backend" : "position in pulumi stack history";
  const latest = numbered[0];
  const previous = numbered.find((u) => latest && u.version < latest.version && String(u.kind) === "update" && String(u.result) === "succeeded");
  const backupId = (plainOutput(outputs, "backupId") ?? plainOutput(outputs, "rollbackBackupId")) as string | undefined;

  const workDir = typeof opts.stack === "string" ? (opts.workDir ?? projectDir() ?? process.cwd()) : opts.stack.workspace.workDir;
  const db = await withClient(config.databaseUrl, (c) => databaseFigures(c, { config, backupId }), tlsSettings(config, workDir)).catch((e: Error) => {
    throw new ReportError(`report: ${redactSecrets(firstLine(e.message), config.databaseUrl)}`);
  });

  const cfgFlag = opts.configFile ? ` --config-file ${path.relative(process.cwd(), path.resolve(opts.configFile)) || opts.configFile}` : "";
  const rollbackCommands = suggestedRollback(stack.name, config.creditModel, previous?.version ?? null, cfgFlag);

  const figures: ReportFigures = {
    generatedAt: (opts.now ?? new Date()).toISOString(),
    stack: stack.name,
    updateVersion: latest ? latest.version : null,
    versionSource,
    lastUpdate: latest ? summarise(latest) : null,
    previousSuccessfulVersion: previous ? previous.version : null,
    creditModel: config.creditModel,
    marginGate: config.marginGate,
    database: redactUrl(config.databaseUrl),
    ...db,
    outputsCheck: crossCheck(outputs, db),
    rollbackCommands,
  };
  const svg = renderSvg({ stack: stack.name, chart: figures.chart, margins: figures.margins.plans, marginTarget: figures.margins.target });
  const markdown = renderMarkdown(figures, opts.svgFileName ?? "report.svg");
  // The last line of defence: whatever went wrong above, no password (userinfo, ?password=, ?sslpassword=...) leaves
  // in the report. Checked as it would appear in a connection string (a short password may well be a word of the
  // report, like "postgres"), and anywhere once it is long enough not to be one.
  const all = markdown + svg + JSON.stringify(figures);
  for (const password of connectionSecrets(config.databaseUrl)) {
    const leaks = [...new Set([password, encodeURIComponent(password)])].flatMap((p) => [`:${p}@`, `=${p}`]);
    if (leaks.some((l) => all.includes(l)) || (password.length >= 8 && all.includes(password))) {
      throw new ReportError("report: refusing to write a report that contains the database password");
    }
  }
  return { markdown, svg, figures };
}

function projectDir(): string | undefined {
  return fs.existsSync(path.join(process.cwd(), "Pulumi.yaml")) ? process.cwd() : undefined;
}

function firstLine(s: string): string {
  return (
    String(s)
      .split("\n")
      .find((l) => l.trim() && !/^\s*(code|stdout|stderr):\s*$/.test(l))
      ?.trim() ?? String(s)
  );
}

/** Where the report goes: --out as a file, or <stack>.md in --out when it is a directory (or ends with a slash). */
export function reportPaths(out: string | undefined, stack: string): { markdown: string; svg: string } {
  const file = `${stack.split("/").pop()}.md`;
  let p = out ?? path.join(".guardian", "reports", file);
  if (out !== undefined && (/[\\/]$/.test(out) || isDirectory(out))) p = path.join(out, file);
  const markdown = path.resolve(p);
  return { markdown, svg: `${markdown.replace(/\.md$/i, "")}.svg` };
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
