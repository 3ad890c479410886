/**
 * The report's chart, as hand-written SVG (no chart library): two panels.
 *
 *   1. Credits per allocation rule: one bar for the unified credits the rule's organizations held at backup time
 *      (credits_remaining, negative counted as 0), then one bar per pool for what they hold now (per-pool available).
 *   2. Margin per plan against the target: one bar per plan with a comparable price, a dashed line at the target;
 *      plans without a comparable price (custom, 0) are named, not hidden.
 *
 * Every bar is a <rect class="bar" data-panel data-group data-series data-value>, so a test can read the chart back.
 */
import { POOLS } from "../../lib/config";
import type { ChartFigures, MarginFigure } from "./figures";

const COLORS: Record<string, string> = {
  before: "#8c8c8c",
  ai: "#4e79a7",
  whatsapp: "#59a14f",
  email: "#f28e2b",
  sms: "#b07aa1",
  above: "#59a14f",
  below: "#e15759",
};

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (ch) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[ch]!);
}

/** 1234 -> "1,234"; 1234567 -> "1.23M"; 12345 -> "12.3k". */
export function compact(n: number): string {
  const a = Math.abs(n);
  if (a >= 1e6) return `${(n / 1e6).toFixed(a >= 1e7 ? 1 : 2)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`;
  return Math.round(n).toLocaleString("en-US");
}

/** Allocation rules in a stable order: catalogue plans by name, then "split". */
export function ruleOrder(rules: string[]): string[] {
  return [...new Set(rules)].sort((a, b) => (a === "split" ? 1 : b === "split" ? -1 : a.localeCompare(b)));
}

