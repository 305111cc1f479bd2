// Hotmart webhook (postback v2), as a pure function of the request and its dependencies.
//
// The twin of the worker's route (python/zapbase/hotmart/webhook.py), same checks and status
// codes: `/hotmart-webhook/<integration id>` is one tenant's Hotmart integration. The
// X-HOTMART-HOTTOK header is compared in constant time with that integration's hottok (Vault,
// read through `hotmart_webhook_secret` by index.ts); a wrong one is only counted
// (`hotmart_reject`) and answered 401. Anything else is stored by SQL and answered 200:
// `hotmart_ingest` keeps the event (idempotent by its id) and applies it, and a body that is
// not a JSON object is kept by `hotmart_quarantine_raw`, since Hotmart deactivates a URL that
// keeps failing. `index.ts` wires the real environment and Supabase client; tests inject stubs.

import { jsonbSafe, readLimited, type Rpc, timingSafeEqual } from "../whatsapp-webhook/handler.ts";

/** Postback bodies are a few KB; anything this large is not Hotmart's. */
export const MAX_BODY_BYTES = 1024 * 1024;
export const HOTTOK_HEADER = "x-hotmart-hottok";

const FUNCTION_NAME = "hotmart-webhook";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const encoder = new TextEncoder();

export interface Deps {
  /** Calls a Postgres function through PostgREST (`supabase.rpc` in production). */
  rpc: Rpc;
  /** The integration's hottok (`hotmart_webhook_secret`, from Vault), cached by the caller;
   * null when there is none or it cannot be read. */
  hottok: (integrationId: string) => Promise<string | null>;
}

export async function handle(req: Request, deps: Deps): Promise<Response> {
  const integrationId = integrationOf(new URL(req.url));
  if (integrationId === undefined) return plain("not found", 404);
  if (req.method !== "POST") return plain("method not allowed", 405, { Allow: "POST" });
  // Cannot be an integration: no database work for it.
  if (integrationId === null) return plain("invalid hottok", 401);
  const body = await readLimited(req, MAX_BODY_BYTES);
  if (body === null) return plain("payload too large", 413);

  const expected = await deps.hottok(integrationId);
  const given = encoder.encode(req.headers.get(HOTTOK_HEADER) ?? "");
  // No early exit on a mismatch: the time taken tells nothing about the hottok.
  if (expected === null || expected === "" || !timingSafeEqual(given, encoder.encode(expected))) {
    await call(deps, "hotmart_reject", { integration_id: integrationId }, "");
    console.warn(`hotmart-webhook: wrong hottok for ${integrationId}`);
    return plain("invalid hottok", 401);
  }

  let payload: unknown;
  try {
    payload = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (err) {
    return await quarantine(integrationId, body, `not JSON: ${describe(err)}`, deps);
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    return await quarantine(integrationId, body, "JSON is not an object", deps);
  }
  const [cleaned] = jsonbSafe(payload);
  return await call(
    deps,
    "hotmart_ingest",
    { integration_id: integrationId, payload: cleaned },
    "OK",
    (error) =>
      // A data exception (class 22) is the bytes' fault: resending cannot help, keep them.
      error.code?.startsWith("22")
        ? quarantine(integrationId, body, `PostgreSQL refused it: ${error.message}`, deps)
        : null,
  );
}

/** The integration id of the path: null when the last segment cannot be one, undefined when
 * the path is not this function's. */
function integrationOf(url: URL): string | null | undefined {
  const parts = url.pathname.split("/").filter((p) => p !== "");
  const at = parts.lastIndexOf(FUNCTION_NAME);
  const rest = at < 0 ? parts : parts.slice(at + 1);
  if (rest.length !== 1) return undefined;
  return UUID.test(rest[0]) ? rest[0].toLowerCase() : null;
}

async function quarantine(
  integrationId: string,
  body: BufferSource,
  reason: string,
  deps: Deps,
): Promise<Response> {
  const text = new TextDecoder("utf-8", { fatal: false }).decode(body).replaceAll(
    "\u0000",
    "\ufffd",
  );
  console.warn(`hotmart-webhook: quarantined ${body.byteLength} bytes: ${reason}`);
  return await call(
    deps,
    "hotmart_quarantine_raw",
    { integration_id: integrationId, body: text, reason: reason.slice(0, 2000) },
    "QUARANTINED",
  );
}

/** An RPC failure is ours (database down): 500, so Hotmart delivers the event again. */
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
    console.error(`hotmart-webhook: ${fn} failed: ${error.message}`);
  } catch (err) {
    console.error(`hotmart-webhook: ${fn} threw: ${describe(err)}`);
  }
  return plain("ingest failed", 500);
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
