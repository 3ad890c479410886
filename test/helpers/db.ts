/** A fresh database per test: harness/db.ts, shared with the bench. */
export * from "../../harness/db";
