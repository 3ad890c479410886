/**
 * Once per test run: names the run (GUARDIAN_TEST_RUN, inherited by every test worker), so the template databases
 * harness/db.ts builds are this run's alone; at the end, drops them, and any a killed run left more than 12 hours ago.
 */
import * as crypto from "crypto";
import { dropTemplates } from "../harness/db";

export default function setup(): () => Promise<void> {
  const run = process.env.GUARDIAN_TEST_RUN ?? `r${crypto.randomBytes(5).toString("hex")}`;
  process.env.GUARDIAN_TEST_RUN = run;
  return async () => {
    await dropTemplates(run);
  };
}
