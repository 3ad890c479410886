/**
 * Bad input, a table of it. Each row is one input a person or a caller can get wrong, and what must happen: a clear
 * error (the exact fragments below: they name the key or the object) and nothing half-written, proven by a
 * fingerprint of the database's catalog and of every table's rows (test/helpers/fingerprint.ts) taken before and
 * after, and, for the rows that go through the engine, by a stack state that holds no resource.
 *
 * Bad config values are validated in-process by the program's own parseConfig, once one engine row has shown that
 * such an error fails the update and writes nothing. The tables are data; the tests are generated from them. Rows that need a choreography of their own (a concurrent
 * second `pulumi up`, a SQL-looking idempotency key that is accepted as data) follow the tables.
 */
import * as crypto from "crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GuardianConfigError, parseConfig } from "../lib/config";
import { asUser, type TestDb } from "./helpers/db";
import { diffFingerprints, fingerprint } from "./helpers/fingerprint";
import { orgs, seededDb } from "./helpers/migration";
import { refusingServer } from "./helpers/refusingServer";
import { collect, testStack, type TestStack } from "../harness/stack";

const SECRET = "s3cr3t-pw";
const SQLISH = "'; DROP TABLE credit_actions; --";

// ---------------------------------------------------------------------------------------------------------------
// Input -> expected error, through the real engine (`pulumi up` on a stack whose other settings are valid and whose
// database has the baseline and 20 seeded organizations, unless the row says otherwise).

interface EngineRow {
  input: string;
  /** Stack config (namespace guardian) on top of creditModel=multi and a databaseUrl pointing at the row's database. */
  config?: Record<string, unknown>;
  /** A databaseUrl other than the row's database (given the row's database and the fake server's port). */
  databaseUrl?: (ctx: { db: TestDb; refusingPort: number }) => string;
  /** Changes the row's database before the run (a missing baseline table). */
  prepare?: (db: TestDb) => Promise<void>;
  /** Fragments the error must contain, exactly. */
  error: string[];
  /** Text that must not appear anywhere in the output (secrets). */
  never?: string[];
}

const ENGINE_ROWS: EngineRow[] = [
  {
    input: "guardian:databaseUrl malformed (no ://), with a password in it",
    databaseUrl: () => `postgres//guardian:${SECRET}@db.internal:5432/guardian`,
    error: ["invalid guardian configuration:", "guardian:databaseUrl: expected a postgres:// or postgresql:// connection string"],
    never: [SECRET, "db.internal"],
  },
  {
    input: "wrong password (a server that asks for one and refuses it, SQLSTATE 28P01)",
    databaseUrl: ({ refusingPort }) => `postgres://guardian:${SECRET}@127.0.0.1:${refusingPort}/guardian`,
    error: [
      "NO-GO: 1 gate failed:",
      "connection: cannot connect to the Guardian database at postgres://guardian:***@127.0.0.1:",
      "password authentication failed [28P01]",
    ],
    never: [SECRET],
  },
  {
    input: "unreachable host (a closed port on 127.0.0.1)",
    databaseUrl: () => `postgres://guardian:${SECRET}@127.0.0.1:1/guardian`,
    error: [
      "NO-GO: 1 gate failed:",
      "connection: cannot connect to the Guardian database at postgres://guardian:***@127.0.0.1:1/guardian: connection refused (is the server running and listening there?) [ECONNREFUSED]",
    ],
    never: [SECRET],
  },
  {
    input: "guardian:backfill.batchSize of the wrong type (a string)",
    config: { backfill: { batchSize: "ten" } },
    error: ["invalid guardian configuration:", 'guardian:backfill.batchSize: Invalid input: expected number, received string, got "ten"'],
  },
  {
    input: "a database missing a baseline table (public.credit_consumption_logs)",
    prepare: (db) => db.query(`DROP TABLE public.credit_consumption_logs`).then(() => undefined),
    error: ["NO-GO: 1 gate failed:", "baseline: table public.credit_consumption_logs is missing"],
  },
];

