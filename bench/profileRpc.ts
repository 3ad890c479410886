/**
 * Where consume_credits_rpc v2's time goes (issue 14, item 8), on a throwaway PostgreSQL this script starts and stops:
 *
 *   npx ts-node --transpile-only bench/profileRpc.ts [--seconds S] [--clients N] [--out DIR] [--label L]
 *
 * The server is the machine's PostgreSQL binaries (Debian's newest /usr/lib/postgresql/<v>/bin, or GUARDIAN_PG_BINDIR),
 * initdb'd into a temp folder as the `postgres` OS user (when run as root), on a free port, with
 * shared_preload_libraries = 'pg_stat_statements,plpgsql_check', pg_stat_statements.track = all, and the main
 * server's durability (fsync and synchronous_commit on), so a commit costs what it costs there. Stopped and removed at
 * the end, also on failure. It needs the plpgsql_check extension (Debian: postgresql-<v>-plpgsql-check).
 *
 * On the same databases as `npm run bench` (bench/rpc.ts prepareV1 / prepareV2: 1,000 organizations, multi for v2):
 *   1. EXPLAIN (ANALYZE, BUFFERS) of every statement inside one warm call of v2, of the plpgsql debit-plus-log
 *      reference and of v1: auto_explain with log_nested_statements, read back from the server's log;
 *   2. pg_stat_statements (track = all) over a pgbench run of each, as service_role: per statement inside the function,
 *      calls, time, buffers and WAL per call; the call's own time and what remains for the commit;
 *   3. plpgsql_check's profiler over a pgbench run of v2: time per line of v2 and of the functions it calls.
 * Writes <out>/<YYYY-MM-DD>.profile[.<label>].json and .md.
 */
