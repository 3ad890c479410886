/** What the bench samples beside a run: the consumers' lock waits (pg_locks), the event loop's lag, the server's load. */
import { connect } from "../lib/db";
import { round } from "./common";

// ---------------------------------------------------------------------------------------------------------------
// Lock waits of the consumers, sampled

export interface LockWaits {
  samples: number;
  /** Longest wait seen, ms, and who held the lock then. */
  maxMs: number;
  maxBlocker: string | null;
  /** Longest wait per blocking application. */
  byBlocker: Record<string, number>;
  /** Per sample instant, the longest lock wait (for windows). */
  series: { at: number; ms: number; blocker: string }[];
  /** Per sample instant, the consumer call running longest on the server, and what it was waiting for. */
  running: { at: number; ms: number; wait: string }[];
}

/**
 * Polls the server every `everyMs`: the consumer call running longest (pg_stat_activity: how long, and its wait
 * event: Lock, LWLock, IO, or none = on CPU) and the longest lock wait of a consumer (pg_locks.waitstart, PostgreSQL
 * 14+) with the application holding the lock. A slow call the server never saw running was slow in the client.
 */
export function lockSampler(url: string, everyMs = 20) {
  const out: LockWaits = { samples: 0, maxMs: 0, maxBlocker: null, byBlocker: {}, series: [], running: [] };
  let stop = false;
  const done = (async () => {
    const c = await connect(url, { application_name: "guardian-bench-sampler" });
    try {
      while (!stop) {
        const r = await c.query(`
          SELECT extract(epoch FROM clock_timestamp() - a.query_start) * 1000 AS running_ms,
                 coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU') AS wait,
                 extract(epoch FROM clock_timestamp() - l.waitstart) * 1000 AS lock_ms,
                 (SELECT string_agg(DISTINCT coalesce(nullif(b.application_name, ''), b.usename::text), ',')
                    FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(a.pid))) AS blocker
            FROM pg_stat_activity a
            LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted AND l.waitstart IS NOT NULL
           WHERE a.application_name LIKE 'guardian-consumer-%' AND a.application_name NOT LIKE '%-witness' AND a.state = 'active'
           ORDER BY 1 DESC LIMIT 1`);
        out.samples++;
        if (r.rows.length) {
          const x = r.rows[0];
          const at = Date.now();
          out.running.push({ at, ms: Number(x.running_ms), wait: x.wait });
          if (x.lock_ms !== null) {
            const ms = Number(x.lock_ms);
            const blocker = x.blocker ?? "?";
            out.series.push({ at, ms, blocker });
            out.byBlocker[blocker] = Math.max(out.byBlocker[blocker] ?? 0, round(ms, 1));
            if (ms > out.maxMs) {
              out.maxMs = ms;
              out.maxBlocker = blocker;
            }
          }
        }
        await new Promise((res) => setTimeout(res, everyMs));
      }
    } finally {
      await c.end().catch(() => undefined);
    }
  })();
  return {
    waits: out,
    async stop(): Promise<LockWaits> {
      stop = true;
      await done;
      out.maxMs = round(out.maxMs, 1);
      return out;
    },
  };
}

export function waitsIn(w: LockWaits, from: number, to: number) {
  const inWin = w.series.filter((s) => s.at >= from && s.at <= to);
  const top = inWin.reduce((m, s) => (s.ms > m.ms ? s : m), { ms: 0, blocker: null as string | null, at: 0 });
  const run = w.running.filter((s) => s.at >= from && s.at <= to).reduce((m, s) => (s.ms > m.ms ? s : m), { ms: 0, wait: "", at: 0 });
  return { maxMs: round(top.ms, 1), blocker: top.blocker, longestRunningMs: round(run.ms, 1), longestRunningWait: run.wait || null };
}

