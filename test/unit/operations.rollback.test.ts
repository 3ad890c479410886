/** The rollback's steps that need no stack (operations/rollback/): target resolution, database facts, verification, the
 *  settings file, the report path, the dry-run and confirmation stops, the JSON result. */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { PreviewResult, Stack, UpResult } from "@pulumi/pulumi/automation";
import { afterEach, describe, expect, it } from "vitest";
import { type DbFacts, describeChanges, resultJson, type RollbackOptions, type RollbackResult, verify } from "../../operations/rollback";
import { BATCH, V1, V2 } from "../../operations/rollback/database";
import {
  checkOptions,
  checkTarget,
  confirm,
  lineWriter,
  pickTarget,
  previewSummary,
  reportPath,
  settingsRestorer,
  stopIfDryRun,
} from "../../operations/rollback/steps";
import { type HistoryEntry, RollbackRefusal } from "../../operations/stack/stackHistory";

function entry(version: number, kind = "update", result = "succeeded", extra: Partial<HistoryEntry> = {}): HistoryEntry {
  return {
    version,
    index: 0,
    kind,
    result,
    startTime: new Date("2026-01-01T00:00:00Z"),
    message: "",
    dirty: false,
    environment: {},
    config: {},
    secretKeys: [],
    ...extra,
  };
}

/** Newest first, as readHistory returns it. */
const history = [entry(5), entry(4, "refresh"), entry(3, "update", "failed"), entry(2), entry(1)];

function facts(over: Partial<DbFacts> = {}): DbFacts {
  return { orgsTotal: 0, orgsByModel: {}, functions: [], backup: null, sinceBackup: null, ...over };
}

const refusal = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(RollbackRefusal);
    return (e as Error).message;
  }
  throw new Error("no refusal");
};

describe("pickTarget / checkTarget: the target from the stack's history", () => {
  it("defaults to the last successful update before the current one (skipping refreshes and failures)", () => {
    const { current, target } = pickTarget("dev", history, undefined);
    expect(current.version).toBe(5);
    expect(target.version).toBe(2);
  });

  it("takes --to at its word, and refuses a version the history does not hold", () => {
    expect(pickTarget("dev", history, 4).target.version).toBe(4);
    expect(refusal(() => pickTarget("dev", history, 9))).toBe("rollback refused: stack dev has no version 9 (its history holds versions 1 to 5)");
  });

  it("refuses an empty history, a current update in progress, and a history with no earlier successful update", () => {
    expect(refusal(() => pickTarget("dev", [], undefined))).toBe("rollback refused: stack dev has no update in its history");
    expect(refusal(() => pickTarget("dev", [entry(2, "update", "in-progress"), entry(1)], undefined))).toMatch(
      /^rollback refused: stack dev is locked by another update \(version 2 is still in progress\)/,
    );
    expect(refusal(() => pickTarget("dev", [entry(2), entry(1, "update", "failed")], undefined))).toBe(
      "rollback refused: stack dev has no successful update before its current version 2",
    );
  });

  it("checkTarget refuses what is not a successful update", () => {
    expect(() => checkTarget(entry(2))).not.toThrow();
    expect(refusal(() => checkTarget(entry(4, "refresh")))).toBe("rollback refused: version 4 is a refresh, not an update: it has no program run to return to");
    expect(refusal(() => checkTarget(entry(3, "update", "failed")))).toBe(
      "rollback refused: version 3 failed: only a successful update is a state to return to",
    );
    expect(refusal(() => checkTarget(entry(3, "update", "cancelled")))).toBe(
      'rollback refused: version 3 ended "cancelled": only a successful update is a state to return to',
    );
  });
});