import { execFile, execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import { connect } from "../lib/db";
import { createDatabase } from "../operations/shared/pgserver";
import { prepareV1, prepareV2, scripts } from "./rpc";
import { freePort } from "../harness/net";

const runAsync = promisify(execFile);
const asRoot = process.getuid?.() === 0;
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const r3 = (x: number) => Math.round(x * 1000) / 1000;

function pgBinDir(): string {
  if (process.env.GUARDIAN_PG_BINDIR) return process.env.GUARDIAN_PG_BINDIR;
  const debian = "/usr/lib/postgresql";
  const versions = fs.existsSync(debian)
    ? fs
        .readdirSync(debian)
        .filter((v) => fs.existsSync(path.join(debian, v, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (!versions.length) throw new Error("no PostgreSQL binaries: install PostgreSQL or set GUARDIAN_PG_BINDIR");
  return path.join(debian, versions[0], "bin");
}

function asPostgres(cmd: string, args: string[]): string {
  const [c, a] = asRoot ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
  return execFileSync(c, a, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], cwd: os.tmpdir(), timeout: 120_000 });
}

interface Server {
  adminUrl: string;
  logFile: string;
  stop(): void;
}

async function startServer(): Promise<Server> {
  const bin = pgBinDir();
  // Checked before anything is created: without it the server refuses to start and says so only in its own log.
  const libdir = execFileSync(path.join(bin, "pg_config"), ["--pkglibdir"], { encoding: "utf8" }).trim();
  const major = path.basename(path.dirname(bin));
  const packages: Record<string, string> = { pg_stat_statements: `postgresql-${major}`, plpgsql_check: `postgresql-${major}-plpgsql-check` };
  for (const [lib, pkg] of Object.entries(packages)) {
    if (!fs.existsSync(path.join(libdir, `${lib}.so`))) throw new Error(`${lib} is not installed in ${libdir} (Debian: apt-get install ${pkg})`);
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-profile-"));
  const data = path.join(root, "data");
  if (asRoot) execFileSync("chown", ["-R", "postgres", root]);
  const port = await freePort();
  asPostgres(path.join(bin, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
  fs.appendFileSync(
    path.join(data, "postgresql.conf"),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${root}'`,
      `shared_preload_libraries = 'pg_stat_statements,plpgsql_check'`,
      `pg_stat_statements.track = all`,
      `pg_stat_statements.max = 5000`,
      `track_io_timing = on`,
      `shared_buffers = '128MB'`,
      `max_connections = 100`,
      `fsync = on`,
      `synchronous_commit = on`,
      "",
    ].join("\n"),
  );
  const logFile = path.join(root, "server.log");
  asPostgres(path.join(bin, "pg_ctl"), ["-D", data, "-l", logFile, "-w", "-t", "60", "start"]);
  log(`profile: throwaway PostgreSQL on port ${port} (${data})`);
  return {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    logFile,
    stop() {
      try {
        asPostgres(path.join(bin, "pg_ctl"), ["-D", data, "-m", "fast", "-w", "-t", "60", "stop"]);
        log("profile: throwaway PostgreSQL stopped");
      } finally {
        fs.rmSync(root, { recursive: true, force: true });
      }
    },
  };
}

async function q<T = any>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const c = await connect(url);
  try {
    return (await c.query(text, params as any[])).rows;
  } finally {
    await c.end();
  }
}

const ORG = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;

/** The plans of every statement one call runs (auto_explain, nested statements), from the server's log. */
async function explainOneCall(server: Server, url: string, call: string): Promise<string> {
  const c = await connect(url);
  try {
    await c.query("LOAD 'auto_explain'");
    for (let i = 0; i < 20; i++) await c.query(call.replace("$ORG", ORG(10 + i))); // warm: cached plans, caches
    await c.query(`SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; SET auto_explain.log_timing = on;
                   SET auto_explain.log_nested_statements = on; SET auto_explain.log_wal = on; SET auto_explain.log_verbose = off`);
    const before = fs.statSync(server.logFile).size;
    await c.query("SET auto_explain.log_min_duration = 0");
    await c.query("SET role service_role");
    await c.query(call.replace("$ORG", ORG(7)));
    await c.query("RESET role");
    await c.query("SET auto_explain.log_min_duration = -1");
    await new Promise((res) => setTimeout(res, 200));
    const text = fs.readFileSync(server.logFile, "utf8").slice(before);
    // Keep the plan blocks: "LOG:  duration: ... ms  plan:" and the indented lines after it; drop the SET statements.
    const blocks: string[] = [];
    let cur: string[] | null = null;
    for (const line of text.split("\n")) {
      if (/LOG: {2}duration: [\d.]+ ms {2}plan:/.test(line)) {
        if (cur) blocks.push(cur.join("\n"));
        cur = [line.replace(/^.*LOG: {2}/, "")];
      } else if (cur && /^\s/.test(line)) cur.push(line);
      else if (cur) {
        blocks.push(cur.join("\n"));
        cur = null;
      }
    }
    if (cur) blocks.push(cur.join("\n"));
    return blocks.filter((b) => !/Query Text: (SET|RESET|LOAD)/.test(b)).join("\n\n");
  } finally {
    await c.end();
  }
}

async function pgbench(url: string, script: string, clients: number, seconds: number, env: Record<string, string> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-profile-pgbench-"));
  try {
    const f = path.join(dir, "s.sql");
    fs.writeFileSync(f, script);
    const { stdout } = await runAsync(
      fs.existsSync("/usr/bin/pgbench") ? "/usr/bin/pgbench" : "pgbench",
      ["-n", "-M", "prepared", "-T", String(seconds), "-c", String(clients), "-j", String(Math.min(clients, 2)), "-f", f, url],
      { env: { ...process.env, PGOPTIONS: "-c role=service_role", ...env }, maxBuffer: 16 * 1024 * 1024 },
    );
    return {
      tps: Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? NaN),
      latencyAvgMs: Number(/latency average = ([\d.]+) ms/.exec(stdout)?.[1] ?? NaN),
      transactions: Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? NaN),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface StatementRow {
  query: string;
  toplevel: boolean;
  calls: number;
  perCallUs: number;
  /** Share of the statement time of all statements inside the top-level call (toplevel = false only). */
  sharePct: number | null;
  planPerCallUs: number;
  sharedHitPerCall: number;
  dirtiedPerCall: number;
  walRecordsPerCall: number;
  walBytesPerCall: number;
}

/** pg_stat_statements over a pgbench run: per statement, per call of the top-level function. */
async function statementsProfile(url: string, script: string, clients: number, seconds: number) {
  await q(url, "SELECT pg_stat_statements_reset()");
  await q(url, "VACUUM ANALYZE public.organization_credits");
  const bench = await pgbench(url, script, clients, seconds);
  const rows = await q(
    url,
    `
    SELECT s.query, s.toplevel, s.calls, s.total_exec_time, s.total_plan_time, s.shared_blks_hit, s.shared_blks_dirtied,
           s.wal_records, s.wal_bytes
      FROM pg_stat_statements s
     WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND s.query !~* '^\\s*(VACUUM|SELECT pg_stat_statements_reset)'
     ORDER BY s.toplevel DESC, s.total_exec_time DESC`,
  );
  const top = rows.filter((r) => r.toplevel).sort((a, b) => Number(b.calls) - Number(a.calls))[0];
  const n = Number(top?.calls ?? 1);
  const nestedTotal = rows.filter((r) => !r.toplevel).reduce((s, r) => s + Number(r.total_exec_time), 0);
  const statements: StatementRow[] = rows
    .filter((r) => Number(r.calls) >= n / 20)
    .map((r) => ({
      query: String(r.query).replace(/\s+/g, " ").trim(),
      toplevel: r.toplevel,
      calls: Number(r.calls),
      perCallUs: r3((Number(r.total_exec_time) * 1000) / n),
      sharePct: r.toplevel ? null : Math.round((Number(r.total_exec_time) / Math.max(nestedTotal, 1e-9)) * 1000) / 10,
      planPerCallUs: r3((Number(r.total_plan_time) * 1000) / n),
      sharedHitPerCall: r3(Number(r.shared_blks_hit) / n),
      dirtiedPerCall: r3(Number(r.shared_blks_dirtied) / n),
      walRecordsPerCall: r3(Number(r.wal_records) / n),
      walBytesPerCall: r3(Number(r.wal_bytes) / n),
    }));
  const topUs = top ? (Number(top.total_exec_time) * 1000) / n : NaN;
  return {
    clients,
    seconds,
    pgbench: bench,
    calls: n,
    /** The top-level call's execution time, per call (inside the server, commit excluded). */
    callUs: r3(topUs),
    /** The statements inside it, summed, per call. */
    insideUs: r3((nestedTotal * 1000) / n),
    /** What the client waited beyond the call's execution: commit (WAL flush), round trip, lock waits before start. */
    outsideCallUs: r3(bench.latencyAvgMs * 1000 - topUs),
    statements,
  };
}

/** plpgsql_check's profiler over a pgbench run of a function: time per line, for it and the functions it calls. */
async function plpgsqlProfile(url: string, script: string, functions: string[], clients: number, seconds: number) {
  await q(url, "SELECT plpgsql_profiler_reset_all()");
  const bench = await pgbench(url, script, clients, seconds, { PGOPTIONS: "-c role=service_role -c plpgsql_check.profiler=on" });
  const out: Record<string, any[]> = {};
  for (const f of functions) {
    const rows = await q(
      url,
      `SELECT lineno, stmt_lineno, exec_stmts, total_time, avg_time, max_time, source
                                 FROM plpgsql_profiler_function_tb($1::regprocedure) WHERE exec_stmts > 0 ORDER BY lineno`,
      [f],
    );
    out[f] = rows.map((r) => ({
      line: r.lineno,
      exec: Number(r.exec_stmts),
      totalMs: r3(Number(r.total_time)),
      avgUs: r3(Number(r.avg_time) * 1000),
      source: String(r.source ?? "")
        .trim()
        .slice(0, 110),
    }));
  }
  return { clients, seconds, pgbench: bench, functions: out };
}

function mdStatements(title: string, p: Awaited<ReturnType<typeof statementsProfile>>): string[] {
  const L = [
    `### ${title}: pg_stat_statements, pgbench ${p.clients} clients, ${p.seconds} s (${Math.round(p.pgbench.tps)} tps, latency avg ${p.pgbench.latencyAvgMs} ms)`,
    "",
  ];
  L.push(
    `Per call: the call executes in ${p.callUs} us inside the server, of which its statements ${p.insideUs} us; ` +
      `the client waits ${p.outsideCallUs} us more (commit and its WAL flush, round trip, waiting to start).`,
    "",
  );
  L.push(
    "| statement | top | us/call | share of inside | plan us | buffers hit | dirtied | WAL records | WAL bytes |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|",
  );
  for (const s of p.statements) {
    L.push(
      `| \`${s.query.slice(0, 150).replace(/\|/g, "\\|")}${s.query.length > 150 ? "…" : ""}\` | ${s.toplevel ? "yes" : ""} | ${s.perCallUs} | ${s.sharePct ?? ""}${s.sharePct === null ? "" : " %"} | ${s.planPerCallUs} | ${s.sharedHitPerCall} | ${s.dirtiedPerCall} | ${s.walRecordsPerCall} | ${s.walBytesPerCall} |`,
    );
  }
  L.push("");
  return L;
}

async function main() {
  const args = process.argv.slice(2);
  const opt = (name: string, d: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : d;
  };
  const seconds = Number(opt("seconds", "10"));
  const clients = Number(opt("clients", "8"));
  const out = path.resolve(opt("out", path.join(__dirname, "results")));
  const label = opt("label", "");
  const server = await startServer();
  const result: any = { at: new Date().toISOString(), seconds, clients, label, loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100) };
  try {
    const v1Url = await createDatabase(server.adminUrl, "profile_v1");
    const v2Url = await createDatabase(server.adminUrl, "profile_v2");
    await prepareV1(v1Url, 1000);
    await prepareV2(v2Url, 1000);
    for (const u of [v1Url, v2Url]) await q(u, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    await q(v2Url, "CREATE EXTENSION IF NOT EXISTS plpgsql_check");
    const s = scripts(1000, "direct");

    log("profile: EXPLAIN (ANALYZE, BUFFERS) of the statements inside one call");
    result.explain = {
      v2: await explainOneCall(server, v2Url, "SELECT public.consume_credits_rpc('$ORG'::uuid, 'ai_chat', 1)"),
      plpgsql_reference: await explainOneCall(server, v2Url, "SELECT public.bench_debit_and_log('$ORG'::uuid)"),
      v1: await explainOneCall(server, v1Url, "SELECT public.consume_credits_rpc('$ORG'::uuid, 'ai_chat')"),
    };

    log("profile: pg_stat_statements");
    result.statements = {
      v2: await statementsProfile(v2Url, s.v2, clients, seconds),
      plpgsql_reference: await statementsProfile(v2Url, s.plpgsql_reference, clients, seconds),
      v1: await statementsProfile(v1Url, s.v1, clients, seconds),
    };

    log("profile: plpgsql_check profiler");
    const fns = (
      await q(
        v2Url,
        `SELECT p.oid::regprocedure::text AS f FROM pg_proc p
                                   WHERE (p.pronamespace = 'guardian'::regnamespace AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql'))
                                      OR p.oid = 'public.consume_credits_rpc(uuid,text,integer,text)'::regprocedure
                                   ORDER BY p.pronamespace <> 'public'::regnamespace, 1`,
      )
    ).map((r) => r.f);
    result.profiler = await plpgsqlProfile(v2Url, s.v2, fns, clients, seconds);
  } finally {
    server.stop();
  }

  const L: string[] = [`# consume_credits_rpc v2: where the time goes${label ? ` (${label})` : ""}`, ""];
  L.push(
    `Generated by \`bench/profileRpc.ts\` on a throwaway PostgreSQL (pg_stat_statements track=all, plpgsql_check), ${result.at}; ` +
      `load average at the start ${result.loadAverage.join(" / ")}. Same databases as \`npm run bench\` (1,000 orgs, service_role).`,
    "",
  );
  L.push("## pg_stat_statements", "");
  for (const [k, v] of Object.entries(result.statements)) L.push(...mdStatements(k, v as any));
  L.push(`## plpgsql_check profiler (pgbench ${clients} clients, ${seconds} s, profiler on: ${Math.round(result.profiler.pgbench.tps)} tps)`, "");
  for (const [f, rows] of Object.entries(result.profiler.functions as Record<string, any[]>)) {
    if (!rows.length) continue;
    L.push(`### ${f}`, "", "| line | executed | total ms | avg us | source |", "|---:|---:|---:|---:|---|");
    for (const r of rows) L.push(`| ${r.line} | ${r.exec} | ${r.totalMs} | ${r.avgUs} | \`${r.source.replace(/\|/g, "\\|")}\` |`);
    L.push("");
  }
  L.push("## EXPLAIN (ANALYZE, BUFFERS) of one warm call (auto_explain, nested statements)", "");
  for (const [k, v] of Object.entries(result.explain)) L.push(`### ${k}`, "", "```", String(v), "```", "");
  fs.mkdirSync(out, { recursive: true });
  const base = path.join(out, `${result.at.slice(0, 10)}.profile${label ? `.${label}` : ""}`);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
  fs.writeFileSync(`${base}.md`, L.join("\n"));
  log(`profile: wrote ${base}.json and .md`);
}

main().catch((e) => {
  log(`profile: ${e?.stack ?? e}`);
  process.exit(1);
});
