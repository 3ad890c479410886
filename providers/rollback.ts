/**
 * Rollback: returns the database to the unified model without losing anything the application wrote.
 *
 *   create  when Phase 3.5 is in place (v2 present, orgs in the multi model, or the allocation trigger): picks the
 *           latest verified backup that recorded v1, then (1) stops allocation, (2) switches orgs back in batches,
 *           credit_model alone, while v2 still serves both models: nothing is recomputed, because v2 kept the
 *           unified columns current while multi was applied (each batch counts the unified values it changed, and
 *           refuses when that is not 0: something else on the table rewrote them), and records what forward again
 *           needs (guardian.rolled_back_pools), (3) in one transaction: checks that no org is left multi, restores v1
 *           with its COMMENT, its grants (but anon and PUBLIC) and the catalogue's backed-up prices, checks the
 *           restored definition's md5 against the backup's, pins its search_path (sql/rollback/06_pin_v1.sql) unless
 *           guardian:rollback.function = verbatim (or installs the safe function instead), and journals 'rollback'.
 *           Every step is idempotent, so a rollback interrupted by a crash completes on the next run. When nothing
 *           was migrated it does nothing and says so.
 *   read    keeps the recorded result.
 *   diff    never changes once done, but for a rotated connection string, which is recorded in place (a new rollback
 *           is a new resource: the program only declares it in the unified model, so leaving and re-entering unified
 *           creates it again).
 *   delete  nothing: re-entering the multi model is the migration's job.
 * The backup schemas and the additive columns (and the per-pool log details) are kept.
 */
import { v1Facts } from "../lib/v1Behaviour";
import {
  connectionChanged,
  connectedResource,
  diffOf,
  errorCode,
  errorMessage,
  isLockConflict,
  journal,
  type Provider,
  type RecordedBy,
  recordConnection,
  recorded,
  type ResourceArgs,
  retriedTransaction,
  withConnection,
} from "./kernel";
import type { Connection, Db } from "./kernel";
import { walkPages, walkPlan } from "./pageWalk";

/** sql/rollback/*.sql, as text. */
export interface RollbackSql {
  stopAllocation: string;
  lockBatch: string;
  switchBatch: string;
  checkSwitch: string;
  pinV1: string;
  restoreV1: string;
  safeV1: string;
}

export interface RollbackInputs extends Connection {
  sql: RollbackSql;
  /** guardian:rollback.function: "v1" restores the backed-up v1 (pinned search_path); "verbatim" exactly as backed up;
   *  "safe" a locked, caller-checked function with v1's signature and result (sql/rollback/safe_v1.sql). */
  rollbackFunction: "v1" | "safe" | "verbatim";
  sqlSha256: string;
  batchSize: number;
  /** guardian:ddl: each transaction's lock timeout, and how many times it is retried on a lock conflict (default 10). */
  lockTimeoutMs: number;
  retries?: number;
}

/** What a rollback records beyond its inputs: the resource's outputs, declared once. */
export const ROLLBACK_OUTPUTS = {
  rolledBack: recorded<boolean>(),
  /** The verified backup v1 came from ("" when there was none). */
  backupId: recorded<string>(),
  /** Organizations switched back to the unified model (credit_model only; sql/rollback/03_switch_batch.sql). */
  orgsSwitched: recorded<number>(),
  /** Unified values (plan_name, total_credits, credits_remaining, cycle_end_date) the switch changed: 0, or it refuses. */
  unifiedValuesChanged: recorded<number>(),
  durationMs: recorded<number>(),
  v1DefinitionMd5: recorded<string>(),
  /** Checked in each switch's transaction and before v1 took over: no unified value changed, no organization left multi. */
  unifiedValuesKept: recorded<boolean>(),
  /** v1's search_path was pinned (ending with pg_temp); false only for guardian:rollback.function = verbatim or safe. */
  v1SearchPathPinned: recorded<boolean>(),
  /** credit_actions rows whose backed-up price was put back. */
  pricesRestored: recorded<number>(),
  /** "v1" (the backup's, pinned), "verbatim" (the backup's, unpinned) or "safe" (guardian:rollback.function). */
  functionRestored: recorded<"" | "v1" | "safe" | "verbatim">(),
  /** What the restored v1 does wrong (lib/v1Behaviour.ts), empty for the safe function. */
  v1Weaknesses: recorded<string[]>(),
};

