/** Config is validated before anything touches the database: one error, every problem, each naming its key. */
import { describe, expect, it } from "vitest";
import { DEFAULT_ACTIONS, DEFAULT_PLANS, GuardianConfigError, parseConfig } from "../../lib/config";

const URL = "postgres://postgres:s3cret-pw@db.example.invalid:5432/postgres";
const problems = (raw: Record<string, unknown>): string[] => {
  try {
    parseConfig(raw);
  } catch (e) {
    expect(e).toBeInstanceOf(GuardianConfigError);
    return (e as GuardianConfigError).problems;
  }
  throw new Error("expected the config to be refused");
};

describe("guardian config", () => {
  it("fills the defaults of facts.md", () => {
    const c = parseConfig({ databaseUrl: URL });
    expect(c.creditModel).toBe("unified");
    expect(c.plans).toEqual(DEFAULT_PLANS);
    expect(c.split).toEqual({ ai: 0.4, whatsapp: 0.3, email: 0.3, sms: 0 });
    expect(c.actions).toEqual(DEFAULT_ACTIONS);
    expect(c.providerCosts).toEqual({ ai: 0.005, whatsapp: 0.0157, email: 0, sms: 0.05 });
    expect(c.marginTarget).toBe(0.82);
    expect(c.backfill).toEqual({ batchSize: 1000, pauseMs: 0, rollbackBatchSize: 5000 });
  });

  it("maps every legacy action type by name, never by substring", () => {
    const c = parseConfig({ databaseUrl: URL });
    expect(c.actions.ai_email_generation).toMatchObject({ ai: 1, email: 0 });
    expect(c.actions.send_welcome_email).toMatchObject({ ai: 0, email: 1 });
    expect(c.actions.sms_send).toMatchObject({ sms: 1 });
    expect(c.actions.sms_send.creditsCost).toBeUndefined(); // the live price stays
  });

  it("merges guardian:actions with the defaults, action by action", () => {
    const c = parseConfig({ databaseUrl: URL, actions: { ai_chat: { creditsCost: 3, ai: 2 }, voice_call: { ai: 1 } } });
    expect(c.actions.ai_chat).toEqual({ creditsCost: 3, ai: 2, whatsapp: 0, email: 0, sms: 0 });
    expect(c.actions.voice_call).toMatchObject({ ai: 1 });
    expect(c.actions.sms_send).toMatchObject({ sms: 1 });
    expect(Object.keys(c.actions).length).toBe(Object.keys(parseConfig({ databaseUrl: URL }).actions).length + 1);
  });

  it("reads the shape overrides and the rollback function, with their defaults", () => {
    const d = parseConfig({ databaseUrl: URL });
    expect(d.schema).toEqual({ trialPlans: ["trial_14"] });
    expect(d.rollback).toEqual({ function: "v1" });
    const c = parseConfig({ databaseUrl: URL, schema: { profileRoleColumn: "user_role", trialColumn: null }, rollback: { function: "safe" } });
    expect(c.schema).toEqual({ profileRoleColumn: "user_role", trialColumn: null, trialPlans: ["trial_14"] });
    expect(c.rollback.function).toBe("safe");
    expect(() => parseConfig({ databaseUrl: URL, rollback: { function: "v0" } })).toThrow(/guardian:rollback\.function/);
  });

  it("accepts structured values as Pulumi hands them over (JSON text) and numbers as text", () => {
    const c = parseConfig({ databaseUrl: URL, backfill: '{"batchSize": 250}', marginTarget: "0.8" });
    expect(c.backfill.batchSize).toBe(250);
    expect(c.marginTarget).toBe(0.8);
  });

  it("reports every bad key at once, each by name", () => {
    expect(
      problems({ databaseUrl: URL, creditModel: "both", backfill: { batchSize: 0 }, marginTarget: "high" }),
    ).toEqual([
      'guardian:creditModel: Invalid option: expected one of "unified"|"multi", got "both"',
      "guardian:marginTarget: Invalid input: expected number, received string, got \"high\"",
      "guardian:backfill.batchSize: Too small: expected number to be >0, got 0",
    ]);
  });

  it("refuses split shares that sum over 1", () => {
    expect(problems({ databaseUrl: URL, split: { ai: 0.5, whatsapp: 0.5, email: 0.3, sms: 0 } })).toEqual([
      'guardian:split: shares must sum to at most 1, got {"ai":0.5,"whatsapp":0.5,"email":0.3,"sms":0}',
    ]);
  });

  it("refuses a negative allocation and a share outside 0..1", () => {
    const p = problems({
      databaseUrl: URL,
      plans: { starter: { priceEur: 19, ai: -5, whatsapp: 1, email: 1, sms: 1 } },
      split: { ai: 1.2, whatsapp: 0, email: 0, sms: 0 },
    });
    expect(p).toContain("guardian:plans.starter.ai: Too small: expected number to be >=0, got -5");
    expect(p.some((x) => x.startsWith("guardian:split.ai: Too big"))).toBe(true);
  });

  it("refuses an unknown pool name, naming the pools", () => {
    expect(problems({ databaseUrl: URL, split: { ai: 0.4, whatsapp: 0.3, email: 0.3, sms: 0, fax: 0.1 } })).toEqual([
      "guardian:split.fax: unknown key (pools are ai, whatsapp, email, sms)",
    ]);
    expect(problems({ databaseUrl: URL, actions: { ai_chat: { creditsCost: 1, telegram: 1 } } })).toEqual([
      "guardian:actions.ai_chat.telegram: unknown key (pools are ai, whatsapp, email, sms)",
    ]);
  });

  it("refuses an unknown top-level key", () => {
    expect(problems({ databaseUrl: URL, batchSize: 5 })).toEqual(["guardian:batchSize: unknown key"]);
  });

  it("never echoes the connection string, even when it is malformed", () => {
    const p = problems({ databaseUrl: "mysql://root:hunter2@h/db" });
    expect(p).toEqual(["guardian:databaseUrl: expected a postgres:// or postgresql:// connection string"]);
    expect(p.join()).not.toContain("hunter2");
    expect(problems({})).toEqual([
      "guardian:databaseUrl: required (set it with: pulumi config set --secret guardian:databaseUrl postgres://...)",
    ]);
  });
});
