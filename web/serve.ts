/**
 * A small static file server for the built page (`deno task web`): files of one folder, with
 * the right content types (`application/wasm` for TensorFlow.js' binaries), nothing outside it.
 *
 * @module
 */
import { extname, join, normalize } from "node:path";

/** Content types by file extension. */
const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".png": "image/png",
  ".wasm": "application/wasm",
  ".bin": "application/octet-stream",
};

/** Settings of {@linkcode serveSite}. */
export interface ServeOptions {
  /** Address to listen on (default 127.0.0.1: this machine only). */
  hostname: string;
  /** Port (0: any free one). */
  port: number;
  /** Called with the page's address once listening. */
  onListen: (url: string) => void;
}

/** Defaults of {@linkcode serveSite}. */
export const SERVE_DEFAULTS: Readonly<ServeOptions> = Object.freeze({
  hostname: "127.0.0.1",
  port: 8318,
  onListen: () => {},
});

/**
 * Answers one request from the files of `root`.
 *
 * @param root the served folder
 * @param request a GET or HEAD request
 * @returns the file, 404 when there is none, 405 for other methods
 */
export async function serveFile(root: string, request: Request): Promise<Response> {
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("method not allowed\n", { status: 405 });
  }
  let path = decodeURIComponent(new URL(request.url).pathname);
  if (path.endsWith("/")) path += "index.html";
  const relative = normalize(path).replace(/^(\.\.(\/|$))+/, "");
  const file = join(root, relative);
  if (!file.startsWith(join(root, "/")) && file !== root) {
    return new Response("not found\n", { status: 404 });
  }
  try {
    const bytes = await Deno.readFile(file);
    const headers = {
      "content-type": CONTENT_TYPES[extname(file)] ?? "application/octet-stream",
      "cache-control": "no-cache",
    };
    return new Response(request.method === "HEAD" ? null : bytes, { headers });
  } catch {
    return new Response("not found\n", { status: 404 });
  }
}

/**
 * Serves `root` over HTTP until the returned server is shut down.
 *
 * @param root the built page's folder
 * @param options address, port and a callback with the page's URL
 * @returns the server and the page's address
 * @throws Error naming the address when it cannot listen
 */
export function serveSite(
  root: string,
  options: Partial<ServeOptions> = {},
): { server: Deno.HttpServer<Deno.NetAddr>; url: string } {
  const { hostname, port, onListen } = { ...SERVE_DEFAULTS, ...options };
  let url = "";
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname,
      port,
      onListen: (addr) => {
        url = `http://${addr.hostname}:${addr.port}/`;
        onListen(url);
      },
    }, (request) => serveFile(root, request));
  } catch (error) {
    throw new Error(
      `Cannot listen on ${hostname}:${port}: ${(error as Error).message}` +
        (port !== 0 ? " (pass --port with another port, or 0 for any free one)" : ""),
    );
  }
  if (!url) url = `http://${hostname}:${server.addr.port}/`;
  return { server, url };
}
