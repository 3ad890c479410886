/**
 * Seed throughput: for each size, a fresh database on the server of `adminUrl`, `seed()` with --seed 1 (baseline
 * creation included), then the database is dropped. Returns one measurement per size.
 *
 *   ts-node --transpile-only bench/seed.ts [ADMIN_URL] [SIZE ...]      (defaults: the local server, 100000)
 */
import * as crypto from "crypto";
import { redactUrl } from "../lib/db";
import { createDatabase, dropDatabase } from "../operations/shared/pgserver";
import { seed } from "../operations/seed";

export interface SeedBenchResult {
  orgs: number;
  /** Wall time of seed(): connection, baseline and every batch. */
  seconds: number;
  orgsPerSecond: number;
  profiles: number;
  logs: number;
}

export async function benchSeed(adminUrl: string, sizes: number[], log: (line: string) => void = () => undefined): Promise<SeedBenchResult[]> {
  const results: SeedBenchResult[] = [];
  for (const orgs of sizes) {
    const name = `gb_seed_${crypto.randomBytes(4).toString("hex")}`;
    const url = await createDatabase(adminUrl, name); // marked: only a marked database is ever dropped (operations/shared/pgserver.ts)
    try {
      const started = process.hrtime.bigint();
      const r = await seed({ databaseUrl: url, orgs, seed: 1, log });
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      results.push({
        orgs,
        seconds: Math.round(seconds * 1000) / 1000,
        orgsPerSecond: Math.round(orgs / seconds),
        profiles: r.profiles.user + r.profiles.admin + r.profiles.super_admin,
        logs: r.logs.success + r.logs.failed,
      });
    } finally {
      await dropDatabase(adminUrl, name);
    }
  }
  return results;
}

if (require.main === module) {
  const [url = "postgres://postgres@127.0.0.1:5432/postgres", ...rest] = process.argv.slice(2);
  const sizes = rest.length ? rest.map(Number) : [100_000];
  process.stderr.write(`bench seed: ${redactUrl(url)}, sizes ${sizes.join(", ")}\n`);
  benchSeed(url, sizes, (l) => process.stderr.write(`${l}\n`))
    .then((r) => console.log(JSON.stringify(r, null, 2)))
    .catch((e) => {
      console.error(`bench seed: ${e.message}`);
      process.exit(1);
    });
}
