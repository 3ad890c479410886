/** The rehearsal's steps that need no database and no stack (operations/rehearse.ts). */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { RestoreError } from "../../operations/shared/restoreExport";
import { chooseExport, failureOf, type RehearseIo, type RehearseOptions, rehearseCommand, stepHeading } from "../../operations/rehearse";

function recorder() {
  const lines: string[] = [];
  const errors: string[] = [];
  const io: RehearseIo = { log: (s) => lines.push(s), write: (s) => lines.push(s), error: (s) => errors.push(s) };
  return { io, lines, errors };
}

const opts = (o: Partial<RehearseOptions> = {}): RehearseOptions => ({
  exportRoot: "/nonexistent",
  database: "guardian_rehearsal_unit",
  stack: "rehearsal",
  settings: "Pulumi.staging.yaml",
  ...o,
});

describe("rehearse", () => {
  it("refuses without a passphrase before reading anything (exit 2); --restore-only needs none", async () => {
    const r = recorder();
    expect(await rehearseCommand(opts(), r.io, {})).toBe(2);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/^rehearse refused: no passphrase\./);
    expect(r.lines).toEqual([]);

    // --restore-only goes past the passphrase; the export root does not exist, so the first step refuses (exit 2).
    const s = recorder();
    expect(await rehearseCommand(opts({ restoreOnly: true }), s.io, {})).toBe(2);
    expect(s.lines).toEqual([stepHeading(1, "export")]);
    expect(s.errors).toEqual(["restore: no backup exports under /nonexistent (ENOENT)"]);
  });

  it("a RestoreError is a refusal (exit 2) printed as it is; anything else a failure (exit 1) in at most 40 lines", () => {
    expect(failureOf(new RestoreError("restore of x does not match its manifest"))).toEqual({
      message: "restore of x does not match its manifest",
      exitCode: 2,
    });
    const long = Array.from({ length: 50 }, (_, i) => `line ${i}`).join("\n");
    const f = failureOf(new Error(long));
    expect(f.exitCode).toBe(1);
    expect(f.message.split("\n")).toHaveLength(40);
    expect(f.message.startsWith("rehearsal failed: line 0\nline 1")).toBe(true);
    expect(failureOf("plain")).toEqual({ message: "rehearsal failed: plain", exitCode: 1 });
  });

  it("stepHeading and chooseExport with an export given", () => {
    expect(stepHeading(2, "scratch database")).toBe(`\n=== rehearsal 2/5 scratch database ${"=".repeat(50)}`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ops-rehearse-"));
    try {
      const r = recorder();
      expect(chooseExport({ opts: opts({ export: dir }), io: r.io, passphraseEnv: {} })).toBe(dir);
      expect(r.lines).toEqual([stepHeading(1, "export"), `export: ${dir}`]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