// ---------------------------------------------------------------------------------------------------------------
// Bad values in the stack's config, validated in-process by parseConfig, the validation index.ts runs before it
// declares anything: the engine row above (guardian:backfill.batchSize) proves that such an error fails the update
// with this message and writes nothing, so these rows need no engine run of their own.

interface ConfigRow {
  input: string;
  config: Record<string, unknown>;
  /** Fragments the error must contain, exactly. */
  error: string[];
}

const CONFIG_ROWS: ConfigRow[] = [
  {
    input: "guardian:split shares summing to more than 1",
    config: { split: { ai: 0.5, whatsapp: 0.3, email: 0.3, sms: 0 } },
    error: ['guardian:split: shares must sum to at most 1, got {"ai":0.5,"whatsapp":0.3,"email":0.3,"sms":0}'],
  },
  {
    input: "guardian:split with one share over 1",
    config: { split: { ai: 1.5, whatsapp: 0, email: 0, sms: 0 } },
    error: ["guardian:split.ai: Too big: expected number to be <=1, got 1.5", "guardian:split: shares must sum to at most 1"],
  },
  {
    input: "a negative allocation in guardian:plans",
    config: { plans: { starter: { priceEur: 19, ai: -200, whatsapp: 150, email: 1000, sms: 50 } } },
    error: ["guardian:plans.starter.ai: Too small: expected number to be >=0, got -200"],
  },
  {
    input: "an unknown pool name in guardian:split",
    config: { split: { ai: 0.4, whatsapp: 0.3, email: 0.2, sms: 0, voice: 0.1 } },
    error: ["guardian:split.voice: unknown key (pools are ai, whatsapp, email, sms)"],
  },
  {
    input: "an unknown pool name in an action of guardian:actions",
    config: { actions: { ai_chat: { creditsCost: 1, ai: 1, voice: 1 } } },
    error: ["guardian:actions.ai_chat.voice: unknown key (pools are ai, whatsapp, email, sms)"],
  },
];

// ---------------------------------------------------------------------------------------------------------------
// Input -> expected answer of the RPC, called as service_role on a migrated database. Every row must leave the
// database exactly as it was (no debit, no log row, catalogue unchanged): refusals of the first four checks write
// nothing (contract: INVALID_QUANTITY, UNKNOWN_ACTION, NO_CREDIT_ACCOUNT), and arguments that are not of the
// parameter's type never reach the function.

type Answer = { result: Record<string, unknown> } | { sqlstate: string; message: string };
interface RpcRow {
  input: string;
  sql: "rpc2" | "rpc3" | "rpc4" | "batch";
  /** Arguments after the organization id ($1, given by `org`). */
  args: unknown[];
  /** The organization: a real one (default), NULL, or a literal. */
  org?: null | string;
  expect: Answer;
}

// Every refusal also carries v1's fields (nothing known to show: 0; an unknown account: the cost it would have had).
const V1_NONE = { remaining_credits: 0, required_credits: 0 };
const INVALID_QUANTITY = { success: false, error_code: "INVALID_QUANTITY", error: "quantity must be an integer from 1 to 100000", ...V1_NONE };
const UNKNOWN_ACTION = { success: false, error_code: "UNKNOWN_ACTION", error: "unknown action type", ...V1_NONE };
const NO_CREDIT_ACCOUNT = {
  success: false,
  error_code: "NO_CREDIT_ACCOUNT",
  error: "the organization has no credit account",
  remaining_credits: 0,
  required_credits: 1,
};
const BAD_BATCH = {
  success: false,
  error_code: "INVALID_QUANTITY",
  error: 'p_actions must be a JSON array of 1 to 100 {"action_type", "quantity"} objects',
  ...V1_NONE,
};

