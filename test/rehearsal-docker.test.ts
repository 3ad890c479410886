/**
 * rehearsal/docker.ts (the scratch Postgres container for machines with a Docker engine), with Pulumi mocks only:
 * this machine has no Docker engine and no docker resource plugin, so the resources are checked as declared, never
 * created. What a mock cannot tell: that the image pulls, that the container starts and that pg_isready passes.
 */
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";

interface Created {
  type: string;
  name: string;
  inputs: any;
}
const created: Created[] = [];

const value = <T>(o: pulumi.Output<T>) => new Promise<T>((resolve) => o.apply(resolve));

describe("ScratchPostgres (rehearsal/docker.ts, Pulumi mocks)", () => {
  let ScratchPostgres: typeof import("../rehearsal/docker").ScratchPostgres;

  beforeAll(async () => {
    await pulumi.runtime.setMocks(
      {
        newResource(args) {
          created.push({ type: args.type, name: args.name, inputs: args.inputs });
          const state = { ...args.inputs, ...(args.type === "docker:index/remoteImage:RemoteImage" ? { imageId: "sha256:0123456789abcdef" } : {}) };
          return { id: `${args.name}-id`, state };
        },
        call(args) {
          return args.inputs;
        },
      },
      "guardian-rehearsal-db",
      "scratch",
      false,
    );
    ({ ScratchPostgres } = await import("../rehearsal/docker"));
  });

  it("declares the image and a container publishing 5432 on 127.0.0.1 only, waiting for pg_isready", async () => {
    const pg = new ScratchPostgres("scratch", { password: "s3cret pw/with:odd@chars" });
    const url = await value(pg.databaseUrl);
    const image = created.find((c) => c.type === "docker:index/remoteImage:RemoteImage" && c.name === "scratch-image")!;
    const container = created.find((c) => c.type === "docker:index/container:Container" && c.name === "scratch-container")!;
    expect(image.inputs).toMatchObject({ name: "postgres:15", keepLocally: true });
    expect(container.inputs.image).toBe("sha256:0123456789abcdef");
    expect(container.inputs.ports).toEqual([{ internal: 5432, external: 54330, ip: "127.0.0.1" }]);
    expect(container.inputs.healthcheck).toMatchObject({ tests: ["CMD-SHELL", "pg_isready -U postgres"] });
    expect(container.inputs).toMatchObject({ wait: true, mustRun: true, restart: "unless-stopped" });
    // The environment (it holds the password) reaches the engine as a secret.
    expect(container.inputs.envs).toEqual({
      [pulumi.runtime.specialSigKey]: pulumi.runtime.specialSecretSig,
      value: ["POSTGRES_PASSWORD=s3cret pw/with:odd@chars", "POSTGRES_DB=guardian_rehearsal"],
    });
    expect(url).toBe(`postgres://postgres:${encodeURIComponent("s3cret pw/with:odd@chars")}@127.0.0.1:54330/guardian_rehearsal`);
    expect(new URL(url).password).toBe(encodeURIComponent("s3cret pw/with:odd@chars"));
  });

  it("keeps the password secret: the URL output is a secret", async () => {
    const pg = new ScratchPostgres("secret-check", { password: "pw", port: 55432, image: "postgres:16", database: "rehearse_here" });
    expect(await pulumi.isSecret(pg.databaseUrl)).toBe(true);
    expect(await value(pg.databaseUrl)).toBe("postgres://postgres:pw@127.0.0.1:55432/rehearse_here");
    const container = created.find((c) => c.name === "secret-check-container")!;
    expect(container.inputs.ports[0].external).toBe(55432);
    expect(created.find((c) => c.name === "secret-check-image")!.inputs.name).toBe("postgres:16");
  });

  it("refuses a bad port or database name before declaring anything, naming the argument", () => {
    const before = created.length;
    expect(() => new ScratchPostgres("bad-port", { password: "pw", port: 70000 })).toThrow("ScratchPostgres bad-port: port must be 1..65535, got 70000");
    expect(() => new ScratchPostgres("bad-db", { password: "pw", database: "Drop Table" })).toThrow(
      'ScratchPostgres bad-db: database "Drop Table" is not a lower-case SQL identifier',
    );
    expect(created.slice(before).filter((c) => c.type.startsWith("docker:"))).toEqual([]);
  });
});
