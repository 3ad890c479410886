/**
 * The migration report: Markdown plus an SVG chart, every figure read from the stack or queried from the database at
 * report time (nothing is copied from a template).
 *
 *   npm run report -- --stack <name> [--config-file F] [--out report.md | --out DIR/] [--json]     (--help: the options)
 *
 * Reads the stack through Automation API (outputs, `pulumi stack history` for the update version, the decrypted
 * config for the database URL, which is only ever shown redacted), then queries the database (lib/report/figures.ts)
 * and cross-checks the stack's outputs against it. Writes <out> and, beside it, <out without .md>.svg.
 * Exit codes: 0 written; 2 bad arguments, unknown stack or unreachable database (one line on stderr); 3 written but
 * tenant isolation is violated; 1 otherwise (a file that cannot be written: one line naming it).
 *
 * Written automatically after every `up` by the demo (scripts/demo.ts, after up and after rollback) and by the CI
 * workflow (.github/workflows/guardian.yml, uploaded as an artifact). A Pulumi program cannot run code after its own
 * update has completed (the stack version and the final outputs only exist then), so the report is the next command.
 *
 * Layers: buildReport() is the API (tests compare its `figures` with their own queries); renderMarkdown() and
 * lib/report/svg.ts render; main() is the CLI.
 */
import * as fs from "fs";
import * as path from "path";
import type { ConfigMap, OutputMap, Stack, UpdateSummary } from "@pulumi/pulumi/automation";
import { command, existingFile, jsonFlag, option, outputPath, printJson, runCommandLine, text } from "../lib/cli";
import { GuardianConfigError, parseConfig, POOLS, tlsSettings } from "../lib/config";
import type { GuardianConfig } from "../lib/config";
import { connectionSecrets, redactSecrets, redactUrl, withClient } from "../lib/db";
import { databaseFigures, type DatabaseFigures } from "../lib/report/figures";
import { compact, renderSvg, ruleOrder } from "../lib/report/svg";
import { guardianKeys, openStack, readStackConfig } from "../lib/workspace";
import { exitCodeOf, GuardianRefusal } from "../lib/errors";

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