const RPC_ROWS: RpcRow[] = [
  { input: "organization id NULL", sql: "rpc2", org: null, args: ["ai_chat"], expect: { result: NO_CREDIT_ACCOUNT } },
  {
    input: "organization id that is not a uuid",
    sql: "rpc2",
    org: "not-a-uuid",
    args: ["ai_chat"],
    expect: { sqlstate: "22P02", message: 'invalid input syntax for type uuid: "not-a-uuid"' },
  },
  {
    input: "organization id of no organization",
    sql: "rpc2",
    org: "00000000-0000-0000-0000-000000000000",
    args: ["ai_chat"],
    expect: { result: NO_CREDIT_ACCOUNT },
  },
  { input: "action type NULL", sql: "rpc2", args: [null], expect: { result: UNKNOWN_ACTION } },
  { input: "action type that looks like SQL", sql: "rpc2", args: [SQLISH], expect: { result: UNKNOWN_ACTION } },
  { input: "quantity NULL", sql: "rpc3", args: ["ai_chat", null], expect: { result: INVALID_QUANTITY } },
  { input: "quantity negative (-1)", sql: "rpc3", args: ["ai_chat", -1], expect: { result: INVALID_QUANTITY } },
  { input: "quantity 0", sql: "rpc3", args: ["ai_chat", 0], expect: { result: INVALID_QUANTITY } },
  { input: "quantity huge (1e6)", sql: "rpc3", args: ["ai_chat", 1_000_000], expect: { result: INVALID_QUANTITY } },
  { input: "quantity 2^31 - 1 (the largest integer)", sql: "rpc3", args: ["ai_chat", 2 ** 31 - 1], expect: { result: INVALID_QUANTITY } },
  {
    input: "quantity 2^31 (beyond integer)",
    sql: "rpc3",
    args: ["ai_chat", 2 ** 31],
    expect: { sqlstate: "22003", message: 'value "2147483648" is out of range for type integer' },
  },
  {
    input: "quantity that is not an integer (1.5)",
    sql: "rpc3",
    args: ["ai_chat", 1.5],
    expect: { sqlstate: "22P02", message: 'invalid input syntax for type integer: "1.5"' },
  },
  { input: "batch NULL", sql: "batch", args: [null], expect: { result: BAD_BATCH } },
  { input: "batch that is not an array", sql: "batch", args: ["{}"], expect: { result: BAD_BATCH } },
  {
    input: "batch with a negative quantity in its second element",
    sql: "batch",
    args: [
      JSON.stringify([
        { action_type: "ai_chat", quantity: 1 },
        { action_type: "ai_chat", quantity: -5 },
      ]),
    ],
    expect: {
      result: { success: false, error_code: "INVALID_QUANTITY", index: 1, error: "p_actions[1]: quantity must be an integer from 1 to 100000", ...V1_NONE },
    },
  },
  {
    input: "batch with quantity 2^31",
    sql: "batch",
    args: [JSON.stringify([{ action_type: "ai_chat", quantity: 2 ** 31 }])],
    expect: {
      result: { success: false, error_code: "INVALID_QUANTITY", index: 0, error: "p_actions[0]: quantity must be an integer from 1 to 100000", ...V1_NONE },
    },
  },
  {
    input: "batch with a SQL-looking quantity",
    sql: "batch",
    args: [JSON.stringify([{ action_type: "ai_chat", quantity: "1; DROP TABLE credit_actions" }])],
    expect: {
      result: { success: false, error_code: "INVALID_QUANTITY", index: 0, error: "p_actions[0]: quantity must be an integer from 1 to 100000", ...V1_NONE },
    },
  },
  {
    input: "batch with a SQL-looking action type",
    sql: "batch",
    args: [JSON.stringify([{ action_type: SQLISH, quantity: 1 }])],
    expect: { result: { success: false, error_code: "UNKNOWN_ACTION", index: 0, error: "p_actions[0]: unknown action type", ...V1_NONE } },
  },
];

