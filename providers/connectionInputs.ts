/**
 * The connection inputs every dynamic provider takes: the connection string (always a secret) and the TLS settings the
 * program resolved from guardian:tls (lib/pgConnection.ts). A root certificate is public, so `tls` is stored as it is,
 * unless it came from a secret config value (guardian:tls set with --secret), in which case it stays secret in state too.
 * Without guardian:tls the input is omitted, and the providers follow the connection string's sslmode.
 */
import * as pulumi from "@pulumi/pulumi";
import type { TlsSettings } from "../lib/pgConnection";

export interface ConnectionInputs {
  /** Connection string (secret). */
  databaseUrl: pulumi.Input<string>;
  /** TLS settings; omitted: the connection string's sslmode, else libpq's default prefer. */
  tls?: pulumi.Input<TlsSettings>;
  /** The TLS settings came from a secret config value: keep them secret in state. */
  tlsSecret?: boolean;
}

/** The resource's inputs with the connection made secret as it should be, and its additionalSecretOutputs. */
export function connectionProps<T extends ConnectionInputs>(args: T): { props: Omit<T, "tlsSecret">; secretOutputs: string[] } {
  const { tlsSecret, ...rest } = args;
  const props: any = { ...rest, databaseUrl: pulumi.secret(args.databaseUrl) };
  if (args.tls === undefined) delete props.tls;
  else if (tlsSecret) props.tls = pulumi.secret(args.tls);
  return { props, secretOutputs: ["databaseUrl", ...(args.tls !== undefined && tlsSecret ? ["tls"] : [])] };
}
