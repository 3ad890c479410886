/**
 * ScratchPostgres: the rehearsal's scratch database as a Docker container, for machines with a Docker engine.
 *
 * It wraps a docker.RemoteImage (postgres:<major>, kept locally so a re-run does not pull again) and a docker.Container
 * that publishes 5432 on 127.0.0.1 only, waits for `pg_isready` (healthcheck + wait) and restarts unless stopped.
 * Output: `databaseUrl` (secret), an empty database to give `npm run rehearse -- --target-url <url>`.
 *
 * Tested only with Pulumi mocks (test/rehearsal-docker.test.ts, pulumi.runtime.setMocks): the machines this project is
 * built and tested on have no Docker engine and no docker resource plugin, so nothing here has run against a real
 * engine. See rehearsal/README.md.
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";

export interface ScratchPostgresArgs {
  /** Superuser password (secret). Required. */
  password: pulumi.Input<string>;
  /** Image; default "postgres:15". Use production's major version: the export is restored with COPY, not pg_restore. */
  image?: string;
  /** Port published on 127.0.0.1; default 54330 (54329 is the embedded Postgres of operations/shared/pgserver.ts). */
  port?: number;
  /** Database created in the container; default "guardian_rehearsal". */
  database?: string;
}

/** A throw-away Postgres in a local container. Type token: guardian:rehearsal:ScratchPostgres. */
export class ScratchPostgres extends pulumi.ComponentResource {
  public readonly image: docker.RemoteImage;
  public readonly container: docker.Container;
  /** postgres://postgres:<password>@127.0.0.1:<port>/<database>, as a secret. */
  public readonly databaseUrl: pulumi.Output<string>;
  public readonly port: number;

  constructor(name: string, args: ScratchPostgresArgs, opts?: pulumi.ComponentResourceOptions) {
    // Checked before anything is registered.
    const imageName = args.image ?? "postgres:15";
    const port = args.port ?? 54330;
    const database = args.database ?? "guardian_rehearsal";
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`ScratchPostgres ${name}: port must be 1..65535, got ${port}`);
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(database)) throw new Error(`ScratchPostgres ${name}: database "${database}" is not a lower-case SQL identifier`);
    super("guardian:rehearsal:ScratchPostgres", name, {}, opts);
    const password = pulumi.secret(args.password);

    this.image = new docker.RemoteImage(`${name}-image`, { name: imageName, keepLocally: true }, { parent: this });
    this.container = new docker.Container(
      `${name}-container`,
      {
        image: this.image.imageId,
        name: `guardian-${name}`,
        envs: pulumi.all([password]).apply(([pw]) => [`POSTGRES_PASSWORD=${pw}`, `POSTGRES_DB=${database}`]),
        ports: [{ internal: 5432, external: port, ip: "127.0.0.1" }],
        healthcheck: { tests: ["CMD-SHELL", "pg_isready -U postgres"], interval: "2s", timeout: "5s", retries: 30 },
        wait: true,
        waitTimeout: 120,
        restart: "unless-stopped",
        mustRun: true,
      },
      { parent: this, additionalSecretOutputs: ["envs"] },
    );
    this.port = port;
    this.databaseUrl = pulumi.secret(
      pulumi.all([password, this.container.id]).apply(([pw]) => `postgres://postgres:${encodeURIComponent(pw)}@127.0.0.1:${port}/${database}`),
    );
    this.registerOutputs({ image: this.image, container: this.container, databaseUrl: this.databaseUrl, port: this.port });
  }
}
