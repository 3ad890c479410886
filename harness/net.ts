/** Network helpers shared by bench and tests (harness/: neither imports the other). */
import * as net from "net";

/** A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it), for a throwaway server. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
