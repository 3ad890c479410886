/** Refusals are classes with exit codes, recognised with instanceof (lib/errors.ts), never by name. */
import { describe, expect, it } from "vitest";
import { GuardianConfigError, parseConfig } from "../../lib/config";
import * as util from "util";
import * as pulumi from "@pulumi/pulumi";
import { exitCodeOf, GuardianRefusal, withoutFrames } from "../../lib/errors";
import { NoGoError } from "../../lib/preflight";
import { RollbackRefusal } from "../../operations/stack/stackHistory";
import { ReportError } from "../../operations/report";

describe("refusals", () => {
  it("every refusal is a GuardianRefusal with exit code 2 and its class's name; anything else exits 1", () => {
    const refusals = [
      new GuardianConfigError(["guardian:x: bad"]),
      new NoGoError({ go: false, failures: [{ gate: "connection", message: "down" }], passed: [], skipped: [], notes: [] }),
      new RollbackRefusal("rollback refused: no"),
      new ReportError("report: no"),
    ];
    for (const r of refusals) {
      expect(r).toBeInstanceOf(GuardianRefusal);
      expect(r).toBeInstanceOf(Error);
      expect(exitCodeOf(r)).toBe(2);
      expect(r.name).toBe(r.constructor.name);
    }
    expect(exitCodeOf(new Error("a bug"))).toBe(1);
    expect(exitCodeOf("a string")).toBe(1);
  });

  it("a bad config throws a refusal listing every key", () => {
    let e: unknown;
    try {
      parseConfig({ databaseUrl: "postgres://u@h/db", creditModel: "both", backfill: { batchSize: 0 } });
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(GuardianRefusal);
    expect((e as GuardianConfigError).problems.map((p) => p.split(":")[1])).toEqual(["creditModel", "backfill.batchSize"]);
  });
});

describe("refusals inside a dynamic provider", () => {
  it("keep their class's name and exit code after Pulumi serializes the code that throws them", async () => {
    const pulumi = await import("@pulumi/pulumi");
    const { TlsConfigError } = await import("../../lib/pgConnection");
    const { RestoreError } = await import("../../operations/shared/restoreExport");
    const throwBoth = () => [new TlsConfigError("guardian:tls.mode: bad"), new RestoreError("restore refused", ["x"])];
    const s = await pulumi.runtime.serializeFunction(() => throwBoth, { allowSecrets: false });
    const mod: { exports: any } = { exports: {} };
    new Function("module", "exports", "require", s.text)(mod, mod.exports, require);
    const [tls, restore] = mod.exports[s.exportName]()();
    expect([tls.name, restore.name]).toEqual(["TlsConfigError", "RestoreError"]);
    expect([tls.exitCode, restore.exitCode]).toEqual([2, 2]);
    expect(tls.message).toBe("guardian:tls.mode: bad");
  });

  it("a refusal handed to Pulumi carries its message and no stack frames, so Pulumi's coloured formatting of it is short", () => {
    const refusal = withoutFrames(new pulumi.RunError("NO-GO: 1 gate failed:\n  - connection: refused"));
    expect(pulumi.RunError.isInstance(refusal)).toBe(true);
    expect(refusal.message).toBe("NO-GO: 1 gate failed:\n  - connection: refused");
    expect(refusal.stack).toBe("Error: NO-GO: 1 gate failed:\n  - connection: refused");
    expect(refusal.stack).not.toMatch(/\n\s+at /);
    // What Pulumi's uncaught-error handler does with it (cmd/run/run.js, defaultErrorMessage).
    expect(util.inspect(refusal, { colors: true })).toContain("connection: refused");
  });
});
