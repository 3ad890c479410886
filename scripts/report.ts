/**
 * The migration report's command line: operations/report builds it (buildReport: every figure read from the stack or
 * queried from the database now), this writes it.
 *
 *   npm run report -- --stack <name> [--config-file F] [--out report.md | --out DIR/] [--json]     (--help: the options)
 *
 * Writes <out> and, beside it, <out without .md>.svg (reportPaths).
 * Exit codes: 0 written; 2 bad arguments, unknown stack or unreachable database (one line on stderr); 3 written but
 * tenant isolation is violated; 1 otherwise (a file that cannot be written: one line naming it).
 *
 * Written automatically after every `up` by the demo (scripts/demo.ts, after up and after rollback) and by the CI
 * workflow (.github/workflows/guardian.yml, uploaded as an artifact).
 */
import * as fs from "fs";
import * as path from "path";
import { command, existingFile, jsonFlag, option, outputPath, printJson, runCommandLine, text } from "../operations/shared/cli";
import { exitCodeOf } from "../lib/errors";
import { buildReport, ReportError, reportPaths } from "../operations/report";

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
