/**
 * Backup exports are authenticated: manifest.json is signed (manifest.sig, HMAC-SHA256 of its exact bytes) with a key
 * derived from the stack's passphrase, which is never stored beside the export nor anywhere else. The manifest holds
 * every table file's sha256, so a valid signature vouches for every row: whoever can edit the files (and recompute
 * the sha256 and the checksums) cannot make a valid signature without the passphrase.
 *
 * The key: HMAC-SHA256(passphrase, "guardian-credits backup manifest v1"), the passphrase from
 * GUARDIAN_BACKUP_PASSPHRASE (or the file GUARDIAN_BACKUP_PASSPHRASE_FILE names), else the stack's
 * PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE), as pulumi reads it. The backup provider
 * derives it at run time from its own environment (it captures no secret); the restore check, the rehearsal and a
 * disaster restore derive it the same way. A stack whose secrets provider needs no passphrase writes unsigned exports,
 * and says so (output backupManifestSigned false); restoring one needs `allowUnsigned`.
 */
// Node's modules are required inside each function: the backup and restore-check providers call these, and a dynamic
// provider's code is serialized (a module captured at import would be serialized with it).
type Fs = typeof import("fs");
type Crypto = typeof import("crypto");
type PathMod = typeof import("path");

const LABEL = "guardian-credits backup manifest v1";
export const SIGNATURE_FILE = "manifest.sig";
const PREFIX = "hmac-sha256:";

/** The signing key, or undefined when the environment gives no passphrase. */
export function manifestKey(env: NodeJS.ProcessEnv = process.env): Buffer | undefined {
  const fs: Fs = require("fs");
  const crypto: Crypto = require("crypto");
  // GUARDIAN_BACKUP_PASSPHRASE[_FILE] first: a rehearsal's own stack may have another passphrase than the stack
  // whose backup it restores.
  let passphrase: string | undefined;
  for (const [value, file] of [
    [env.GUARDIAN_BACKUP_PASSPHRASE, env.GUARDIAN_BACKUP_PASSPHRASE_FILE],
    [env.PULUMI_CONFIG_PASSPHRASE, env.PULUMI_CONFIG_PASSPHRASE_FILE],
  ]) {
    if (passphrase) break;
    passphrase = value || undefined;
    if (!passphrase && file) {
      try {
        passphrase = fs.readFileSync(file, "utf8").replace(/\r?\n$/, "") || undefined;
      } catch {
        passphrase = undefined;
      }
    }
  }
  if (!passphrase) return undefined;
  return crypto.createHmac("sha256", passphrase).update(LABEL).digest();
}

export function signatureOf(manifestBytes: Buffer, key: Buffer): string {
  const crypto: Crypto = require("crypto");
  return `${PREFIX}${crypto.createHmac("sha256", key).update(manifestBytes).digest("hex")}\n`;
}

/** Writes manifest.sig beside manifest.json (mode 0600). */
export function signManifest(exportDir: string, key: Buffer): string {
  const fs: Fs = require("fs");
  const path: PathMod = require("path");
  const file = path.join(exportDir, SIGNATURE_FILE);
  fs.writeFileSync(file, signatureOf(fs.readFileSync(path.join(exportDir, "manifest.json")), key), { mode: 0o600 });
  fs.chmodSync(file, 0o600);
  return file;
}

/**
 * Whether the export's manifest is the one the backup signed. A problem in words, or undefined when it verifies
 * (or when it is unsigned and `allowUnsigned`).
 */
export function manifestSignatureProblem(exportDir: string, key: Buffer | undefined, allowUnsigned = false): string | undefined {
  const fs: Fs = require("fs");
  const path: PathMod = require("path");
  const crypto: Crypto = require("crypto");
  const sigFile = path.join(exportDir, SIGNATURE_FILE);
  if (!fs.existsSync(sigFile)) {
    return allowUnsigned
      ? undefined
      : `${sigFile} is missing: the export is unsigned, so anyone who could write its files could have changed them (restore it anyway only with allowUnsigned / --allow-unsigned)`;
  }
  if (!key)
    return `${sigFile} cannot be verified: no passphrase (GUARDIAN_BACKUP_PASSPHRASE, else PULUMI_CONFIG_PASSPHRASE: the one of the stack that took the backup)`;
  const want = Buffer.from(signatureOf(fs.readFileSync(path.join(exportDir, "manifest.json")), key));
  const have = fs.readFileSync(sigFile);
  if (have.length !== want.length || !crypto.timingSafeEqual(have, want)) {
    return `${sigFile} does not match manifest.json: the manifest was changed after the backup signed it, or the passphrase is not the one of the stack that took it (set GUARDIAN_BACKUP_PASSPHRASE)`;
  }
  return undefined;
}
