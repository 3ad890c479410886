/**
 * The application around the credits, played beside the migration (contract: "The application around the credits
 * keeps working"): what the CRM's backend and users do with these tables besides consuming, as the real roles, while
 * the stack goes up (multi) -> rollback (unified) -> forward again. Used by test/application-fleet.test.ts, beside the
 * consumer fleet of harness/consumerFleet.ts (the zero-downtime load) on organizations of its own.
 *
 * Each worker owns its organizations alone (as the consumer fleet does: v1 is racy by design), so every organization's
 * story is a sequence, and the oracle is exact: it records every write as the application meant it and every
 * success's unified cost (read from the call's log row), and says what credits_remaining, plan_name and total_credits
 * must hold. The backend (service_role) upgrades, downgrades, resets a cycle, grants and refunds credits, and consumes
 * through both signatures; a member (authenticated, its JWT claims) edits its own profile's name and reads its
 * organization's credits. Every write's RETURNING is compared with the oracle at once, and every member read.
 * Whatever the migration does to these rows in between (a backfill batch, a switch) must leave them as the oracle says.
 */
import type { Client } from "pg";
import { connect } from "../lib/db";
import { FLEET_ACTIONS } from "./consumerFleet";
import { PauseGate } from "./pauseGate";

export interface AppOrg {
  organization_id: string;
  /** A member of the organization (its profile), when it has one: plays the member's part. */
  member?: string;
}

export interface AppFleetOptions {
  url: string;
  orgs: AppOrg[];
  workers: number;
  random: () => number;
  /** Pause between steps of one worker, ms (default 5). */
  thinkMs?: number;
  /** Plans to move organizations between: name -> total_credits. */
  plans: Record<string, number>;
  /** The profile column a member edits (full_name in the CRM; the seed's profiles have email). */
  nameColumn: "full_name" | "email";
}

export interface OracleRow {
  plan_name: string;
  total_credits: number;
  credits_remaining: number;
}

export interface AppReport {
  steps: Record<string, number>;
  /** A write whose result differed from the oracle, a member who could not do what it did before, an error. */
  failures: string[];
}

interface Worker {
  svc: Client;
  user: Client;
  orgs: AppOrg[];
  stopped: boolean;
  loop?: Promise<void>;
}

export class ApplicationFleet {
  readonly oracle = new Map<string, OracleRow>();
  readonly report: AppReport = { steps: {}, failures: [] };
  private workers: Worker[] = [];
  private readonly gate = new PauseGate();

  constructor(private readonly o: AppFleetOptions) {}

  async start(): Promise<void> {
    const c = await connect(this.o.url);
    try {
      const rows = await c.query(
        `SELECT organization_id::text, plan_name, total_credits, credits_remaining FROM public.organization_credits WHERE organization_id = ANY ($1::uuid[])`,
        [this.o.orgs.map((x) => x.organization_id)],
      );
      for (const r of rows.rows)
        this.oracle.set(r.organization_id, { plan_name: r.plan_name, total_credits: r.total_credits, credits_remaining: r.credits_remaining });
    } finally {
      await c.end();
    }
    for (let i = 0; i < this.o.workers; i++) {
      const svc = await connect(this.o.url, { application_name: `guardian-app-${i}` });
      await svc.query("SET ROLE service_role");
      await svc.query(`SELECT set_config('request.jwt.claims', '{"role": "service_role"}', false)`);
      const user = await connect(this.o.url, { application_name: `guardian-app-${i}-member` });
      this.workers.push({ svc, user, orgs: this.o.orgs.filter((o, k) => k % this.o.workers === i && this.oracle.has(o.organization_id)), stopped: false });
    }
    for (const w of this.workers) w.loop = this.run(w);
  }

  /** Stops between steps and waits for the steps in flight. */
  pause(): Promise<void> {
    return this.gate.pause();
  }

  resume(): void {
    this.gate.resume();
  }

  async stop(): Promise<AppReport> {
    for (const w of this.workers) w.stopped = true;
    this.resume();
    await Promise.all(this.workers.map((w) => w.loop));
    await Promise.all(this.workers.flatMap((w) => [w.svc.end().catch(() => undefined), w.user.end().catch(() => undefined)]));
    return this.report;
  }

  /** Every organization as the oracle says it must be, against the database now (call paused). */
  async check(url: string): Promise<string[]> {
    const c = await connect(url);
    const out: string[] = [];
    try {
      const rows = await c.query(
        `SELECT organization_id::text, plan_name, total_credits, credits_remaining FROM public.organization_credits WHERE organization_id = ANY ($1::uuid[])`,
        [[...this.oracle.keys()]],
      );
      const seen = new Set<string>();
      for (const r of rows.rows) {
        seen.add(r.organization_id);
        const want = this.oracle.get(r.organization_id)!;
        const have: OracleRow = { plan_name: r.plan_name, total_credits: r.total_credits, credits_remaining: r.credits_remaining };
        if (JSON.stringify(have) !== JSON.stringify(want))
          out.push(`${r.organization_id}: ${JSON.stringify(have)}, the application wrote ${JSON.stringify(want)}`);
      }
      for (const org of this.oracle.keys()) if (!seen.has(org)) out.push(`${org}: its credit row is gone`);
    } finally {
      await c.end();
    }
    return out;
  }

