/**
 * The rehearsal's scratch Postgres as its own small Pulumi program (project guardian-rehearsal-db), for a machine with
 * a Docker engine:
 *
 *   cd rehearsal && pulumi stack init scratch
 *   pulumi config set --secret rehearsal:password "$(openssl rand -hex 16)"
 *   pulumi up
 *   cd .. && npm run rehearse -- --target-url "$(cd rehearsal && pulumi stack output databaseUrl --show-secrets)"
 *   cd rehearsal && pulumi destroy   # when done
 *
 * Only tested with Pulumi mocks here (see docker.ts and README.md).
 */
import * as pulumi from "@pulumi/pulumi";
import { ScratchPostgres } from "./docker";

const config = new pulumi.Config("rehearsal");
const pg = new ScratchPostgres("scratch", {
  password: config.requireSecret("password"),
  image: config.get("image") ?? "postgres:15",
  port: config.getNumber("port") ?? 54330,
});

export const databaseUrl = pg.databaseUrl;
export const port = pg.port;
