/**
 * The README's table "What changes for the application" is lib/access.ts's list: GUARDIAN_WRITE_DOCS=1 rewrites it,
 * otherwise the test fails when they differ. Every change names its reason.
 */
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { accessLines, applicationChangesTable, CAPABILITIES, compareAccess, programAccess } from "../../lib/access";
import type { AccessMatrix, Cell } from "../../lib/accessProbe";

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

describe("the access matrix compared: what the program's policies take away must be named", () => {
  const cell = (role: Cell["role"], table: string, command: Cell["command"], scope: Cell["scope"], allowed: boolean, privilege = true): Cell => ({
    role,
    table,
    command,
    scope,
    allowed,
    privilege,
  });
  const before: AccessMatrix = {
    roles: ["member", "org_admin", "service_role"],
    cells: [
      cell("member", "profiles", "UPDATE", "own", true), // kept: a member edits its own profile
      cell("member", "profiles", "UPDATE tenancy", "own", true), // closed: escalation
      cell("member", "organization_credits", "SELECT", "other", true), // closed: leak
      cell("org_admin", "organizations", "UPDATE", "own", true), // closed: the organization row is the super_admin's
      cell("member", "profiles", "SELECT", "team", false), // appears: the team list
      cell("service_role", "organizations", "DELETE", "other", true), // as found
    ],
  };

  it("keeps, closes with a reason, and names what appears", () => {
    const cmp = compareAccess(before);
    expect([cmp.cells, cmp.kept]).toEqual([6, 2]);
    expect(cmp.closed.map((l) => `${l.role} ${l.cell}`)).toEqual([
      "member UPDATE tenancy profiles (own)",
      "member SELECT organization_credits (other)",
      "org_admin UPDATE organizations (own)",
    ]);
    for (const l of cmp.closed) expect(l.reason, l.cell).toMatch(/^(leak|escalation|required by the contract)/);
    expect(cmp.appears.map((l) => `${l.role} ${l.cell}`)).toEqual(["member SELECT profiles (team)"]);
    expect(cmp.lost).toEqual([]);
  });

  it("a loss that no leak, escalation or required restriction covers is lost, and preview says LOST", () => {
    const withoutOrgRule = CAPABILITIES.filter((c) => !c.capability.startsWith("a user other than a super_admin creates, changes or deletes an organization"));
    const cmp = compareAccess(before, undefined, withoutOrgRule);
    expect(cmp.lost.map((l) => `${l.role} ${l.cell}`)).toEqual(["org_admin UPDATE organizations (own)"]);
    expect(accessLines(cmp).join("\n")).toContain("access: LOST: org_admin UPDATE organizations (own)");
  });

  it("the capability list says when the database has the program's policies already (a second up, a rollback)", () => {
    const changed = accessLines(compareAccess(before)).join("\n");
    expect(changed).toContain("access: the program's policies against the CRM's own, capability by capability:");
    const same = accessLines({ ...compareAccess(before), closed: [], appears: [], lost: [] }).join("\n");
    expect(same).toContain("capability by capability (in place already: this update changes no cell):");
  });

  it("what the program allows: a member's own profile but not its tenancy columns; a super_admin's organizations; credit rows read-only", () => {
    expect(programAccess(cell("member", "profiles", "UPDATE", "own", false))).toBe(true);
    expect(programAccess(cell("member", "profiles", "UPDATE tenancy", "own", true))).toBe(false);
    expect(programAccess(cell("super_admin", "profiles", "UPDATE tenancy", "other", false))).toBe(true);
    expect(programAccess(cell("super_admin", "organizations", "DELETE", "other", false))).toBe(true);
    expect(programAccess(cell("super_admin", "organizations", "DELETE", "other", false, false))).toBe(false); // no grant: as found
    expect(programAccess(cell("super_admin", "credit_consumption_logs", "DELETE", "own", true))).toBe(false);
    expect(programAccess(cell("anon", "credit_actions", "SELECT", "all", false, true))).toBe(true);
    expect(programAccess(cell("anon", "credit_actions", "SELECT", "all", false, false))).toBe(false);
    expect(programAccess(cell("service_role", "profiles", "DELETE", "other", true))).toBe(true);
  });
});
