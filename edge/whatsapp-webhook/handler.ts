// WhatsApp Cloud API webhook, as a pure function of the request and its dependencies.
//
// Thin on purpose (DESIGN.md "Data flow"): verify the request, then hand the payload to the
// SQL function `whatsapp_receive(payload jsonb, signer text)`, which applies it idempotently
// to the numbers the signing app speaks for and wakes the worker, or during a burst keeps it
// durably in the backlog the worker applies right after, in arrival order. The same
// routes as the worker's: `/whatsapp-webhook` is the platform's Meta app (its secrets in the
// environment), `/whatsapp-webhook/<phone_number_id>` a tenant's own app, named by one of its
// numbers (that number's secrets in Vault). `index.ts` wires the real environment and
// Supabase client; tests inject stubs.

/** Meta: webhook payloads can be up to 3 MB. */
export const MAX_BODY_BYTES = 3 * 1024 * 1024;

const SIGNATURE_HEADER = "x-hub-signature-256";
const SIGNATURE_PREFIX = "sha256=";
const encoder = new TextEncoder();

/** `code` is PostgreSQL's SQLSTATE when the database refused the call. */
export type RpcResult = { error: { message: string; code?: string } | null };
export type Rpc = (fn: string, args: Record<string, unknown>) => Promise<RpcResult>;

/** A Meta app's webhook credentials: app secrets (signatures) and verify tokens (handshake). */
export type App = { appSecrets: string[]; verifyTokens: string[] };

const FUNCTION_NAME = "whatsapp-webhook";
const PHONE_NUMBER_ID = /^[0-9]{1,30}$/;

export interface Deps {
  /** Reads an environment variable (`Deno.env.get` in production). */
  env: (name: string) => string | undefined;
  /** Calls a Postgres function through PostgREST (`supabase.rpc` in production). */
  rpc: Rpc;
  /** The own app of the number `phoneNumberId` (`whatsapp_webhook_app`, from Vault), cached
   * by the caller; no secrets when the number is unknown, disabled or unreadable. */
  app: (phoneNumberId: string) => Promise<App>;
}

export async function handle(req: Request, deps: Deps): Promise<Response> {
  const url = new URL(req.url);
  const route = signerOf(url);
  if (route === undefined) return plain("not found", 404);
  const app = route === null ? platformApp(deps) : await tenantApp(route, deps);
  if (req.method === "GET") return handshake(url, app);
  if (req.method === "POST") return await notification(req, route, app, deps);
  return plain("method not allowed", 405, { Allow: "GET, POST" });
}

/** The path's app: null for the platform's, the phone_number_id of a tenant's own app, or
 * undefined when the path is neither. */
function signerOf(url: URL): string | null | undefined {
  const parts = url.pathname.split("/").filter((p) => p !== "");
  const at = parts.lastIndexOf(FUNCTION_NAME);
  const rest = at < 0 ? parts : parts.slice(at + 1);
  if (rest.length === 0) return null;
  return rest.length === 1 ? rest[0] : undefined;
}

/** The platform's Meta app: WHATSAPP_APP_SECRETS (a JSON list, as the worker reads it) and
 * WHATSAPP_VERIFY_TOKEN. */
function platformApp(deps: Deps): App {
  let secrets: unknown = [];
  try {
    secrets = JSON.parse(deps.env("WHATSAPP_APP_SECRETS") ?? "[]");
  } catch {
    console.error("whatsapp-webhook: WHATSAPP_APP_SECRETS is not a JSON list of strings");
  }
  const appSecrets = Array.isArray(secrets)
    ? secrets.filter((s) => typeof s === "string" && s !== "")
    : [];
  const token = deps.env("WHATSAPP_VERIFY_TOKEN") ?? "";
  return { appSecrets, verifyTokens: token === "" ? [] : [token] };
}

async function tenantApp(phoneNumberId: string, deps: Deps): Promise<App> {
  // Anything else cannot be a number's id: no database work for it.
  if (!PHONE_NUMBER_ID.test(phoneNumberId)) return { appSecrets: [], verifyTokens: [] };
  const app = await deps.app(phoneNumberId);
  return {
    appSecrets: app.appSecrets.filter((s) => s !== ""),
    verifyTokens: app.verifyTokens.filter((t) => t !== ""),
  };
}

/** Verification handshake: echo hub.challenge when hub.verify_token is the token of the app
 * the path names. GET carries no signature, so the signature check must not run here. */
function handshake(url: URL, app: App): Response {
  const expected = app.verifyTokens;
  const params = url.searchParams;
  const token = encoder.encode(params.get("hub.verify_token") ?? "");
  // Every token is compared, so the time taken does not tell which one matched.
  let matched = false;
  for (const candidate of expected) {
    matched = timingSafeEqual(token, encoder.encode(candidate)) || matched;
  }
  const ok = params.get("hub.mode") === "subscribe" && matched;
  return ok ? plain(params.get("hub.challenge") ?? "", 200) : plain("forbidden", 403);
}

