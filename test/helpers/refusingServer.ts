/**
 * A server that speaks just enough of the PostgreSQL protocol to ask for a password and refuse it (SQLSTATE 28P01),
 * as a server with password authentication does. The local test server trusts 127.0.0.1 in pg_hba.conf, so it
 * accepts any password; this stands in for one that does not (go/no-go's tests, and the engine's with
 * guardian:databaseUrl pointing at it).
 */
import * as net from "net";

export function refusingServer(): Promise<{ port: number; close: () => void; connections: () => number }> {
  const msg = (type: string, body: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeInt32BE(body.length + 4);
    return Buffer.concat([Buffer.from(type), len, body]);
  };
  let connections = 0;
  const server = net.createServer((sock) => {
    connections++;
    let startup = true;
    let done = false;
    sock.on("error", () => undefined);
    sock.on("data", () => {
      if (done) return; // the client's Terminate message, after the refusal
      if (startup) {
        startup = false;
        const cleartext = Buffer.alloc(4);
        cleartext.writeInt32BE(3); // AuthenticationCleartextPassword
        sock.write(msg("R", cleartext));
        return;
      }
      const fields = ["SFATAL", "VFATAL", "C28P01", 'Mpassword authentication failed for user "guardian"'].map((f) => Buffer.from(`${f}\0`));
      done = true;
      sock.end(msg("E", Buffer.concat([...fields, Buffer.from("\0")])));
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({ port: (server.address() as net.AddressInfo).port, close: () => server.close(), connections: () => connections }),
    ),
  );
}
