/** The real-CRM fixture: harness/realCrm.ts (and harness/fixtures/real-crm), shared with the bench. */
export * from "../../harness/realCrm";