export type RollbackOutputs = RollbackInputs & RecordedBy<typeof ROLLBACK_OUTPUTS>;

export type RollbackArgs = ResourceArgs<RollbackInputs>;

/** The latest verified backup that recorded v1, and v1 as it was. */
interface V1Backup {
  backup_id: string;
  def_md5: string;
  definition: string;
  acl: string | null;
}

/** sql/rollback/05_check_switch.sql's answer. */
interface SwitchCheck {
  checked: string | number;
  still_multi: string | number;
}

type Say = (s: string) => void;
/** One transaction of the rollback, saying what it waits for (lock_timeout and retries from guardian:ddl). */
type Tx = <T>(what: string, fn: () => Promise<T>) => Promise<T>;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

/** Where the database stands: v2, the model column, the allocation trigger, guardian.backups; orgs still multi. */
async function modelState(c: Db) {
  const state = (
    await c.query<{ v2: boolean; has_model: boolean; trigger: boolean; has_backups: boolean }>(`
    SELECT to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)') IS NOT NULL AS v2,
           EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('public.organization_credits')
                      AND attname = 'credit_model' AND NOT attisdropped) AS has_model,
           EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'guardian_allocate_on_write') AS trigger,
           to_regclass('guardian.backups') IS NOT NULL AS has_backups`)
  ).rows[0];
  const multiOrgs = state.has_model
    ? Number((await c.query<{ n: string }>(`SELECT count(*)::bigint n FROM public.organization_credits WHERE credit_model = 'multi'`)).rows[0].n)
    : 0;
  return { state, multiOrgs };
}

/** The latest verified backup that recorded v1 (its schema still there); refuses when there is none. */
async function latestV1Backup(c: Db): Promise<V1Backup> {
  const bk = (
    await c.query<V1Backup>(`
    SELECT b.backup_id, f ->> 'def_md5' AS def_md5, f ->> 'definition' AS definition, f ->> 'acl' AS acl
      FROM guardian.backups b CROSS JOIN LATERAL jsonb_array_elements(b.functions) f
     WHERE b.restore_verified AND f ->> 'signature' = 'consume_credits_rpc(uuid,text)'
       AND to_regnamespace(b.schema_name) IS NOT NULL
     ORDER BY b.created_at DESC LIMIT 1`)
  ).rows[0];
  if (!bk) throw new Error("rollback refused: no verified backup records the v1 consume_credits_rpc(uuid,text)");
  if (!/^guardian_backup_[0-9a-f_]+$/.test(bk.backup_id)) throw new Error(`rollback refused: unexpected backup schema name ${bk.backup_id}`);
  return bk;
}

/** Every multi organization switched back by credit_model alone, in batches of heap pages, each checked to change no
 *  unified value; returns how many were switched. */
async function switchBack(c: Db, inputs: RollbackInputs, tx: Tx, multiOrgs: number, started: number, say: Say): Promise<number> {
  // Batches are ranges of heap pages holding about batchSize multi orgs (never more than batchSize), walked in
  // physical order (providers/pageWalk.ts).
  let done = 0;
  let last = 0;
  const plan = await walkPlan(c, "multi", inputs.batchSize);
  await walkPages(
    c,
    "multi",
    inputs.batchSize,
    plan,
    async (from, to) => {
      const b = await tx(`locking the multi credit rows of public.organization_credits in heap pages [${from}, ${to})`, async () => {
        const r = await c.query<{ organization_id: string }>(inputs.sql.lockBatch, [from, to, inputs.batchSize]);
        const ids = r.rows.map((x) => x.organization_id);
        if (ids.length) {
          const sw = (await c.query<{ switched: number; unified_changed: number }>(inputs.sql.switchBatch, [ids])).rows[0];
          if (sw.unified_changed > 0) {
            throw new Error(
              `rollback: switching ${ids.length} org(s) back changed the unified values of ${sw.unified_changed} ` +
                "(plan_name, total_credits, credits_remaining or cycle_end_date): something else on public.organization_credits " +
                "(a trigger the program did not write?) rewrites them; nothing of this batch was switched (v2 keeps serving)",
            );
          }
        }
        return { locked: ids.length };
      });
      done += b.locked;
      if (Date.now() - last > 2000) {
        last = Date.now();
        say(
          `${fmt(done)}/${fmt(multiOrgs)} orgs switched back (${Math.floor((100 * done) / Math.max(1, multiOrgs))}%), ${fmt(done / ((Date.now() - started) / 1000))} orgs/s`,
        );
      }
      return b;
    },
    (pass, left) => say(`pass ${pass} done; ${fmt(left)} orgs still multi (moved behind the walk by concurrent calls), another pass`),
    "rollback",
  );
  return done;
}

