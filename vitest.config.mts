import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "policies/**/*.test.ts"],
    testTimeout: 240_000,
    hookTimeout: 240_000,
    // Two cores: engine-driven tests are heavy; run files two at a time.
    pool: "forks",
    maxWorkers: 2,
    fileParallelism: true,
  },
});
