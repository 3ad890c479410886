/** Config is validated before anything touches the database: one error, every problem, each naming its key. */
import { describe, expect, it } from "vitest";
import {
  DEFAULT_ACTIONS,
  DEFAULT_PLANS,
  foreignConfigKeyProblems,
  GuardianConfigError,
  knownConfigKeys,
  nearestConfigKey,
  parseConfig,
  tlsSettings,
} from "../../lib/config";

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
    expect(problems({ databaseUrl: URL, creditModel: "both", backfill: { batchSize: 0 }, marginTarget: "high" })).toEqual([
      'guardian:creditModel: Invalid option: expected one of "unified"|"multi", got "both"',
      'guardian:marginTarget: Invalid input: expected number, received string, got "high"',
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

  it("refuses an unknown top-level key, naming the key meant", () => {
    expect(problems({ databaseUrl: URL, batchSize: 5 })).toEqual([
      "guardian:batchSize: unknown key; did you mean guardian:backfill.batchSize? (set it with --path: pulumi config set --path guardian:backfill.batchSize <value>)",
    ]);
    expect(problems({ databaseUrl: URL, creditModl: "multi" })).toEqual(["guardian:creditModl: unknown key; did you mean guardian:creditModel?"]);
    expect(problems({ databaseUrl: URL, credit_model: "multi" })).toEqual(["guardian:credit_model: unknown key; did you mean guardian:creditModel?"]);
    expect(problems({ databaseUrl: URL, model: "multi" })).toEqual(["guardian:model: unknown key; did you mean guardian:creditModel?"]);
    expect(problems({ databaseUrl: URL, somethingElse: 1 })).toEqual(["guardian:somethingElse: unknown key"]);
    // `pulumi config set guardian:backfill.batchSize 5` without --path names a key with a dot in it.
    expect(problems({ databaseUrl: URL, "backfill.batchSize": 5 })).toEqual([
      "guardian:backfill.batchSize: unknown key: set without --path, the key's name holds the dot; set it with --path: pulumi config set --path guardian:backfill.batchSize <value>",
    ]);
    expect(problems({ databaseUrl: URL, backfill: { batchsize: 5 } })).toEqual([
      "guardian:backfill.batchsize: unknown key; did you mean guardian:backfill.batchSize? (set it with --path: pulumi config set --path guardian:backfill.batchSize <value>)",
    ]);
  });

  it("refuses keys the program would never read: the project's own namespace and a misspelt one, naming the key meant", () => {
    const p = foreignConfigKeyProblems(
      {
        "guardian-credits:creditModel": "multi",
        "guardain:marginGate": "mandatory",
        "guardian-credits:whatever": "x",
        "guardian:creditModel": "unified",
        "aws:region": "eu-west-1",
        "pulumi:tags": "{}",
      },
      "guardian-credits",
    );
    expect(p).toEqual([
      "guardain:marginGate: never read: the program reads namespace guardian, not guardain; did you mean guardian:marginGate? " +
        "(pulumi config rm guardain:marginGate; pulumi config set guardian:marginGate <value>)",
      "guardian-credits:creditModel: never read: guardian-credits is the project's name, and `pulumi config set` without a namespace " +
        "writes there; the program reads namespace guardian; did you mean guardian:creditModel? " +
        "(pulumi config rm guardian-credits:creditModel; pulumi config set guardian:creditModel <value>)",
      "guardian-credits:whatever: never read: guardian-credits is the project's name, and `pulumi config set` without a namespace " +
        "writes there; the program reads namespace guardian; remove it (pulumi config rm guardian-credits:whatever); the keys the " +
        'program reads are listed in README.md, "Stacks, config and secrets"',
    ]);
    expect(nearestConfigKey("rootCert")).toBe("tls.rootCert");
    expect(knownConfigKeys()).toEqual(expect.arrayContaining(["creditModel", "backfill.batchSize", "tls.mode", "tls.rootCertPem", "rollback.function"]));
  });

  it("reads guardian:tls: a mode, a root certificate file or its PEM (never echoed), not both", () => {
    expect(parseConfig({ databaseUrl: URL }).tls).toBeUndefined();
    expect(parseConfig({ databaseUrl: URL, tls: '{"mode":"verify-full","rootCert":"certs/ca.crt"}' }).tls).toEqual({
      mode: "verify-full",
      rootCert: "certs/ca.crt",
    });
    expect(problems({ databaseUrl: URL, tls: { mode: "verify_full" } })).toEqual([
      'guardian:tls.mode: Invalid option: expected one of "disable"|"allow"|"prefer"|"require"|"verify-ca"|"verify-full", got "verify_full"',
    ]);
    const p = problems({ databaseUrl: URL, tls: { rootCertPem: "MIIB-secret-looking-text" } });
    expect(p).toEqual(["guardian:tls.rootCertPem: expected a PEM certificate (-----BEGIN CERTIFICATE-----)"]);
    expect(problems({ databaseUrl: URL, tls: { rootCert: "a.crt", rootCertPem: "-----BEGIN CERTIFICATE-----" } })).toEqual([
      "guardian:tls: give rootCert (a file) or rootCertPem, not both",
    ]);
    expect(() => tlsSettings(parseConfig({ databaseUrl: URL, tls: { rootCert: "no/such/ca.crt" } }), "/nonexistent")).toThrow(
      "guardian:tls.rootCert: cannot read no/such/ca.crt (ENOENT): the path is relative to the project folder",
    );
  });

  it("never echoes the connection string, even when it is malformed", () => {
    const p = problems({ databaseUrl: "mysql://root:hunter2@h/db" });
    expect(p).toEqual(["guardian:databaseUrl: expected a postgres:// or postgresql:// connection string"]);
    expect(p.join()).not.toContain("hunter2");
    expect(problems({})).toEqual(["guardian:databaseUrl: required (set it with: pulumi config set --secret guardian:databaseUrl postgres://...)"]);
  });
});