/** In one transaction: no organization left multi, then v1 restored from the backup (checked against its md5) and
 *  pinned, or the safe function installed; journaled. */
async function restoreV1(c: Db, inputs: RollbackInputs, tx: Tx, bk: V1Backup, done: number, say: Say) {
  const safe = inputs.rollbackFunction === "safe";
  const pin = inputs.rollbackFunction === "v1";
  return tx("replacing consume_credits_rpc with v1 (locks the function and public.organization_credits)", async () => {
    // Before v1 takes over: v2 still serves every call under its row lock.
    const chk = (await c.query<SwitchCheck>(inputs.sql.checkSwitch)).rows[0];
    if (Number(chk.still_multi) > 0) {
      throw new Error(`rollback: ${chk.still_multi} org(s) are still multi after the switch; v1 not restored (v2 keeps serving). Run the rollback again.`);
    }
    say(`switch checked before v1 takes over: ${fmt(Number(chk.checked))} orgs unified, no unified value changed`);
    await c.query(`SELECT set_config('guardian.rollback_backup', $1, true)`, [bk.backup_id]);
    await c.query(inputs.sql.restoreV1);
    const prices = Number((await c.query<{ n: string | null }>(`SELECT current_setting('guardian.rollback_prices_restored', true) AS n`)).rows[0].n ?? 0);
    let md5 = await v1Md5(c);
    if (md5 !== bk.def_md5) throw new Error(`rollback: restored v1 definition md5 ${md5} differs from the backup's ${bk.def_md5}`);
    if (safe) {
      await c.query(inputs.sql.safeV1);
      md5 = await v1Md5(c);
    } else if (pin) {
      await c.query(inputs.sql.pinV1);
      md5 = await v1Md5(c); // the definition as it now is: the backup's, plus the pinned search_path
    }
    const definition = (await c.query<{ d: string }>(`SELECT pg_get_functiondef('public.consume_credits_rpc(uuid,text)'::regprocedure) AS d`)).rows[0].d;
    await journal(c, {
      step: "rollback",
      objectName: bk.backup_id,
      details: {
        orgsSwitched: done,
        unifiedValuesChanged: 0,
        v1DefinitionMd5: md5,
        v1SearchPathPinned: pin,
        orgsChecked: Number(chk.checked),
        pricesRestored: prices,
        function: inputs.rollbackFunction,
      },
    });
    return { md5, prices, definition };
  });
}

