#!/usr/bin/env bash
# The migration report as a GitHub job summary, chart included (.github/workflows/guardian.yml):
#
#   bash scripts/ci-summary.sh reports/staging.md [ARTIFACT] >> "$GITHUB_STEP_SUMMARY"
#
# A job summary is one Markdown document: it cannot show the SVG the report writes beside itself (a relative image
# link has nothing to point at there, and GitHub strips inline <svg>). So the chart is shown by its figures: the
# report's "## Chart" section carries, under the image line, the chart's table (credits per allocation rule before,
# per pool after), and the margin chart's figures are the "## Margin per plan" table. The image line becomes a
# pointer to the SVG in the uploaded artifact ARTIFACT. Everything else is the report as written.
# Exit 1 (nothing printed) when the report is missing or has no chart section.
set -euo pipefail

report="${1:?usage: bash scripts/ci-summary.sh REPORT.md [ARTIFACT]}"
artifact="${2:-the uploaded report artifact}"
[ -f "$report" ] || { echo "ci-summary: $report: no such report" >&2; exit 1; }
grep -q '^## Chart$' "$report" || { echo "ci-summary: $report has no \"## Chart\" section" >&2; exit 1; }
grep -q '^| rule | before: unified credits |' "$report" || { echo "ci-summary: $report: the chart section has no table of its figures" >&2; exit 1; }

# Only the image line of an .svg changes; sed's replacement is built with the artifact name escaped for it.
esc="$(printf '%s' "$artifact" | sed -e 's/[\/&#]/\\&/g')"
sed -E "s#^!\[([^]]*)\]\(([^)]+\.svg)\)\$#_\1: the chart \`\2\` is in ${esc}; its figures are the table below._#" "$report"
