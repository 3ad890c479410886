/**
 * Safe defaults of the throw-away tools (issue 13, "Destructive defaults"): pure decisions, so the scripts make one
 * call and the tests can ask them directly.
 *
 *   demoBackend          the demo removes and re-creates stack `dev` (`pulumi stack rm dev --force`), so it runs only
 *                        on the project's own file backend, file://<project>/.guardian/state, which it sets itself.
 *                        A PULUMI_BACKEND_URL pointing anywhere else (another folder, s3://, Pulumi Cloud) is refused.
 *   rehearsalPassphrase  the rehearsal restores a real customer export and keeps the scratch database's URL in stack
 *                        config and state, encrypted with the passphrase: there is no default passphrase, the
 *                        environment must give one (PULUMI_CONFIG_PASSPHRASE, not empty, or PULUMI_CONFIG_PASSPHRASE_FILE).
 *
 * (Scratch databases: operations/shared/pgserver.ts, GUARDIAN_TEST_DATABASE_URL, the local-server rule and the COMMENT mark.)
 */
import * as os from "os";
import * as path from "path";

/** The project's own state backend: a folder of the checkout (gitignored under .guardian/). */
export function projectBackendUrl(projectRoot: string): string {
  return `file://${path.join(projectRoot, ".guardian", "state")}`;
}

/** The folder a file:// backend URL names (file://~ is the home directory), or undefined for any other backend. */
export function fileBackendPath(url: string, cwd: string): string | undefined {
  if (!url.startsWith("file://")) return undefined;
  let p = decodeURIComponent(url.slice("file://".length).split("?")[0]);
  if (p === "~" || p.startsWith("~/")) p = path.join(os.homedir(), p.slice(1));
  return path.resolve(cwd, p);
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/**
 * The backend the demo may use: the project's own when PULUMI_BACKEND_URL is unset (the demo then sets it, so the
 * machine's global `pulumi login` is never used), or a file:// backend inside <project>/.guardian/. Anything else is
 * refused with a message saying what to do.
 */
export function demoBackend(env: NodeJS.ProcessEnv, projectRoot: string): { url: string } | { refused: string } {
  const own = projectBackendUrl(projectRoot);
  const given = env.PULUMI_BACKEND_URL;
  if (!given) return { url: own };
  const dir = fileBackendPath(given, projectRoot);
  if (dir && inside(dir, path.join(projectRoot, ".guardian"))) return { url: `file://${dir}` };
  return {
    refused:
      `demo refused: PULUMI_BACKEND_URL is ${given.replace(/\/\/[^/@]*@/, "//***@")}, not a folder of this project. The demo removes and ` +
      `re-creates stack dev (pulumi stack rm dev --force), so it runs only on the project's own backend, ${own}. ` +
      `Unset PULUMI_BACKEND_URL (the demo then sets it itself) or set it to that URL.`,
  };
}

/**
 * The passphrase settings for the rehearsal's stack, from the environment only. `needed` is false for a run that never
 * opens a stack (--restore-only).
 */
export function rehearsalPassphrase(env: NodeJS.ProcessEnv, needed = true): { env: Record<string, string> } | { refused: string } {
  if (env.PULUMI_CONFIG_PASSPHRASE) return { env: { PULUMI_CONFIG_PASSPHRASE: env.PULUMI_CONFIG_PASSPHRASE } };
  if (env.PULUMI_CONFIG_PASSPHRASE_FILE) return { env: { PULUMI_CONFIG_PASSPHRASE_FILE: env.PULUMI_CONFIG_PASSPHRASE_FILE } };
  if (!needed) return { env: {} };
  return {
    refused:
      "rehearse refused: no passphrase. The rehearsal restores a real customer export and keeps the scratch database's " +
      "URL in the stack's config and state, encrypted with the stack's passphrase; there is no default one. Set " +
      "PULUMI_CONFIG_PASSPHRASE (not empty) or PULUMI_CONFIG_PASSPHRASE_FILE, as for pulumi itself. (--restore-only needs none.)",
  };
}
