/** What every bench of bench/run.ts shares: its arguments, logging, number formats, a timer and one-off SQL. */
import { connect } from "../lib/db";
import { type BenchCaller } from "./rpc";

/** npm run bench's arguments, parsed (bench/run.ts toArgs). */
export interface Args {
  sizes: number[];
  quick: boolean;
  zeroDowntime: boolean;
  rpcOnly: boolean;
  crmReads: boolean;
  watchReading: boolean;
  rpcRounds: number;
  out: string;
  consumers: number;
  rpcSeconds: number;
  rpcCaller: BenchCaller;
  rpcOrgs: number;
  json: boolean;
}

export const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
export const secs = (ms: number) => Math.round(ms / 10) / 100;
export const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
export const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

export async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = Date.now();
  const r = await fn();
  return [r, Date.now() - t0];
}

export async function sql<T = any>(url: string, q: string, params: unknown[] = []): Promise<T[]> {
  const c = await connect(url);
  try {
    return (await c.query(q, params as any[])).rows;
  } finally {
    await c.end();
  }
}
