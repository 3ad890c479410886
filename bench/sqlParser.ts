/**
 * npm run bench:sql-parser: what PostgreSQL's parser costs the program (docs/sql-parser.md).
 *
 * For each candidate package, in a fresh Node process per run (so start-up is measured, not a warm cache): time to
 * require it, to load it (the WebAssembly module), to the first parse; resident memory added; then every SQL file of
 * the project, rendered as loadSql renders it, parsed once cold and 20 times warm (per-file mean). Medians over --runs.
 * Then, in this process, what the program itself does with lib/pgsql.ts: the function facts of the credit functions
 * and the policy facts of every policy file, as the components read them.
 *
 * The project depends on libpg-query only; to compare the others, install them in a scratch directory and name it:
 *   npm install --prefix /tmp/parsers libpg-query pgsql-parser @pgsql/parser @supabase/pg-parser
 *   npm run bench:sql-parser -- --candidates-dir /tmp/parsers
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { command, existingDir, jsonFlag, option, positiveInteger, printJson, runCommandLine } from "../operations/shared/cli";
import { CREDIT_FUNCTIONS, functionSpecMeta } from "../components/creditFunctions";
import { policyFacts, POLICY_COMMANDS, TENANCY_DIR, tableFiles, TENANT_TABLES } from "../components/tenantPolicies";
import { loadSqlParser } from "../lib/pgsql";
import { loadSql, SQL_ROOT } from "../lib/sql";

export const COMMAND = command({
  name: "bench:sql-parser",
  summary: ["Start-up cost (time to first parse, memory) and per-file parse time of PostgreSQL parsers on this project's SQL."],
  options: {
    candidatesDir: option(existingDir(), {
      description: "a directory where other candidates are installed (npm install --prefix DIR ...); default: only the project's own libpg-query",
      valueName: "DIR",
    }),
    runs: option(positiveInteger(), { description: "fresh processes per candidate (medians are reported)", valueName: "N", default: 7 }),
    json: jsonFlag("the figures"),
  },
  exitCodes: ["0 measured", "1 a candidate failed to load or parse", "2 bad arguments"],
});

const CANDIDATES = ["libpg-query", "pgsql-parser", "@pgsql/parser", "@supabase/pg-parser"];

/** Runs in the child process: argv = [package path, files.json]. Prints one JSON line. */
const CHILD = `
const [pkg, filesJson] = process.argv.slice(1);
const files = Object.entries(JSON.parse(require("fs").readFileSync(filesJson, "utf8")));
const ms = (a) => Number(process.hrtime.bigint() - a) / 1e6;
(async () => {
  const rss0 = process.memoryUsage().rss;
  const t0 = process.hrtime.bigint();
  const lib = require(pkg);
  const requireMs = ms(t0);
  let parse;
  if (lib.PgParser) {
    const p = new lib.PgParser({ version: 17 });
    await p.ready;
    parse = async (s) => { const r = await p.parse(s); if (r.error) throw r.error; return r.tree; };
  } else {
    await lib.loadModule();
    parse = (s) => lib.parseSync(s);
  }
  const loadMs = ms(t0);
  await parse("SELECT 1");
  const firstParseMs = ms(t0);
  const rssAfterLoadMb = (process.memoryUsage().rss - rss0) / 2 ** 20;
  const t1 = process.hrtime.bigint();
  for (const [, text] of files) await parse(text);
  const allFilesColdMs = ms(t1);
  const perFile = [];
  for (const [file, text] of files) {
    const a = process.hrtime.bigint();
    for (let i = 0; i < 20; i++) await parse(text);
    perFile.push([file, ms(a) / 20]);
  }
  const rssAfterAllMb = (process.memoryUsage().rss - rss0) / 2 ** 20;
  console.log(JSON.stringify({ requireMs, loadMs, firstParseMs, rssAfterLoadMb, rssAfterAllMb, allFilesColdMs, perFile }));
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

/** The version of the package whose entry file this is (its package.json may not be exported). */
function versionOf(entry: string, name: string): string {
  for (let dir = path.dirname(entry); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const pj = path.join(dir, "package.json");
    if (fs.existsSync(pj)) {
      const p = JSON.parse(fs.readFileSync(pj, "utf8"));
      if (p.name === name) return p.version;
    }
  }
  return "?";
}

async function main(argv: string[]): Promise<number> {
  const cli = runCommandLine(COMMAND, argv);
  if ("exitCode" in cli) return cli.exitCode;
  const { candidatesDir, runs, json } = cli.values;
  const log = (s: string) => (json ? process.stderr : process.stdout).write(`${s}\n`);

  // Every SQL file of the project, rendered as the components apply it.
  const files: Record<string, string> = {};
  for (const d of fs.readdirSync(SQL_ROOT).filter((x) => fs.statSync(path.join(SQL_ROOT, x)).isDirectory())) {
    for (const f of fs.readdirSync(path.join(SQL_ROOT, d)).filter((x) => x.endsWith(".sql"))) files[`${d}/${f}`] = loadSql(`${d}/${f}`).text;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-sql-parser-"));
  const filesJson = path.join(tmp, "files.json");
  fs.writeFileSync(filesJson, JSON.stringify(files));

  const results: Record<string, unknown>[] = [];
  let failed = false;
  for (const name of CANDIDATES) {
    const from = name === "libpg-query" ? path.resolve(__dirname, "..") : candidatesDir;
    if (!from) continue;
    let entry: string;
    let version: string;
    try {
      entry = require.resolve(name, { paths: [from] });
      version = versionOf(entry, name);
    } catch {
      log(`${name}: not installed under ${from}, skipped`);
      continue;
    }
    const samples: any[] = [];
    try {
      for (let i = 0; i < runs; i++) {
        samples.push(JSON.parse(execFileSync(process.execPath, ["-e", CHILD, entry, filesJson], { encoding: "utf8" }).trim().split("\n").pop()!));
      }
    } catch (e: any) {
      log(`${name}: failed: ${String(e.stderr ?? e.message).split("\n")[0]}`);
      failed = true;
      continue;
    }
    const perFile = Object.keys(files).map((f, i) => ({ file: f, ms: median(samples.map((s) => s.perFile[i][1])) }));
    const sorted = [...perFile].sort((a, b) => a.ms - b.ms);
    const r = {
      name,
      version,
      runs,
      requireMs: round(median(samples.map((s) => s.requireMs))),
      loadMs: round(median(samples.map((s) => s.loadMs))),
      firstParseMs: round(median(samples.map((s) => s.firstParseMs))),
      rssAfterLoadMb: round(median(samples.map((s) => s.rssAfterLoadMb))),
      rssAfterAllMb: round(median(samples.map((s) => s.rssAfterAllMb))),
      allFilesColdMs: round(median(samples.map((s) => s.allFilesColdMs))),
      allFilesWarmMs: round(perFile.reduce((a, b) => a + b.ms, 0)),
      medianFileMs: round(sorted[Math.floor(sorted.length / 2)].ms, 3),
      slowestFile: { file: sorted[sorted.length - 1].file, ms: round(sorted[sorted.length - 1].ms, 2) },
    };
    results.push(r);
    log(
      `${name}@${version}: first parse ${r.firstParseMs} ms (require ${r.requireMs}, loaded ${r.loadMs}), +${r.rssAfterLoadMb} MB RSS; ` +
        `${Object.keys(files).length} files: ${r.allFilesColdMs} ms cold, ${r.allFilesWarmMs} ms warm, median file ${r.medianFileMs} ms, slowest ${r.slowestFile.file} ${r.slowestFile.ms} ms`,
    );
  }
  fs.rmSync(tmp, { recursive: true, force: true });

  // What the program does with it, in this process (lib/pgsql.ts, lib/functionMeta.ts, components/tenantPolicies.ts).
  const t0 = process.hrtime.bigint();
  await loadSqlParser();
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const t1 = process.hrtime.bigint();
  for (const f of CREDIT_FUNCTIONS) functionSpecMeta(f);
  const entries = fs.readdirSync(path.join(SQL_ROOT, TENANCY_DIR));
  let policies = 0;
  for (const t of TENANT_TABLES) {
    const tf = tableFiles(t.table, entries);
    for (const c of POLICY_COMMANDS) {
      policyFacts(loadSql(tf[c]), t.table, c);
      policies++;
    }
  }
  const programMs = Number(process.hrtime.bigint() - t1) / 1e6;
  const program = { loadMs: round(loadMs), functionFiles: CREDIT_FUNCTIONS.length, policyFiles: policies, readMs: round(programMs) };
  log(
    `program (lib/pgsql.ts): parser loaded in ${program.loadMs} ms; ${program.functionFiles} function files and ${program.policyFiles} policy files read (first time, loadSql included) in ${program.readMs} ms`,
  );

  if (json) printJson({ node: process.version, cpus: os.cpus().length, files: Object.keys(files).length, candidates: results, program });
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