/** How late the bench's own event loop ran timers (a stall there delays every consumer's measured call). */
export function loopLag(everyMs = 10) {
  const series: { at: number; ms: number }[] = [];
  let last = Date.now();
  const h = setInterval(() => {
    const now = Date.now();
    series.push({ at: now, ms: Math.max(0, now - last - everyMs) });
    last = now;
  }, everyMs);
  return {
    stop: () => clearInterval(h),
    maxIn: (from: number, to: number) => series.filter((s) => s.at >= from && s.at <= to).reduce((m, s) => Math.max(m, s.ms), 0),
  };
}

/** The server's WAL and checkpoint counters (cluster-wide, so they include every client's writes). The WAL's bytes
 *  are read off its insert position, which is exact at any moment; the images from pg_stat_wal, to which each session
 *  adds its own at most once a second, when idle (pg_stat_force_next_flush makes the next time immediate). */
export const WAL_COUNTERS_SQL = `
  SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0') AS wal_bytes, w.wal_fpi,
         b.checkpoints_timed + b.checkpoints_req AS ckpt, b.buffers_checkpoint, b.buffers_backend
    FROM pg_stat_wal w, pg_stat_bgwriter b`;

/** A row of WAL_COUNTERS_SQL as numbers. */
export function walCountersOf(r: Record<string, unknown>) {
  return {
    checkpoints: Number(r.ckpt),
    buffersCheckpoint: Number(r.buffers_checkpoint),
    buffersBackend: Number(r.buffers_backend),
    walBytes: Number(r.wal_bytes),
    walFpi: Number(r.wal_fpi),
  };
}

/** What the counters of walCountersOf rose by from `a` to `b`. */
export function walCountersBetween(a: ReturnType<typeof walCountersOf>, b: ReturnType<typeof walCountersOf>) {
  return {
    checkpoints: b.checkpoints - a.checkpoints,
    buffersCheckpoint: b.buffersCheckpoint - a.buffersCheckpoint,
    buffersBackend: b.buffersBackend - a.buffersBackend,
    walBytes: b.walBytes - a.walBytes,
    walFpi: b.walFpi - a.walFpi,
  };
}

/** What else the server is doing, every `everyMs`: autovacuum workers (and on what), the checkpointer's counters, and
 *  the WAL written (bytes, and how many of its records were full-page images: the first change of a page after each
 *  checkpoint logs the whole page). */
export function backgroundSampler(adminUrl: string, everyMs = 500) {
  const series: ({ at: number; autovacuum: string[] } & ReturnType<typeof walCountersOf>)[] = [];
  let stop = false;
  const done = (async () => {
    const c = await connect(adminUrl, { application_name: "guardian-bench-background" });
    try {
      while (!stop) {
        const r = (
          await c.query(`
          SELECT coalesce((SELECT array_agg(DISTINCT regexp_replace(query, '^autovacuum: ', '')) FROM pg_stat_activity
                            WHERE backend_type = 'autovacuum worker' AND query <> ''), '{}') AS av, k.*
            FROM (${WAL_COUNTERS_SQL}) k`)
        ).rows[0];
        series.push({ at: Date.now(), autovacuum: r.av, ...walCountersOf(r) });
        await new Promise((res) => setTimeout(res, everyMs));
      }
    } finally {
      await c.end().catch(() => undefined);
    }
  })();
  return {
    async stop() {
      stop = true;
      await done;
    },
    /** During [from, to]: checkpoints started, buffers written by checkpoints and by backends, WAL bytes and
     *  full-page images written, autovacuum seen. */
    during(from: number, to: number) {
      const w = series.filter((x) => x.at >= from && x.at <= to);
      if (w.length < 2)
        return { checkpoints: 0, buffersCheckpoint: 0, buffersBackend: 0, walBytes: 0, walFpi: 0, autovacuum: [] as string[], autovacuumSamples: 0 };
      const a = w[0];
      const b = w[w.length - 1];
      return {
        ...walCountersBetween(a, b),
        autovacuum: [...new Set(w.flatMap((x) => x.autovacuum))].sort(),
        autovacuumSamples: w.filter((x) => x.autovacuum.length > 0).length,
      };
    },
  };
}