async function notification(
  req: Request,
  signer: string | null,
  app: App,
  deps: Deps,
): Promise<Response> {
  const secrets = app.appSecrets;
  if (signer === null && secrets.length === 0) {
    // A configuration error, not the sender's: 500 makes Meta retry (for up to 7 days)
    // until a secret is set, instead of losing the events.
    console.error("whatsapp-webhook: the platform's app has no secret (WHATSAPP_APP_SECRETS)");
    return plain("webhook not configured", 500);
  }
  const body = await readLimited(req, MAX_BODY_BYTES);
  if (body === null) return plain("payload too large", 413);
  // The HMAC covers the raw bytes exactly as sent (escaped unicode); never re-serialise.
  if (!(await verifySignature(body, req.headers.get(SIGNATURE_HEADER), secrets))) {
    return plain("invalid signature", 401);
  }

  let payload: unknown;
  try {
    payload = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (err) {
    return await quarantine(body, `not UTF-8 JSON: ${describe(err)}`, deps);
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    return await quarantine(body, "JSON is not an object", deps);
  }
  const [cleaned, strings] = jsonbSafe(payload);
  if (strings > 0) {
    console.warn(`whatsapp-webhook: ${strings} string(s) PostgreSQL refuses replaced by U+FFFD`);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
    const rawSha256 = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    payload = { ...(cleaned as object), [CLEANED_KEY]: { strings, raw_sha256: rawSha256 } };
  }
  return await call(deps, "whatsapp_receive", { payload, signer }, "EVENT_RECEIVED", (error) =>
    // Other data exceptions (class 22) are the bytes' fault, not ours: resending them cannot
    // help, so they are kept like invalid JSON.
    error.code?.startsWith("22")
      ? quarantine(body, `PostgreSQL refused the JSON: ${error.message}`, deps)
      : null);
}

/** The key ingest reads the cleaning note from (inbound_events.cleaned). */
export const CLEANED_KEY = "zapbase_cleaned";
// NUL, and a UTF-16 surrogate without its pair: what PostgreSQL's jsonb refuses.
// deno-lint-ignore no-control-regex
const REFUSED = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** `value` (parsed JSON) with every character jsonb refuses, in keys and strings, replaced by
 * U+FFFD, and how many strings changed: one such string would otherwise cost the whole body.
 * The twin of `jsonb_safe` in python/zapbase/whatsapp/cleaning.py (same cases, same results). */
export function jsonbSafe(value: unknown): [unknown, number] {
  if (typeof value === "string") {
    const cleaned = value.replace(REFUSED, "\ufffd");
    return [cleaned, cleaned === value ? 0 : 1];
  }
  if (Array.isArray(value)) {
    const items = value.map(jsonbSafe);
    return [items.map(([item]) => item), items.reduce((n, [, changed]) => n + changed, 0)];
  }
  if (value !== null && typeof value === "object") {
    let changed = 0;
    const result: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      const [cleanKey, keyChanges] = jsonbSafe(key);
      const [cleanItem, itemChanges] = jsonbSafe(item);
      result[cleanKey as string] = cleanItem;
      changed += keyChanges + itemChanges;
    }
    return [result, changed];
  }
  return [value, 0];
}

/** A correctly signed body that is not a JSON object cannot become valid by being resent.
 * Keep it for inspection and answer 200, so Meta stops retrying the same bytes for 7 days. */
async function quarantine(body: BufferSource, reason: string, deps: Deps): Promise<Response> {
  const text = new TextDecoder("utf-8", { fatal: false }).decode(body);
  console.warn(`whatsapp-webhook: quarantined ${body.byteLength} bytes: ${reason}`);
  return await call(deps, "whatsapp_quarantine_raw", { body: text, reason }, "QUARANTINED");
}

/** An RPC failure is ours (database down, bug): 500 so Meta delivers the event again. */
async function call(
  deps: Deps,
  fn: string,
  args: Record<string, unknown>,
  okText: string,
  onError: (error: { message: string; code?: string }) => Promise<Response> | null = () => null,
): Promise<Response> {
  try {
    const { error } = await deps.rpc(fn, args);
    if (error === null) return plain(okText, 200);
    const handled = onError(error);
    if (handled !== null) return await handled;
    console.error(`whatsapp-webhook: ${fn} failed: ${error.message}`);
  } catch (err) {
    console.error(`whatsapp-webhook: ${fn} threw: ${describe(err)}`);
  }
  return plain("ingest failed", 500);
}

/** The body, or null as soon as it exceeds `limit` bytes (checked while streaming). */
export async function readLimited(req: Request, limit: number): Promise<BufferSource | null> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) return null;
  if (req.body === null) return new Uint8Array();
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

/** True when the header is `sha256=<64 lowercase hex>` and matches under any secret.
 * WebCrypto's HMAC verify compares in constant time. */
export async function verifySignature(
  body: BufferSource,
  header: string | null,
  secrets: readonly string[],
): Promise<boolean> {
  if (header === null || !header.startsWith(SIGNATURE_PREFIX)) return false;
  const hex = header.slice(SIGNATURE_PREFIX.length);
  if (!/^[0-9a-f]{64}$/.test(hex)) return false;
  const signature = new Uint8Array(32);
  for (let i = 0; i < 32; i++) signature[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  let valid = false;
  for (const secret of secrets) {
    const key = await crypto.subtle.importKey(
      "raw",
      encoder.encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["verify"],
    );
    // Every secret is tried, so the time taken does not tell which one matched.
    valid = (await crypto.subtle.verify("HMAC", key, signature, body)) || valid;
  }
  return valid;
}

/** Compares without an early exit; only the longer length leaks. */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function plain(text: string, status: number, headers: Record<string, string> = {}): Response {
  return new Response(text, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}