describe("checkOptions", () => {
  it("refuses a directory without Pulumi.yaml and a --to that is not a positive integer", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ops-rollback-"));
    try {
      expect(refusal(() => checkOptions({ stack: "s", cwd: dir }))).toBe(`rollback refused: ${dir} is not a Pulumi project (no Pulumi.yaml)`);
      fs.writeFileSync(path.join(dir, "Pulumi.yaml"), "name: x\n");
      expect(checkOptions({ stack: "s", cwd: dir })).toBe(dir);
      expect(refusal(() => checkOptions({ stack: "s", cwd: dir, to: 0 }))).toBe("rollback refused: --to expects a version number (a positive integer), got 0");
      expect(refusal(() => checkOptions({ stack: "s", cwd: dir, to: 1.5 }))).toMatch(/got 1\.5$/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("describeChanges: what the target model implies in the database", () => {
  const multi = facts({
    orgsTotal: 1200,
    orgsByModel: { multi: 1200 },
    functions: [
      { signature: BATCH, md5: "b" },
      { signature: V2, md5: "m2" },
    ],
    backup: { backupId: "guardian_backup_1", createdAt: "2026-01-01T00:00:00.000Z", v1Md5: "m1" },
    sinceBackup: { successes: 3000, unifiedCost: 45000 },
  });

  it("multi back to unified: organizations, v2 replaced by the v1 of the backup, the batch dropped, nothing recomputed", () => {
    expect(describeChanges(multi, "unified", "postgres://h/db")).toEqual([
      "  database postgres://h/db",
      "    organizations per model: multi 1,200 -> unified 1,200",
      `    function ${BATCH} (md5 b): dropped`,
      `    function ${V2} (md5 m2): replaced by ${V1}, v1 as recorded in backup guardian_backup_1 (md5 m1)`,
      "    balances: nothing recomputed: 1,200 orgs switched back by credit_model alone, with the credits_remaining v2 and the application kept current (upgrades, cycle resets, grants and refunds made meanwhile stay)",
    ]);
  });

  it("without a verified backup the balances line says the Rollback resource will refuse", () => {
    expect(describeChanges({ ...multi, backup: null, sinceBackup: null }, "unified", "db").at(-1)).toBe(
      "    balances: the Rollback resource will refuse (no verified backup with v1 found now)",
    );
  });

  it("the same model: unchanged", () => {
    expect(describeChanges(multi, "multi", "db")).toEqual([
      "  database db",
      "    organizations per model: multi 1,200 -> multi 1,200 (unchanged)",
      `    functions: ${BATCH}, ${V2} (unchanged)`,
    ]);
  });

  it("unified to multi: a new backup and the pools", () => {
    const unified = facts({ orgsTotal: 7, orgsByModel: { unified: 7 }, functions: [{ signature: V1, md5: "m1" }] });
    const lines = describeChanges(unified, "multi", "db");
    expect(lines).toContain(`    function ${V1} (md5 m1): replaced by ${V2} (v2)`);
    expect(lines).toContain(`    function ${BATCH}: created`);
    expect(lines.at(-1)).toBe("    balances: a new backup is taken, then 7 orgs are allocated to the four pools from their current balances");
  });
});

describe("verify: the update's facts against the database", () => {
  const unifiedDb = facts({ orgsTotal: 3, orgsByModel: { unified: 3 }, functions: [{ signature: V1, md5: "m1" }] });
  const outputs = {
    creditModel: { value: "unified", secret: false },
    orgsTotal: { value: 3, secret: false },
    verification: { value: { orgsMulti: 0 }, secret: false },
    rolledBack: { value: true, secret: false },
    v1DefinitionMd5: { value: "m1", secret: false },
  };

  it("all agree", () => {
    const checks = verify("unified", outputs, unifiedDb);
    expect(checks.map((c) => [c.fact, c.source, c.agrees])).toEqual([
      ["creditModel", "output", true],
      ["orgsTotal", "output", true],
      ["organizations per model", "model", true],
      ["functions", "model", true],
      ["verification.orgsMulti", "output", true],
      ["v1DefinitionMd5", "output", true],
    ]);
  });

  it("a disagreement is a failed check, and an output the program does not export is not checked", () => {
    const db = { ...unifiedDb, orgsByModel: { unified: 2, multi: 1 }, functions: [{ signature: V1, md5: "other" }] };
    const failed = verify("unified", outputs, db)
      .filter((c) => !c.agrees)
      .map((c) => c.fact);
    expect(failed).toEqual(["organizations per model", "verification.orgsMulti", "v1DefinitionMd5"]);
    expect(verify("unified", {}, unifiedDb).map((c) => c.fact)).toEqual(["organizations per model", "functions"]);
  });

  it("multi: orgsMigrated against the multi organizations", () => {
    const db = facts({ orgsTotal: 2, orgsByModel: { multi: 2 }, functions: [{ signature: V2, md5: "x" }] });
    const checks = verify("multi", { orgsMigrated: { value: 2, secret: false } }, db);
    expect(checks.find((c) => c.fact === "orgsMigrated")?.agrees).toBe(true);
    expect(checks.find((c) => c.fact === "functions")).toMatchObject({ agrees: false, expected: [BATCH, V2].sort(), database: [V2] });
  });
});

describe("the settings file and the report path", () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "ops-rollback-"));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it("settingsRestorer puts the file back byte for byte, or removes one that did not exist", () => {
    const d = tmp();
    const f = path.join(d, "Pulumi.dev.yaml");
    const original = Buffer.from("config:\n  guardian:creditModel: multi\r\n\u00e9\n");
    fs.writeFileSync(f, original);
    const restore = settingsRestorer(f);
    fs.writeFileSync(f, "config: {}\n");
    restore();
    expect(fs.readFileSync(f).equals(original)).toBe(true);

    const g = path.join(d, "Pulumi.new.yaml");
    const remove = settingsRestorer(g);
    fs.writeFileSync(g, "written by the step\n");
    remove();
    expect(fs.existsSync(g)).toBe(false);
  });

  it("reportPath: the default under .guardian/reports, a file, a directory, a path ending in /", () => {
    const d = tmp();
    expect(reportPath(d, "org/proj/dev", 7, undefined)).toBe(path.join(d, ".guardian", "reports", "dev-rollback-v7.md"));
    expect(reportPath(d, "dev", 7, "r.md")).toBe(path.join(d, "r.md"));
    fs.mkdirSync(path.join(d, "out"));
    expect(reportPath(d, "dev", 7, "out")).toBe(path.join(d, "out", "dev-rollback-v7.md"));
    expect(reportPath(d, "dev", 7, "later/")).toBe(path.join(d, "later", "dev-rollback-v7.md"));
  });
});

describe("the stops: dry run and confirmation", () => {
  const ctx = (opts: Partial<RollbackOptions>, lines: string[]) => ({
    opts: { stack: "dev", ...opts },
    stack: { name: "dev" } as unknown as Stack,
    current: entry(5),
    target: entry(2),
    log: (s: string) => lines.push(s),
    result: { currentVersion: 5, targetVersion: 2 },
  });

  it("stopIfDryRun: nothing without --dry-run; with it, exit 0 and the command that applies the plan", () => {
    expect(stopIfDryRun(ctx({}, []))).toBeUndefined();
    const lines: string[] = [];
    const r = stopIfDryRun(ctx({ dryRun: true, configFile: "c.yaml" }, lines));
    expect(r).toMatchObject({ exitCode: 0, outcome: "dry-run", currentVersion: 5, targetVersion: 2 });
    expect(r?.message).toBe(
      "rollback: dry run: nothing was written (stack dev stays at version 5). To apply this plan: npm run rollback -- --stack dev --to 2 --config-file c.yaml --yes",
    );
    expect(lines).toEqual([r?.message]);
  });

  it("confirm: --yes asks nothing; a yes goes on; anything else is declined with exit 2", async () => {
    const asked: string[] = [];
    const answer = (a: boolean) => async (q: string) => {
      asked.push(q);
      return a;
    };
    expect(await confirm(ctx({ yes: true, confirm: answer(false) }, []))).toBeUndefined();
    expect(asked).toEqual([]);
    expect(await confirm(ctx({ confirm: answer(true) }, []))).toBeUndefined();
    expect(asked).toEqual([`Update stack dev to version 2's config and program (pulumi up)? Type "yes" to continue: `]);
    const lines: string[] = [];
    const r = await confirm(ctx({ confirm: answer(false) }, lines));
    expect(r).toMatchObject({ exitCode: 2, outcome: "declined", message: "rollback: declined; nothing was written (stack dev stays at version 5)" });
    expect(lines).toEqual([r?.message]);
  });
});

describe("printing", () => {
  it("lineWriter prints whole lines with the prefix and flushes the rest", () => {
    const lines: string[] = [];
    const w = lineWriter((s) => lines.push(s), "  | ");
    w.write("Previewing update\r\nres");
    w.write("ources:\n");
    expect(lines).toEqual(["  | Previewing update", "  | resources:"]);
    w.write("  + 3 to create");
    w.flush();
    w.flush();
    expect(lines).toEqual(["  | Previewing update", "  | resources:", "  |   + 3 to create"]);
  });

  it("previewSummary", () => {
    expect(previewSummary({ changeSummary: { same: 4, create: 2, update: 0, replace: 1 } })).toBe("--- preview: 2 to create, 1 to replace; 4 unchanged ---");
    expect(previewSummary({ changeSummary: {} })).toBe("--- preview: no resource changes; 0 unchanged ---");
  });

  it("resultJson summarises the preview and the up (no engine text, no outputs)", () => {
    const r: RollbackResult = {
      exitCode: 0,
      outcome: "rolled-back",
      message: "done",
      targetVersion: 2,
      preview: { stdout: "engine text", stderr: "", changeSummary: { same: 1, update: 2 } } as PreviewResult,
      up: {
        stdout: "engine text",
        stderr: "",
        outputs: { databaseUrl: { value: "postgres://u:secret@h/db", secret: true } },
        summary: { result: "succeeded", resourceChanges: { update: 2 } },
      } as unknown as UpResult,
    };
    const j = resultJson(r);
    expect(j).toEqual({
      exitCode: 0,
      outcome: "rolled-back",
      message: "done",
      targetVersion: 2,
      preview: { changeSummary: { same: 1, update: 2 } },
      up: { result: "succeeded", resourceChanges: { update: 2 } },
    });
    expect(JSON.stringify(j)).not.toMatch(/engine text|secret/);
    expect(resultJson({ exitCode: 2, outcome: "refused", message: "no" })).toEqual({
      exitCode: 2,
      outcome: "refused",
      message: "no",
      preview: undefined,
      up: undefined,
    });
  });
});