async function rollback(inputs: RollbackInputs): Promise<RollbackOutputs> {
  const say = (s: string) => console.log(`rollback: ${s}`);
  const started = Date.now();
  return withConnection(inputs, "rollback", async (c) => {
    // Every transaction of the rollback: lock_timeout and retries from guardian:ddl.
    // Each transaction says what it waits for: a lock conflict is retried as "rollback: <what>: lock not available",
    // and the last one fails naming it, not only "canceling statement due to lock timeout".
    const tx: Tx = (what, fn) =>
      retriedTransaction(c, inputs, `rollback: ${what}`, {}, fn).catch((e: unknown) => {
        if (isLockConflict(e)) throw Object.assign(new Error(`rollback: ${what}: ${errorMessage(e)} (guardian:ddl retries exhausted)`), { code: errorCode(e) });
        throw e;
      });
    const { state, multiOrgs } = await modelState(c);
    if (!state.v2 && multiOrgs === 0 && !state.trigger) {
      say("nothing to roll back: the database is in the unified model");
      return {
        ...inputs,
        rolledBack: false,
        backupId: "",
        orgsSwitched: 0,
        unifiedValuesChanged: 0,
        durationMs: Date.now() - started,
        v1DefinitionMd5: "",
        unifiedValuesKept: true,
        v1SearchPathPinned: false,
        pricesRestored: 0,
        functionRestored: "",
        v1Weaknesses: [],
      };
    }
    if (!state.has_backups) throw new Error("rollback refused: Phase 3.5 objects are present but guardian.backups is missing, so there is no v1 to restore");
    const bk = await latestV1Backup(c);
    say(
      `rolling back to the unified model using backup ${bk.backup_id}; ${fmt(multiOrgs)} orgs to switch back ` +
        "(credit_model only: their unified balances were kept current while multi was applied)",
    );

    await tx("dropping the allocation trigger on public.organization_credits", () => c.query(inputs.sql.stopAllocation));
    const done = await switchBack(c, inputs, tx, multiOrgs, started, say);
    const safe = inputs.rollbackFunction === "safe";
    const pin = inputs.rollbackFunction === "v1";
    const restored = await restoreV1(c, inputs, tx, bk, done, say);
    const durationMs = Date.now() - started;
    const weaknesses = safe ? [] : v1Facts(restored.definition, bk.acl).weaknesses;
    say(
      `done: ${fmt(done)} orgs switched back, no unified value changed, ` +
        `${safe ? "the safe unified function installed" : pin ? "v1 restored with a pinned search_path" : "v1 restored VERBATIM (unpinned search_path, as asked)"} ` +
        `(definition md5 ${restored.md5}), ${restored.prices} price(s) restored from the backup, ${(durationMs / 1000).toFixed(1)} s`,
    );
    for (const w of weaknesses) say(`v1 is back, and with it: ${w}`);
    return {
      ...inputs,
      rolledBack: true,
      backupId: bk.backup_id,
      orgsSwitched: done,
      unifiedValuesChanged: 0,
      durationMs,
      v1DefinitionMd5: restored.md5,
      unifiedValuesKept: true,
      v1SearchPathPinned: pin,
      pricesRestored: restored.prices,
      functionRestored: inputs.rollbackFunction,
      v1Weaknesses: weaknesses,
    };
  });
}

/** md5 of consume_credits_rpc(uuid,text)'s definition as the server prints it. */
async function v1Md5(c: Db): Promise<string> {
  return (await c.query<{ m: string }>(`SELECT md5(pg_get_functiondef('public.consume_credits_rpc(uuid,text)'::regprocedure)) AS m`)).rows[0].m;
}

export const rollbackProvider: Provider<RollbackInputs, RollbackOutputs> = {
  async diff(_id, olds, news) {
    // Done once; only a rotated connection string (or new TLS settings) is recorded (in place), so later reads use it.
    // Nothing else is compared: not guardian:ddl (lockTimeoutMs, retries), which a stack recorded before it had
    // retries lacks.
    return diffOf(connectionChanged(olds, news) ? ["databaseUrl"] : []);
  },
  async update(_id, olds, news) {
    return { outs: recordConnection(olds, news) };
  },
  async create(inputs) {
    const outs = await rollback(inputs);
    return { id: `rollback:${outs.backupId || "none"}:${Date.now()}`, outs };
  },
  async read(id, props) {
    return { id, props };
  },
  async delete() {},
};

/** Type token: pulumi-nodejs:dynamic/guardian:Rollback. */
export const RollbackRun = connectedResource<RollbackInputs, typeof ROLLBACK_OUTPUTS, RollbackArgs>(rollbackProvider, "Rollback", ROLLBACK_OUTPUTS);
export type RollbackRun = InstanceType<typeof RollbackRun>;