function crossCheck(outputs: OutputMap, db: DatabaseFigures): OutputCheck[] {
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
  const rollbackCommands =
    config.creditModel === "multi"
      ? [
          `npm run rollback -- --stack ${stack.name}${previous ? ` --to ${previous.version}` : ""}`,
          `pulumi config set guardian:creditModel unified --stack ${stack.name}${cfgFlag} && pulumi up --stack ${stack.name}${cfgFlag}`,
        ]
      : [
          `npm run rollback -- --stack ${stack.name}${previous ? ` --to ${previous.version}` : ""}`,
          `pulumi config set guardian:creditModel multi --stack ${stack.name}${cfgFlag} && pulumi up --stack ${stack.name}${cfgFlag}`,
        ];

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

// ---------------------------------------------------------------------------------------------------------------
// Markdown

const n = (x: number | null | undefined) => (x === null || x === undefined ? "–" : x.toLocaleString("en-US"));
const yes = (b: boolean) => (b ? "yes" : "**NO**");
const short = (h: string | null | undefined, k = 12) => (h ? `\`${h.slice(0, k)}\`` : "–");
const full = (h: string | null | undefined) => (h ? `\`${h}\`` : "–");
const cell = (s: string) => s.replace(/\|/g, "\\|");

export function renderMarkdown(f: ReportFigures, svgFileName: string): string {
  const L: string[] = [];
  const table = (head: string[], rows: (string | number)[][]) => {
    L.push(`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`);
    for (const r of rows) L.push(`| ${r.map((x) => cell(String(x))).join(" | ")} |`);
    L.push("");
  };
  const multi = f.orgsByModel.multi ?? 0;

  L.push(`# Guardian credits migration report: stack \`${f.stack}\``, "");
  L.push(`Generated ${f.generatedAt}. Every figure below was read from the stack or queried from the database when this report was generated.`, "");

  L.push("## Stack and database", "");
  const u = f.lastUpdate;
  table(
    ["", ""],
    [
      ["stack", `\`${f.stack}\``],
      [
        "update version",
        u
          ? `${u.version} (${u.kind}, ${u.result}, ${u.startTime}; ${f.versionSource === "backend" ? "version recorded by the backend" : "position in `pulumi stack history`, 1 = oldest: this backend records no version numbers"})`
          : "never updated",
      ],
      [
        "changes in that update",
        u
          ? Object.entries(u.resourceChanges)
              .map(([k, v]) => `${k} ${v}`)
              .join(", ") || "–"
          : "–",
      ],
      ["guardian:creditModel (config)", `\`${f.creditModel}\``],
      ["guardian:marginGate (config)", `\`${f.marginGate}\``],
      ["database", `\`${f.database}\``],
      ["server version", `PostgreSQL ${f.serverVersion}`],
      [
        "organizations",
        `${n(f.orgsTotal)} (${
          Object.entries(f.orgsByModel)
            .map(([k, v]) => `${k} ${n(v)}`)
            .join(", ") || "none"
        })`,
      ],
      ["Phase 3.5 columns present", f.migrated ? "yes" : "no"],
    ],
  );
  if (f.outputsCheck.length) {
    L.push("Stack outputs against the database now:", "");
    table(
      ["output", "stack", "database", "agrees"],
      f.outputsCheck.map((c) => [c.output, JSON.stringify(c.stack), JSON.stringify(c.database), yes(c.agrees)]),
    );
  }

  L.push("## Backup", "");
  const b = f.backup;
  if (!b) {
    L.push("No backup is recorded in `guardian.backups`.", "");
  } else {
    table(
      ["", ""],
      [
        ["backup id", `\`${b.backupId}\``],
        ["schema", `\`${b.schemaName}\` (${b.schemaPresent ? "present" : "**MISSING**"})`],
        ["taken at", b.createdAt],
        ["export", b.exportDir ? `\`${b.exportDir}\`${b.manifestReadable ? "" : " (manifest.json not readable from this machine)"}` : "–"],
        ["restore check", b.restoreVerified ? `verified${b.verifiedAt ? ` at ${b.verifiedAt}` : ""}` : "**not verified**"],
      ],
    );
    table(
      [
        "table",
        "rows in backup schema",
        "rows recorded",
        "rows in manifest",
        "checksum (schema now)",
        "checksum recorded / manifest",
        "file sha256 (manifest / now)",
        "consistent",
      ],
      Object.entries(b.tables).map(([t, x]) => [
        t,
        n(x.rowsInSchema),
        n(x.rowsRecorded),
        n(x.rowsInManifest),
        full(x.checksumInSchema),
        `${full(x.checksumRecorded)} / ${full(x.checksumInManifest)}`,
        `${short(x.fileSha256InManifest)} / ${short(x.fileSha256Now)}`,
        yes(x.consistent),
      ]),
    );
  }

  L.push("## Organizations per allocation rule", "");
  const rules = ruleOrder(Object.keys(f.orgsPerRule));
  table(
    ["rule", "organizations", "multi (migrated)", "unified"],
    [
      ...rules.map((r) => [r, n(f.orgsPerRule[r].orgs), n(f.orgsPerRule[r].multi), n(f.orgsPerRule[r].unified)]),
      ["**all**", n(f.orgsTotal), n(multi), n(f.orgsByModel.unified ?? 0)],
    ],
  );
  L.push(`Catalogue read from \`${f.catalogueSource}\`. "split" is every other plan name (free, custom, empty, unknown).`, "");
  const split = Object.entries(f.splitPlanNames ?? {});
  if (split.length) {
    L.push("The split rule, per plan name as stored (after trim and lower-case). A name meant as a plan can be mapped in `guardian:plans`:", "");
    table(
      ["plan name", "organizations", "rule"],
      split.map(([name, k]) => [`\`${name}\``, n(k), "split"]),
    );
  }

  L.push("## Conservation checks", "");
  const cons = ruleOrder(Object.keys(f.conservation));
  if (!cons.length) {
    L.push("No organization is in the multi model: nothing to check.", "");
  } else {
    table(
      ["rule", "multi orgs", "pool totals = rule", "available + consumed = initial", "failing (first 5)"],
      cons.map((r) => {
        const c = f.conservation[r];
        return [
          r,
          n(c.orgs),
          `${n(c.totalsConserved)} ${c.totalsConserved === c.orgs ? "✓" : "✗"}`,
          `${n(c.availableConserved)} ${c.availableConserved === c.orgs ? "✓" : "✗"}`,
          c.violations.join(", ") || "–",
        ];
      }),
    );
    L.push(
      "Plan rules: each pool's total is the plan's allocation, and available plus what was consumed since the allocation equals it. " +
        "Split rule: the four pool totals add up to total_credits, and available plus consumed adds up to credits_remaining (a negative balance counts as 0).",
      "",
    );
  }
  L.push("### Anomalies (guardian.backfill_anomalies)", "");
  if (!f.anomalies.length) L.push("None recorded.", "");
  else
    table(
      ["organization", "kind", "value", "epoch"],
      f.anomalies.map((a) => [`\`${a.organizationId}\``, a.kind, n(a.value), n(a.epoch)]),
    );

  L.push("## Function and policy versions", "");
  table(
    ["function", "md5(pg_get_functiondef)", "security definer", "settings", "note"],
    f.functions.map((x) => [
      `\`${x.signature}\``,
      `\`${x.definitionMd5}\``,
      x.securityDefiner ? "yes" : "no",
      x.config.join(", ") || "–",
      x.matchesBackupV1 ? "identical to the definition recorded in the backup (v1)" : "",
    ]),
  );
  L.push(`Policies: ${f.policies.length} on the credit tables, combined md5 \`${f.policiesMd5}\`.`, "");
  table(
    ["table", "policy", "command", "roles", "kind", "md5(qual, with check)"],
    f.policies.map((p) => [p.table, p.policy, p.command, p.roles.join(", "), p.permissive.toLowerCase(), short(p.md5)]),
  );
  L.push(
    `Row level security: ${Object.entries(f.rlsEnabled)
      .map(([t, on]) => `${t} ${on ? "on" : "**off**"}`)
      .join(", ")}.`,
    "",
  );

  if (f.v1Weaknesses?.length) {
    L.push(
      "The installed `consume_credits_rpc(uuid,text)` is v1-shaped, and with it come these weaknesses (set `guardian:rollback.function` to `safe` to keep a locked, caller-checked function instead):",
      "",
    );
    for (const w of f.v1Weaknesses) L.push(`- ${w}`);
    L.push("");
  }

  L.push("## Tenant isolation, as real users", "");
  if (!f.isolation) {
    L.push("Not measured: the database's shape is not known (see go/no-go).", "");
  } else {
    const subj = Object.keys(f.isolation.matrix.subjects);
    L.push(
      `Each subject reads every guarded table as Supabase would make it (role and JWT claims): ${subj
        .map((k) => {
          const x = f.isolation!.matrix.subjects[k];
          return `${k} (${x.role}${x.user ? `, user \`${x.user}\`` : ""}${x.organization ? `, org \`${x.organization}\`` : ""})`;
        })
        .join("; ")}. A cell is rows seen / rows of other organizations among them (capped at 10,000).`,
      "",
    );
    table(
      ["table", ...subj],
      Object.entries(f.isolation.matrix.tables).map(([tbl, row]) => [
        tbl,
        ...subj.map((k) => {
          const x = row[k];
          if (!x) return "–";
          if (x.denied) return "denied";
          if (x.error) return `error: ${x.error}`;
          return `${n(x.visible)} / ${x.otherOrganizations === null || x.otherOrganizations === undefined ? "–" : n(x.otherOrganizations)}`;
        }),
      ]),
    );
    L.push(
      f.isolation.violations.length
        ? `**Isolation violated:** ${f.isolation.violations.join("; ")}.`
        : "No subject but the super_admin sees a row of another organization; anon sees nothing.",
      "",
    );
  }

  L.push("## Consumption since the migration", "");
  const c = f.consumption;
  if (!c) L.push("No backup, so no migration time to count from.", "");
  else {
    L.push(
      `Since the backup (${c.since}): ${n(c.successes)} successful and ${n(c.refusals)} refused calls; successes served by model: ${
        Object.entries(c.successesByModel)
          .map(([k, v]) => `${k} ${n(v)}`)
          .join(", ") || "none"
      }; unified cost of the successes ${n(c.unifiedCost)} credits (what a rollback subtracts).`,
      "",
    );
    table(
      ["pool", "successful calls", "credits debited", "refused calls"],
      POOLS.map((p) => [p, n(c.perPool[p].successes), n(c.perPool[p].credits), n(c.perPool[p].refusals)]),
    );
    if (Object.keys(c.refusalsByCode).length)
      L.push(
        `Refusals by code: ${Object.entries(c.refusalsByCode)
          .map(([k, v]) => `${k} ${n(v)}`)
          .join(", ")}.`,
        "",
      );
  }

  L.push("## Margin per plan", "");
  table(
    ["plan", "price EUR", "cost EUR (all four pools)", "margin", `target ${(f.margins.target * 100).toFixed(1)}%`],
    f.margins.plans.map((m) => [
      m.plan,
      m.priceEur === null ? "custom" : m.priceEur.toFixed(2),
      m.costEur === null ? "unknown" : m.costEur.toFixed(2),
      m.marginPct === null ? "n/a" : `${m.marginPct.toFixed(2)}%`,
      m.belowTarget === null ? "not comparable" : m.belowTarget ? "**below**" : "met",
    ]),
  );
  const below = f.margins.plans.filter((m) => m.belowTarget).map((m) => m.plan);
  L.push(
    `Source: \`${f.margins.source}\`. ${below.length ? `Below target: ${below.join(", ")} (gate ${f.marginGate}).` : "Every comparable plan meets the target."}`,
    "",
  );

  L.push("## Chart", "");
  L.push(`![Credits per rule before and after; margin per plan against target](${svgFileName})`, "");
  const chartRules = ruleOrder([...Object.keys(f.chart.before), ...Object.keys(f.chart.after)]);
  table(
    ["rule", "before: unified credits", ...POOLS.map((p) => `after: ${p}`)],
    chartRules.map((r) => [r, compact(f.chart.before[r] ?? 0), ...POOLS.map((p) => compact(f.chart.after[r]?.[p] ?? 0))]),
  );

  L.push("## Rollback", "");
  L.push(
    f.previousSuccessfulVersion !== null
      ? `The last successful update before version ${f.updateVersion} is version ${f.previousSuccessfulVersion}. To return to it (preview, confirmation, up, verification, report):`
      : "No earlier successful update is recorded. To return to the unified model:",
    "",
  );
  L.push("```sh", ...f.rollbackCommands, "```", "");
  L.push(
    f.creditModel === "multi"
      ? "The second line is the contract's rollback (config revert then up): consume_credits_rpc v1 comes back from the backup's recorded definition, " +
          "balances are reconciled with every consumption since the backup, and the backup is kept."
      : "This stack is configured for the unified model (rolled back, or never migrated): the second line migrates it (again), taking a new backup first.",
    "",
  );
  return L.join("\n");
}

// ---------------------------------------------------------------------------------------------------------------
// CLI

export const COMMAND = command({
  name: "report",
  summary: [
    "Writes the migration report: Markdown and, beside it, an SVG chart (credits per pool per plan before and after,",
    "margin per plan against the target). Every figure is read from the stack or queried from the database now.",
  ],
  options: {
    stack: option(text("a stack name"), { valueName: "NAME", description: "the stack to report on", required: true }),
    configFile: option(existingFile(), { valueName: "FILE", description: "stack settings file, as pulumi --config-file (default: Pulumi.<stack>.yaml)" }),
    out: option(outputPath({ directoryOk: true }), {
      valueName: "PATH",
      description: "the Markdown file to write (the SVG goes beside it, .svg); an existing directory, or a path ending in /, gets <stack>.md in it",
      defaultText: ".guardian/reports/<stack>.md",
    }),
    json: jsonFlag("the paths written and every figure of the report ({ markdown, svg, figures })"),
  },
  exitCodes: [
    "0 written",
    "2 bad arguments, unknown stack, bad stack config or unreachable database (one line on stderr)",
    "3 written, but tenant isolation is violated",
    "1 the files could not be written, or any other failure",
  ],
});

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

export async function main(argv: string[]): Promise<number> {
  const cli = runCommandLine(COMMAND, argv);
  if ("exitCode" in cli) return cli.exitCode;
  const a = cli.values;
  // With --json, stdout carries the document only.
  const say = a.json ? (s: string) => console.error(s) : (s: string) => console.log(s);
  const { markdown: out, svg: svgPath } = reportPaths(a.out, a.stack);
  const r = await buildReport({ stack: a.stack, configFile: a.configFile, svgFileName: path.basename(svgPath) });
  const rel = (p: string) => path.relative(process.cwd(), p) || p;
  for (const [file, content] of [
    [out, r.markdown],
    [svgPath, r.svg],
  ] as const) {
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, content);
    } catch (e: any) {
      console.error(`report: cannot write ${rel(file)}: ${e?.code ? `${e.code}: ` : ""}${String(e?.message ?? e).replace(/^\w+: /, "")}`);
      return 1;
    }
  }
  const f = r.figures;
  say(
    `report: stack ${f.stack}, update version ${f.updateVersion ?? "none"}, ${f.orgsByModel.multi ?? 0}/${f.orgsTotal} orgs multi, ` +
      `backup ${f.backup?.backupId ?? "none"}${f.backup ? ` (restore ${f.backup.restoreVerified ? "verified" : "NOT verified"})` : ""}`,
  );
  say(`report: wrote ${rel(out)} and ${rel(svgPath)}`);
  if (a.json) printJson({ markdown: out, svg: svgPath, figures: f });
  if (f.isolation?.violations.length) {
    // The report is written (it says what leaks), but it does not pass.
    console.error(`report: TENANT ISOLATION VIOLATED: ${f.isolation.violations.join("; ")}`);
    return 3;
  }
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e instanceof ReportError ? e.message : `report failed: ${e?.stack ?? e}`);
      process.exit(exitCodeOf(e));
    },
  );
}