const RPC_SQL: Record<RpcRow["sql"], string> = {
  rpc2: "SELECT public.consume_credits_rpc($1, $2) AS r",
  rpc3: "SELECT public.consume_credits_rpc($1, $2, $3) AS r",
  rpc4: "SELECT public.consume_credits_rpc($1, $2, $3, $4) AS r",
  batch: "SELECT public.consume_credits_batch($1, $2) AS r",
};

// ---------------------------------------------------------------------------------------------------------------

/** At most `n` of the engine rows at once: each is a full CLI + language host run. */
function limit(n: number) {
  let active = 0;
  const queue: (() => void)[] = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active >= n) await new Promise<void>((r) => queue.push(r));
    active++;
    try {
      return await fn();
    } finally {
      active--;
      queue.shift()?.();
    }
  };
}

/** Resources in the stack's state, other than the stack itself. */
async function stateResources(t: TestStack): Promise<string[]> {
  const d = (await t.stack.exportStack()).deployment;
  return (d?.resources ?? []).map((r: any) => r.type).filter((x: string) => x !== "pulumi:pulumi:Stack");
}

describe("bad input through the engine: a clear error, nothing written", () => {
  let refusing: Awaited<ReturnType<typeof refusingServer>>;
  const slot = limit(3);
  beforeAll(async () => {
    refusing = await refusingServer();
  });
  afterAll(() => refusing?.close());

  for (const row of ENGINE_ROWS) {
    it.concurrent(`${row.input} -> ${row.error[row.error.length - 1]}`, () =>
      slot(async () => {
        const db = await seededDb(20, 3, "badin");
        let t: TestStack | undefined;
        try {
          await row.prepare?.(db);
          const before = await fingerprint(db);
          t = await testStack(row.databaseUrl?.({ db, refusingPort: refusing.port }) ?? db.url, { creditModel: "multi", ...row.config });
          const err: any = await t.stack.up({ onEvent: collect(t!) }).then(
            () => undefined,
            (e) => e,
          );
          expect(err, "the update must fail").toBeDefined();
          const text = `${err.message}\n${t.logText()}`;
          for (const fragment of row.error) expect(text).toContain(fragment);
          for (const s of row.never ?? []) expect(text).not.toContain(s);
          expect(diffFingerprints(before, await fingerprint(db))).toEqual([]);
          expect(await stateResources(t)).toEqual([]);
        } finally {
          t?.destroyWorkspace();
          await db.drop();
        }
      }));
  }
});

