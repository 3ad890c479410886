/**
 * lib/db.ts redaction: every form a connection string can carry a password in comes out masked, and nothing else is
 * lost from the label. The end-to-end proof (state, outputs, logs, manifest, database rows, report) is
 * test/secrets.test.ts.
 */
import { describe, expect, it } from "vitest";
import { connectionSecrets, explainConnectError, redactSecrets, redactUrl } from "../../lib/db";

const PW = "Zq7-secret-pw";

describe("redactUrl: one redaction for every form of password", () => {
  const cases: [string, string, string][] = [
    ["userinfo", `postgresql://postgres:${PW}@db.example.co:5432/postgres`, "postgresql://postgres:***@db.example.co:5432/postgres"],
    ["userinfo, percent-encoded", `postgres://u:p%40ss%2Fw0rd@h/db`, "postgres://u:***@h/db"],
    ["?password=", `postgresql://postgres@127.0.0.1:5432/db?password=${PW}`, "postgresql://postgres@127.0.0.1:5432/db?password=***"],
    [
      "?password= with other parameters kept",
      `postgres://u@h/db?sslmode=require&password=${PW}&application_name=x`,
      "postgres://u@h/db?sslmode=require&password=***&application_name=x",
    ],
    ["?PASSWORD= (any case), repeated", `postgres://u@h/db?PASSWORD=${PW}&password=a&password=b`, "postgres://u@h/db?PASSWORD=***&password=***&password=***"],
    ["?sslpassword=", `postgres://u@h/db?sslmode=require&sslpassword=${PW}`, "postgres://u@h/db?sslmode=require&sslpassword=***"],
    ["?passfile=", `postgres://u@h/db?passfile=/home/ops/.pgpass`, "postgres://u@h/db?passfile=***"],
    ["userinfo and ?password= together", `postgres://u:${PW}@h/db?password=${PW}2`, "postgres://u:***@h/db?password=***"],
    ["a fragment is dropped", `postgres://u@h/db#${PW}`, "postgres://u@h/db"],
    ["no password at all", "postgres://u@h:5432/db?service=guardian", "postgres://u@h:5432/db?service=guardian"],
    ["libpq keyword/value form", `host=h user=u password=${PW} dbname=db sslpassword='a b'`, "host=h user=u password=*** dbname=db sslpassword=***"],
  ];
  it.each(cases)("%s", (_label, url, want) => {
    expect(redactUrl(url)).toBe(want);
    for (const s of connectionSecrets(url).filter((x) => x.length >= 4)) expect(redactUrl(url)).not.toContain(s);
  });

  it("never echoes a string it cannot parse", () => {
    expect(redactUrl(`postgres://u:pa#${PW}@h/db`)).toBe("<unparseable connection string>");
  });

  it("lists the secrets it masks, decoded", () => {
    expect(connectionSecrets(`postgres://u:p%40ss@h/db?password=x%20y&sslpassword=${PW}`).sort()).toEqual(["p%40ss", "p@ss", PW, "x y"].sort());
    expect(connectionSecrets("postgres://u@h/db")).toEqual([]);
  });
});

describe("redactSecrets: a message that echoes the string or its password", () => {
  it("masks the whole string and the bare password, raw and encoded", () => {
    const url = `postgres://u@h/db?password=${encodeURIComponent(`p w/${PW}`)}`;
    const msg = `failed for ${url}: password "p w/${PW}" (encoded ${encodeURIComponent(`p w/${PW}`)}) rejected`;
    const out = redactSecrets(msg, url);
    expect(out).toBe(`failed for postgres://u@h/db?password=***: password "***" (encoded ***) rejected`);
  });

  it("masks a short password only where it stands as a credential", () => {
    const url = "postgres://u:pw@h/db";
    expect(redactSecrets("pwned at postgres://u:pw@h/db, again u:pw@h", url)).toBe("pwned at postgres://u:***@h/db, again u:***@h");
  });

  it("explainConnectError names the server without the password", () => {
    const url = `postgres://u@h/db?password=${PW}`;
    const e = explainConnectError(Object.assign(new Error(`boom ${PW} ${url}`), { code: "XX000" }), url);
    expect(e.message).not.toContain(PW);
    expect(e.message).toContain("postgres://u@h/db?password=***");
  });
});
