/**
 * Progress of the long steps reaches the engine's event stream during `pulumi up` (what the operator sees in the
 * CLI and what Automation API's onEvent receives), readable and without flooding: the backfill prints
 * done/total, percent, rate and ETA at most every 2 s (the providers' interval), the backup and the restore check one
 * line per table with its row count.
 *
 * 300 organizations in batches of 20 with a 300 ms pause (guardian:backfill.pauseMs, the knob prod uses) make the
 * backfill last ~4.5 s, so its progress line appears more than once without changing the providers' interval.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineEvent } from "@pulumi/pulumi/automation";
import { type Migrated, seededStack, teardown, up } from "./helpers/migration";

/** The provider and program lines of an event stream (debug-level engine chatter left out), with their positions. */
function lines(events: EngineEvent[]): { at: number; text: string }[] {
  const out: { at: number; text: string }[] = [];
  events.forEach((e, at) => {
    const d = e.diagnosticEvent;
    if (!d || (d.severity as string) === "debug") return; // the engine also sends debug chatter ("Registering resource ...")
    for (const text of d.message.split("\n")) if (text.trim()) out.push({ at, text: text.trim() });
  });
  return out;
}

const PROGRESS = /^backfill: ([\d,]+)\/([\d,]+) orgs \((\d+)%\), ([\d,]+) orgs\/s, ETA (\d+) s$/;
const num = (s: string) => Number(s.replace(/,/g, ""));

describe("progress in the engine events of an up", () => {
  let m: Migrated;
  let out: { at: number; text: string }[];
  let events: EngineEvent[];

  beforeAll(async () => {
    m = await seededStack(300, { backfill: { batchSize: 20, pauseMs: 300 } });
    await up(m.t);
    events = m.t.events;
    out = lines(events);
  });
  afterAll(() => teardown(m));

  it("the backfill reports done/total, percent, rate and ETA several times, not once per batch", () => {
    const progress = out.filter((l) => PROGRESS.test(l.text)).map((l) => PROGRESS.exec(l.text)!);
    expect(progress.length).toBeGreaterThanOrEqual(2);
    const [, batches] = out.map((l) => /^backfill: done: 300 orgs in (\d+) batches/.exec(l.text)).find(Boolean) ?? [];
    expect(Number(batches)).toBeGreaterThanOrEqual(300 / 20); // at most 20 orgs per batch
    expect(progress.length).toBeLessThan(Number(batches)); // at most one line per 2 s, not one per batch
    const done = progress.map((p) => num(p[1]));
    expect(done).toEqual([...done].sort((a, b) => a - b));
    expect(new Set(done).size).toBe(done.length);
    for (const p of progress) {
      expect(num(p[2])).toBe(300);
      expect(Number(p[3])).toBe(Math.floor((100 * num(p[1])) / 300));
      expect(num(p[4])).toBeGreaterThan(0);
    }
    expect(out.map((l) => l.text)).toContainEqual(expect.stringMatching(/^backfill: 300 organizations to migrate, at most 20 per batch$/));
    expect(out.map((l) => l.text)).toContainEqual(expect.stringMatching(/^backfill: done: 300 orgs in \d+ batches, [\d.]+ s \([\d,]+ orgs\/s\)/));
  });

  it("the backup reports each table copied and exported with its row count, and the restore check each table restored", () => {
    const text = out.map((l) => l.text);
    for (const t of ["organizations", "organization_credits", "credit_actions", "credit_consumption_logs"]) {
      expect(text).toContainEqual(expect.stringMatching(new RegExp(`^backup guardian_backup_\\w+: copied ${t}: [\\d,]+ rows$`)));
      expect(text).toContainEqual(
        expect.stringMatching(new RegExp(`^backup guardian_backup_\\w+: exported ${t}: [\\d,]+ rows, [\\d,]+ bytes, sha256 [0-9a-f]{12}…$`)),
      );
      expect(text).toContainEqual(expect.stringMatching(new RegExp(`^restore-check guardian_backup_\\w+: ${t}: [\\d,]+ rows restored, checksums equal$`)));
    }
    expect(text).toContainEqual(expect.stringMatching(/^backup guardian_backup_\w+: copied organization_credits: 300 rows$/));
  });

  it("the lines arrive while the update runs: before the backfill's outcome, after its start", () => {
    const urn = (e: EngineEvent) => e.resourcePreEvent?.metadata.urn ?? e.resOutputsEvent?.metadata.urn ?? "";
    const started = events.findIndex((e) => e.resourcePreEvent && urn(e).endsWith("::backfill-run"));
    const finished = events.findIndex((e) => e.resOutputsEvent && urn(e).endsWith("::backfill-run"));
    expect(started).toBeGreaterThanOrEqual(0);
    expect(finished).toBeGreaterThan(started);
    const progress = out.filter((l) => PROGRESS.test(l.text));
    for (const p of progress) {
      expect(p.at).toBeGreaterThan(started);
      expect(p.at).toBeLessThan(finished);
    }
  });
});