describe("bad configuration, validated as the program validates it: every problem named, before any SQL", () => {
  for (const row of CONFIG_ROWS) {
    it(`${row.input} -> ${row.error[row.error.length - 1]}`, () => {
      let err: unknown;
      try {
        parseConfig({ databaseUrl: "postgres://guardian@127.0.0.1:5432/guardian", creditModel: "multi", ...row.config });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(GuardianConfigError);
      const text = (err as Error).message;
      expect(text.startsWith("invalid guardian configuration:")).toBe(true);
      for (const fragment of row.error) expect(text).toContain(fragment);
    });
  }
});

describe("on a migrated database", () => {
  const ORGS = 60;
  let db: TestDb;
  let first: TestStack;
  let second: TestStack;
  let firstResult: any;
  let secondError: any;
  let org: string;

  beforeAll(async () => {
    db = await seededDb(ORGS, 3, "badin");
    first = await testStack(db.url, { creditModel: "multi" });
    // A second operator: another project directory, the same backend and stack, the same settings.
    second = await testStack(db.url, { creditModel: "multi" }, { stateDir: first.stateDir });
    const lockDir = `${first.stateDir}/.pulumi/locks/organization/guardian-credits/test`;
    const fs = require("fs");
    const running = first.stack.up({ onEvent: collect(first) });
    for (let i = 0; i < 600 && !(fs.existsSync(lockDir) && fs.readdirSync(lockDir).some((f: string) => f.endsWith(".json"))); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    secondError = await second.stack.up({ onEvent: collect(second) }).then(
      () => undefined,
      (e) => e,
    );
    firstResult = await running;
    const pick = (await orgs(db)).find((o) => o.plan_name === "premium")!;
    org = pick.organization_id;
  });
  afterAll(async () => {
    first?.destroyWorkspace();
    second?.destroyWorkspace();
    await db?.drop();
  });

  it("a concurrent second `pulumi up` on the same stack fails with the lock message; the first completes; the database is right", async () => {
    expect(secondError, "the second up must fail").toBeDefined();
    expect(secondError.message).toContain(
      "the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file with `pulumi cancel`.",
    );
    expect(firstResult.summary.result).toBe("succeeded");
    expect(firstResult.outputs.orgsMigrated.value).toBe(ORGS);
    const [state] = await db.query(`
      SELECT count(*) FILTER (WHERE credit_model = 'multi' AND allocation_epoch = 1)::int AS flipped_once,
             (SELECT count(*)::int FROM guardian.backups) AS backups
        FROM public.organization_credits`);
    expect(state).toEqual({ flipped_once: ORGS, backups: 1 });
    // The lock is gone: the stack is usable again.
    const again = await second.stack.preview({ onEvent: collect(second) });
    expect(Object.entries(again.changeSummary).filter(([k, v]) => k !== "same" && v > 0)).toEqual([]);
  });

  for (const row of RPC_ROWS) {
    const shown = "result" in row.expect ? `${row.expect.result.error_code}` : `SQLSTATE ${row.expect.sqlstate}`;
    it(`consume_credits_${row.sql === "batch" ? "batch" : "rpc"}: ${row.input} -> ${shown}`, async () => {
      const before = await fingerprint(db);
      const params = [row.org === undefined ? org : row.org, ...row.args];
      const got = await asUser(db, { role: "service_role" }, (c) => c.query(RPC_SQL[row.sql], params)).then(
        (r) => ({ result: r.rows[0].r }),
        (e) => ({ sqlstate: e.code, message: e.message }),
      );
      expect(got).toEqual(row.expect);
      expect(diffFingerprints(before, await fingerprint(db))).toEqual([]);
    });
  }

  it("consume_credits_rpc: an idempotency key that looks like SQL is data: one debit, stored as its sha256, replayed, catalogue unchanged", async () => {
    const before = await fingerprint(db);
    const call = () => asUser(db, { role: "service_role" }, (c) => c.query(RPC_SQL.rpc4, [org, "ai_chat", 1, SQLISH])).then((r) => r.rows[0].r);
    const first = await call();
    const replay = await call();
    expect(first).toMatchObject({ success: true, action_type: "ai_chat", quantity: 1, consumed: { ai: 1, whatsapp: 0, email: 0, sms: 0 } });
    expect(replay).toEqual(first);
    const after = await fingerprint(db);
    expect(after.catalog).toBe(before.catalog);
    const changedTables = diffFingerprints(before, after).map((l) => l.split(":")[0]);
    expect(changedTables.sort()).toEqual(["table guardian.idempotency_keys", "table public.credit_consumption_logs", "table public.organization_credits"]);
    const sha = crypto.createHash("sha256").update(SQLISH, "utf8").digest("hex");
    const logs = await db.query(`SELECT idempotency_key FROM public.credit_consumption_logs WHERE organization_id = $1 AND idempotency_key IS NOT NULL`, [org]);
    expect(logs).toEqual([{ idempotency_key: sha }]);
    const keys = await db.query(`SELECT idempotency_key FROM guardian.idempotency_keys WHERE organization_id = $1`, [org]);
    expect(keys).toEqual([{ idempotency_key: sha }]);
    const [{ n }] = await db.query(`SELECT count(*)::int n FROM public.credit_actions WHERE action_type LIKE '%DROP%'`);
    expect(n).toBe(0);
  });
});
