// Tests of the Hotmart webhook handler with stubbed RPCs: offline, no supabase-js. The same
// cases as the worker's route (tests/commerce_db/test_hotmart_webhook.py) on the same corpus.
import assert from "node:assert/strict";
import { type Deps, handle, HOTTOK_HEADER, MAX_BODY_BYTES } from "./handler.ts";
import type { RpcResult } from "../whatsapp-webhook/handler.ts";
import approved from "../../tests/commerce_db/hotmart_events/purchase_approved.json" with {
  type: "json",
};

const INTEGRATION = "6f1d7a8e-2b3c-4d5e-8f90-a1b2c3d4e5f6";
const HOTTOK = "hottok-da-loja-demo-7c1f";
const URL_BASE = "https://project.supabase.co/functions/v1/hotmart-webhook";

type Call = { fn: string; args: Record<string, unknown> };

function deps(
  result: RpcResult | Error = { error: null },
  hottoks: Record<string, string> = { [INTEGRATION]: HOTTOK },
): Deps & { calls: Call[] } {
  const calls: Call[] = [];
  return {
    calls,
    rpc: (fn, args) => {
      calls.push({ fn, args });
      if (result instanceof Error) return Promise.reject(result);
      return Promise.resolve(fn === "hotmart_ingest" ? result : { error: null });
    },
    hottok: (id) => Promise.resolve(hottoks[id] ?? null),
  };
}

function post(
  body: BodyInit,
  hottok: string | null = HOTTOK,
  path = `/${INTEGRATION}`,
): Request {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (hottok !== null) headers[HOTTOK_HEADER] = hottok;
  return new Request(URL_BASE + path, { method: "POST", body, headers });
}

Deno.test("the right hottok stores the event through hotmart_ingest", async () => {
  const d = deps();
  const res = await handle(post(JSON.stringify(approved)), d);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "OK");
  assert.deepEqual(d.calls, [{
    fn: "hotmart_ingest",
    args: { integration_id: INTEGRATION, payload: approved },
  }]);
});

for (const hottok of [null, "", HOTTOK.slice(0, -1), HOTTOK + "x", "hottok-da-outra-loja"]) {
  Deno.test(`a wrong hottok (${JSON.stringify(hottok)}) is refused and only counted`, async () => {
    const d = deps();
    const res = await handle(post(JSON.stringify(approved), hottok), d);
    assert.equal(res.status, 401);
    assert.deepEqual(d.calls, [{ fn: "hotmart_reject", args: { integration_id: INTEGRATION } }]);
  });
}

Deno.test("an integration without a hottok accepts nothing", async () => {
  const d = deps({ error: null }, {});
  const res = await handle(post(JSON.stringify(approved), ""), d);
  assert.equal(res.status, 401);
  assert.deepEqual(d.calls.map((c) => c.fn), ["hotmart_reject"]);
});

Deno.test("a path that cannot name an integration costs no database work", async () => {
  const d = deps();
  assert.equal((await handle(post("{}", HOTTOK, "/not-a-uuid"), d)).status, 401);
  assert.equal((await handle(post("{}", HOTTOK, "/a/b"), d)).status, 404);
  assert.deepEqual(d.calls, []);
});

Deno.test("only POST", async () => {
  const res = await handle(new Request(`${URL_BASE}/${INTEGRATION}`), deps());
  assert.equal(res.status, 405);
});

for (const body of ["{not json", "[1, 2]", "null", new Uint8Array([0xff, 0xfe])]) {
  Deno.test(`a malformed body (${String(body).slice(0, 10)}) is kept and answered 200`, async () => {
    const d = deps();
    const res = await handle(post(body), d);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "QUARANTINED");
    assert.deepEqual(d.calls.map((c) => c.fn), ["hotmart_quarantine_raw"]);
  });
}

Deno.test("strings PostgreSQL refuses are replaced before ingest", async () => {
  const d = deps();
  const body = JSON.stringify(approved).replace("Ana Souza", "Ana\\u0000Souza");
  assert.equal((await handle(post(body), d)).status, 200);
  const payload = d.calls[0].args.payload as { data: { buyer: { name: string } } };
  assert.equal(payload.data.buyer.name, "Ana\ufffdSouza");
});

Deno.test("a data exception is kept as text, a database failure is a 500", async () => {
  const refused = deps({ error: { message: "invalid input", code: "22P02" } });
  assert.equal((await handle(post(JSON.stringify(approved)), refused)).status, 200);
  assert.deepEqual(refused.calls.map((c) => c.fn), ["hotmart_ingest", "hotmart_quarantine_raw"]);
  const down = deps({ error: { message: "connection refused", code: "08006" } });
  assert.equal((await handle(post(JSON.stringify(approved)), down)).status, 500);
  assert.equal((await handle(post(JSON.stringify(approved)), deps(new Error("boom")))).status, 500);
});

Deno.test("a body over 1 MB is refused before anything", async () => {
  const d = deps();
  const res = await handle(post("x".repeat(MAX_BODY_BYTES + 1)), d);
  assert.equal(res.status, 413);
  assert.deepEqual(d.calls, []);
});