  private fail(what: string): void {
    if (this.report.failures.length < 50) this.report.failures.push(what);
  }

  private count(step: string): void {
    this.report.steps[step] = (this.report.steps[step] ?? 0) + 1;
  }

  private async run(w: Worker): Promise<void> {
    const rnd = this.o.random;
    const plans = Object.entries(this.o.plans);
    while (!w.stopped) {
      if (await this.gate.waited()) continue;
      if (!w.orgs.length) return;
      // true: the step was the member's, or none: go on without the pause between steps.
      const again = await this.gate.step(async () => {
        try {
          const org = w.orgs[Math.floor(rnd() * w.orgs.length)];
          const id = org.organization_id;
          const want = this.oracle.get(id)!;
          const r = rnd();
          if (r < 0.4) {
            // Consumption, with the two-argument signature every version has.
            const action = FLEET_ACTIONS[Math.floor(rnd() * FLEET_ACTIONS.length)];
            const res = (await w.svc.query(`SELECT public.consume_credits_rpc($1::uuid, $2) AS r`, [id, action])).rows[0].r;
            if (res?.success) {
              const [log] = (
                await w.svc.query(
                  `SELECT credits_consumed FROM public.credit_consumption_logs WHERE organization_id = $1 AND success ORDER BY id DESC LIMIT 1`,
                  [id],
                )
              ).rows;
              want.credits_remaining = Math.max(0, want.credits_remaining - Number(log.credits_consumed));
            }
            this.count(res?.success ? "consume (served)" : "consume (refused)");
          } else {
            let sql: string;
            let step: string;
            let params: unknown[] = [id];
            if (r < 0.5) {
              const [plan, total] = plans[Math.floor(rnd() * plans.length)];
              step = "plan change";
              sql = `UPDATE public.organization_credits SET plan_name = $2, total_credits = $3, credits_remaining = $3 WHERE organization_id = $1`;
              params = [id, plan, total];
              Object.assign(want, { plan_name: plan, total_credits: total, credits_remaining: total });
            } else if (r < 0.6) {
              step = "cycle reset";
              sql = `UPDATE public.organization_credits SET credits_remaining = total_credits, cycle_start_date = now(), cycle_end_date = now() + interval '30 days' WHERE organization_id = $1`;
              want.credits_remaining = want.total_credits;
            } else if (r < 0.7) {
              step = "grant";
              sql = `UPDATE public.organization_credits SET credits_remaining = credits_remaining + 100 WHERE organization_id = $1`;
              want.credits_remaining += 100;
            } else if (r < 0.8) {
              step = "refund";
              sql = `UPDATE public.organization_credits SET credits_remaining = credits_remaining + 3 WHERE organization_id = $1`;
              want.credits_remaining += 3;
            } else if (org.member) {
              // The member: edits its own profile's name, then reads its organization's credits.
              await w.user.query("BEGIN");
              try {
                await w.user.query(`SELECT set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: org.member, role: "authenticated" })]);
                await w.user.query("SET LOCAL ROLE authenticated");
                const edit = await w.user.query(`UPDATE public.profiles SET ${this.o.nameColumn} = 'member' || $1 || '@example.com' WHERE id = auth.uid()`, [
                  String(Math.floor(rnd() * 1000)),
                ]);
                if (edit.rowCount !== 1) this.fail(`${id}: the member's own profile edit changed ${edit.rowCount} rows`);
                const read = await w.user.query(`SELECT credits_remaining FROM public.organization_credits WHERE organization_id = $1`, [id]);
                if (read.rows.length !== 1) this.fail(`${id}: the member reads ${read.rows.length} rows of its organization's credits`);
                else if (read.rows[0].credits_remaining !== want.credits_remaining)
                  this.fail(`${id}: the member reads credits_remaining ${read.rows[0].credits_remaining}, the application wrote ${want.credits_remaining}`);
                await w.user.query("COMMIT");
              } catch (e) {
                await w.user.query("ROLLBACK").catch(() => undefined);
                throw e;
              }
              this.count("member edits its profile and reads its credits");
              return true;
            } else {
              return true;
            }
            const res = await w.svc.query(`${sql} RETURNING plan_name, total_credits, credits_remaining`, params);
            const got = res.rows[0];
            if (!got) this.fail(`${id}: ${step} reached no row`);
            else if (got.credits_remaining !== want.credits_remaining || got.total_credits !== want.total_credits || got.plan_name !== want.plan_name)
              this.fail(`${id}: ${step} returned ${JSON.stringify(got)}, the application wrote ${JSON.stringify(want)}`);
            this.count(step);
          }
        } catch (e: any) {
          this.fail(`${e?.code ?? ""} ${e?.message ?? e}`);
        }
        return false;
      });
      if (again) continue;
      if (this.o.thinkMs ?? 5) await new Promise((r) => setTimeout(r, this.o.thinkMs ?? 5));
    }
  }
}
