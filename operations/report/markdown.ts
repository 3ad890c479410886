/** The migration report as Markdown (every figure from ReportFigures; the chart is the SVG beside it). */
import { POOLS } from "../../lib/config";
import type { ReportFigures } from "./index";
import { compact, ruleOrder } from "./svg";

const n = (x: number | null | undefined) => (x === null || x === undefined ? "–" : x.toLocaleString("en-US"));
const yes = (b: boolean) => (b ? "yes" : "**NO**");
const short = (h: string | null | undefined, k = 12) => (h ? `\`${h.slice(0, k)}\`` : "–");
const full = (h: string | null | undefined) => (h ? `\`${h}\`` : "–");
const cell = (s: string) => s.replace(/\|/g, "\\|");

/** The lines of a Markdown document, and a table writer that escapes its cells. */
interface Markdown {
  L: string[];
  table(head: string[], rows: (string | number)[][]): void;
}

function markdown(): Markdown {
  const L: string[] = [];
  return {
    L,
    table(head, rows) {
      L.push(`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`);
      for (const r of rows) L.push(`| ${r.map((x) => cell(String(x))).join(" | ")} |`);
      L.push("");
    },
  };
}

/** The report: a title, then one section per function below, in this order. */
export function renderMarkdown(f: ReportFigures, svgFileName: string): string {
  const md = markdown();
  const { L } = md;

  L.push(`# Guardian credits migration report: stack \`${f.stack}\``, "");
  L.push(`Generated ${f.generatedAt}. Every figure below was read from the stack or queried from the database when this report was generated.`, "");
  stackSection(md, f);
  backupSection(md, f);
  rulesSection(md, f);
  conservationSection(md, f);
  versionsSection(md, f);
  isolationSection(md, f);
  accessSection(md, f);
  consumptionSection(md, f);
  marginSection(md, f);
  chartSection(md, f, svgFileName);
  rollbackSection(md, f);
  return L.join("\n");
}

/** ## Stack and database */
function stackSection(md: Markdown, f: ReportFigures): void {
  const { L, table } = md;
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
        "organizations with a credit row",
        `${n(f.orgsTotal)} (${
          Object.entries(f.orgsByModel)
            .map(([k, v]) => `${k} ${n(v)}`)
            .join(", ") || "none"
        })`,
      ],
      ["organizations without a credit row", `${n(f.orgsWithoutCredits ?? 0)} (consume_credits_rpc answers them NO_CREDIT_ACCOUNT)`],
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
}

/** ## Backup */
function backupSection(md: Markdown, f: ReportFigures): void {
  const { L, table } = md;
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
}

/** ## Organizations per allocation rule */
function rulesSection(md: Markdown, f: ReportFigures): void {
  const { L, table } = md;
  const multi = f.orgsByModel.multi ?? 0;
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
}

/** ## Conservation checks */
function conservationSection(md: Markdown, f: ReportFigures): void {
  const { L, table } = md;
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
}

/** ## Function and policy versions */
function versionsSection(md: Markdown, f: ReportFigures): void {
  const { L, table } = md;
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
}

/** ## Tenant isolation, as real users */
function isolationSection(md: Markdown, f: ReportFigures): void {
  const { L, table } = md;
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
}

/** ## What the application's roles may do */
function accessSection(md: Markdown, f: ReportFigures): void {
  const { L, table } = md;
  L.push("## What the application's roles may do", "");
  if (!f.access) {
    L.push("Not measured: the database's shape is not known (see go/no-go).", "");
  } else {
    const m = f.access.matrix;
    L.push(
      "Found by acting as each role (read-only: writes are evaluated as Postgres decides them, never made; " +
        "lib/accessProbe.ts). A cell lists the commands allowed on the role's own row or organization / a teammate's profile / " +
        "another organization's rows (`S` select, `I` insert, `U` update, `T` update of the profile's organization and role, `D` delete; " +
        "`I*` inserting its own profile naming an organization and the role admin).",
      "",
    );
    const letter: Record<string, string> = { SELECT: "S", INSERT: "I", UPDATE: "U", "UPDATE tenancy": "T", DELETE: "D" };
    const scopes = [["own", "all", "elevated"], ["team"], ["other", "new"]];
    const tables = [...new Set(m.cells.map((x) => x.table))];
    table(
      ["table", ...m.roles],
      tables.map((t) => [
        t,
        ...m.roles.map((r) =>
          scopes
            .map(
              (group) =>
                m.cells
                  .filter((x) => x.table === t && x.role === r && x.allowed && group.includes(x.scope))
                  .map((x) => `${letter[x.command]}${x.scope === "elevated" ? "*" : ""}`)
                  .join("") || "–",
            )
            .join(" / "),
        ),
      ]),
    );
    L.push(
      f.access.mismatches.length
        ? `**Differs from what the program's policies allow:** ${f.access.mismatches.join("; ")}.`
        : `Every one of the ${n(m.cells.length)} cells is what the program's grants, policies and guard trigger allow (lib/access.ts).`,
      "",
    );
  }
}

/** ## Consumption since the migration */
function consumptionSection(md: Markdown, f: ReportFigures): void {
  const { L, table } = md;
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
}

/** ## Margin per plan */
function marginSection(md: Markdown, f: ReportFigures): void {
  const { L, table } = md;
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
}

/** ## Chart */
function chartSection(md: Markdown, f: ReportFigures, svgFileName: string): void {
  const { L, table } = md;
  L.push("## Chart", "");
  L.push(`![Credits per rule before and after; margin per plan against target](${svgFileName})`, "");
  const chartRules = ruleOrder([...Object.keys(f.chart.before), ...Object.keys(f.chart.after)]);
  table(
    ["rule", "before: unified credits", ...POOLS.map((p) => `after: ${p}`)],
    chartRules.map((r) => [r, compact(f.chart.before[r] ?? 0), ...POOLS.map((p) => compact(f.chart.after[r]?.[p] ?? 0))]),
  );
}

/** ## Rollback */
function rollbackSection(md: Markdown, f: ReportFigures): void {
  const { L } = md;
  L.push("## Rollback", "");
  L.push(
    f.previousSuccessfulVersion !== null
      ? `The last successful update before version ${f.updateVersion} is version ${f.previousSuccessfulVersion}. To return to it (preview, confirmation, up, verification, report):`
      : `No earlier successful update is recorded, so there is no version for \`npm run rollback\` to return to. To switch to the ${f.creditModel === "multi" ? "unified" : "multi"} model:`,
    "",
  );
  L.push("```sh", ...f.rollbackCommands, "```", "");
  L.push(
    f.creditModel === "multi"
      ? "The `pulumi config set` line is the contract's rollback (config revert then up): consume_credits_rpc v1 comes back from the backup's recorded definition, " +
          "its search_path pinned; balances are not recomputed (v2 kept them current), and the backup is kept."
      : "This stack is configured for the unified model (rolled back, or never migrated): the `pulumi config set` line migrates it (again), taking a new backup first.",
    "",
  );
}
