/**
 * The README's table "What changes for the application" is lib/access.ts's list: GUARDIAN_WRITE_DOCS=1 rewrites it,
 * otherwise the test fails when they differ. Every change names its reason.
 */
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { applicationChangesTable, CAPABILITIES } from "../../lib/access";

const README = path.resolve(__dirname, "..", "..", "README.md");
const BEGIN = "<!-- access-table:begin -->";
const END = "<!-- access-table:end -->";

describe("What changes for the application", () => {
  it("names a reason for every capability that is closed or appears, and none for one kept", () => {
    for (const c of CAPABILITIES) expect(c.reason === "", c.capability).toBe(c.change === "kept");
    expect(CAPABILITIES.filter((c) => c.change === "closed").length).toBeGreaterThan(0);
  });

  it("the README's table is the list", () => {
    const text = fs.readFileSync(README, "utf8");
    const [head, rest] = text.split(BEGIN);
    const tail = rest.split(END)[1];
    const want = `${head}${BEGIN}\n${applicationChangesTable()}\n${END}${tail}`;
    if (process.env.GUARDIAN_WRITE_DOCS === "1") fs.writeFileSync(README, want);
    expect(fs.readFileSync(README, "utf8")).toBe(want);
  });
});