/** A "nice" axis maximum (1, 2, 2.5, 5 x 10^k) at or above max. */
function niceMax(max: number): number {
  if (max <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

export interface ChartInput {
  stack: string;
  chart: ChartFigures;
  margins: MarginFigure[];
  marginTarget: number;
}

export function renderSvg(input: ChartInput): string {
  const width = 980;
  const left = 70;
  const right = 20;
  const plotW = width - left - right;
  const out: string[] = [];
  const bar = (panel: string, group: string, series: string, value: number, x: number, y: number, w: number, h: number, fill: string) =>
    out.push(
      `<rect class="bar" data-panel="${panel}" data-group="${escapeXml(group)}" data-series="${series}" data-value="${value}" ` +
        `x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${w.toFixed(1)}" height="${Math.max(0, h).toFixed(1)}" fill="${fill}"/>`,
    );
  const text = (x: number, y: number, s: string, attrs = "") =>
    out.push(`<text x="${x.toFixed(1)}" y="${y.toFixed(1)}"${attrs ? ` ${attrs}` : ""}>${escapeXml(s)}</text>`);

  // Panel 1: credits per rule, before and after.
  const p1Top = 60;
  const p1H = 300;
  const rules = ruleOrder([...Object.keys(input.chart.before), ...Object.keys(input.chart.after)]);
  const series = ["before", ...POOLS] as const;
  const values = rules.flatMap((r) => [input.chart.before[r] ?? 0, ...POOLS.map((p) => input.chart.after[r]?.[p] ?? 0)]);
  const max1 = niceMax(Math.max(0, ...values));
  const y1 = (v: number) => p1Top + p1H - (v / max1) * p1H;
  text(left, 24, `Credits per allocation rule, stack ${input.stack}: unified before (backup) and per pool after (now)`, 'font-size="15" font-weight="bold"');
  text(
    left,
    42,
    "sum over the rule's organizations; before = credits_remaining (negative as 0), after = <pool>_credits_available",
    'font-size="11" fill="#555"',
  );
  for (let i = 0; i <= 4; i++) {
    const v = (max1 * i) / 4;
    out.push(`<line x1="${left}" x2="${width - right}" y1="${y1(v).toFixed(1)}" y2="${y1(v).toFixed(1)}" stroke="#ddd"/>`);
    text(left - 6, y1(v) + 4, compact(v), 'font-size="10" text-anchor="end"');
  }
  const groupW = rules.length ? plotW / rules.length : plotW;
  const barW = Math.min(22, (groupW - 16) / series.length);
  rules.forEach((rule, gi) => {
    const gx = left + gi * groupW + (groupW - barW * series.length) / 2;
    series.forEach((s, si) => {
      const v = s === "before" ? (input.chart.before[rule] ?? 0) : (input.chart.after[rule]?.[s] ?? 0);
      bar("credits", rule, s, v, gx + si * barW, y1(v), barW - 2, p1Top + p1H - y1(v), COLORS[s]);
      if (v > 0) text(gx + si * barW + (barW - 2) / 2, y1(v) - 3, compact(v), 'font-size="8" text-anchor="middle"');
    });
    text(left + gi * groupW + groupW / 2, p1Top + p1H + 16, rule.replace(/^plan:/, ""), 'font-size="11" text-anchor="middle"');
  });
  if (!rules.length) text(left + plotW / 2, p1Top + p1H / 2, "no organizations", 'font-size="13" text-anchor="middle" fill="#999"');
  series.forEach((s, i) => {
    const lx = left + i * 120;
    out.push(`<rect x="${lx}" y="${p1Top + p1H + 30}" width="12" height="12" fill="${COLORS[s]}"/>`);
    text(lx + 16, p1Top + p1H + 40, s === "before" ? "before (unified)" : `${s} (after)`, 'font-size="11"');
  });

  // Panel 2: margin per plan against the target.
  const p2Top = p1Top + p1H + 100;
  const p2H = 220;
  const y2 = (pct: number) => p2Top + p2H - (Math.max(0, Math.min(100, pct)) / 100) * p2H;
  text(
    left,
    p2Top - 20,
    `Margin per plan (every pool counted) against the target ${(input.marginTarget * 100).toFixed(1)}%`,
    'font-size="15" font-weight="bold"',
  );
  for (const pct of [0, 25, 50, 75, 100]) {
    out.push(`<line x1="${left}" x2="${width - right}" y1="${y2(pct).toFixed(1)}" y2="${y2(pct).toFixed(1)}" stroke="#ddd"/>`);
    text(left - 6, y2(pct) + 4, `${pct}%`, 'font-size="10" text-anchor="end"');
  }
  const plans = input.margins;
  const mW = plans.length ? plotW / plans.length : plotW;
  plans.forEach((m, i) => {
    const cx = left + i * mW + mW / 2;
    if (m.marginPct === null) {
      const why = m.priceEur === null ? "custom price" : m.priceEur === 0 ? "price 0" : "cost unknown";
      text(cx, p2Top + p2H - 8, `n/a (${why})`, 'font-size="11" text-anchor="middle" fill="#999"');
    } else {
      const w = Math.min(50, mW - 20);
      const below = m.belowTarget === true;
      bar(
        "margins",
        m.plan,
        below ? "below-target" : "at-or-above-target",
        m.marginPct,
        cx - w / 2,
        y2(m.marginPct),
        w,
        p2Top + p2H - y2(m.marginPct),
        below ? COLORS.below : COLORS.above,
      );
      text(cx, y2(m.marginPct) - 4, `${m.marginPct.toFixed(1)}%`, 'font-size="10" text-anchor="middle"');
    }
    text(cx, p2Top + p2H + 16, m.plan, 'font-size="11" text-anchor="middle"');
  });
  const ty = y2(input.marginTarget * 100);
  out.push(
    `<line class="target" data-value="${input.marginTarget}" x1="${left}" x2="${width - right}" y1="${ty.toFixed(1)}" y2="${ty.toFixed(1)}" stroke="#333" stroke-dasharray="6 4"/>`,
  );
  text(width - right, ty - 4, `target ${(input.marginTarget * 100).toFixed(1)}%`, 'font-size="10" text-anchor="end"');

  const height = p2Top + p2H + 40;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#fff"/>`,
    ...out,
    `</svg>`,
    "",
  ].join("\n");
}
