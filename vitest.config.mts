import { defineConfig } from "vitest/config";

/**
 * Two tiers (README, "Tests"):
 *   core    `npm test`: the core paths, through the real engine and a real Postgres, in minutes: the pure logic
 *           and the policy pack, a migration `up` and its verification, a rollback, the credit engine and tenant
 *           isolation as the real roles, the application around the credits (its users' access kept, escalations
 *           closed, no write lost by a switch), one failure and its repair.
 *   full    `npm run test:full` (and `.ci/run`): every file. The core project, the rest two files at a time, then the
 *           timing-sensitive files (crash-resume, zero-downtime, runbook) alone, one at a time, in a group of their
 *           own, so another file's engine runs never share the two cores with them.
 * A new test file joins "rest" by default; add it to CORE only if it is a core path and `npm test` stays within its
 * ten minutes on this 2-core machine.
 */
const CORE = [
  "test/unit/**/*.test.ts",
  "policies/**/*.test.ts",
  "test/migration.test.ts",
  "test/rollback.test.ts",
  "test/credit-engine.test.ts",
  "test/tenant-policies.test.ts",
  "test/application.test.ts",
  "test/interrupted-index.test.ts",
];
const SERIAL = ["test/crash-resume.test.ts", "test/zero-downtime.test.ts", "test/runbook.test.ts"];
const ALL = ["test/**/*.test.ts", "policies/**/*.test.ts"];

export default defineConfig({
  test: {
    // Names the run, for its template databases (harness/db.ts), and drops them at the end.
    globalSetup: ["test/globalSetup.ts"],
    testTimeout: 240_000,
    hookTimeout: 240_000,
    // Two cores: engine-driven tests are heavy; run files two at a time.
    pool: "forks",
    maxWorkers: 2,
    fileParallelism: true,
    projects: [
      { extends: true, test: { name: "core", include: CORE } },
      { extends: true, test: { name: "rest", include: ALL, exclude: [...CORE, ...SERIAL] } },
      { extends: true, test: { name: "serial", include: SERIAL, fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
