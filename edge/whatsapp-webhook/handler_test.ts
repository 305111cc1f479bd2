// Tests of the webhook handler with a stubbed RPC: offline, no supabase-js.
import assert from "node:assert/strict";
import {
  type App,
  CLEANED_KEY,
  type Deps,
  handle,
  jsonbSafe,
  MAX_BODY_BYTES,
  type RpcResult,
} from "./handler.ts";
import cases from "./jsonb_safe_cases.json" with { type: "json" };

const SECRET = "app-secret";
const URL_BASE = "https://project.supabase.co/functions/v1/whatsapp-webhook";
const PAYLOAD = {
  object: "whatsapp_business_account",
  entry: [{
    id: "102290129340398",
    changes: [{
      field: "messages",
      value: {
        messaging_product: "whatsapp",
        metadata: { display_phone_number: "5511999990000", phone_number_id: "106540352242922" },
        contacts: [{ profile: { name: "José" }, wa_id: "5511987654321" }],
        messages: [{
          from: "5511987654321",
          id: "wamid.A1",
          timestamp: "1767225600",
          type: "text",
          text: { body: "Olá" },
        }],
      },
    }],
  }],
};
// Meta signs an escaped-unicode body ("\u00e9"), which is what arrives on the wire.
const ESCAPED_BODY = JSON.stringify(PAYLOAD).replace(
  /[\u007f-\uffff]/g,
  (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
);

type Call = { fn: string; args: Record<string, unknown> };

const NUMBER = "106540352242922";
const TENANT_URL = `${URL_BASE}/${NUMBER}`;

/** Stubbed dependencies; `apps` are the tenant apps in Vault, by phone_number_id. */
function deps(
  env: Record<string, string> = {},
  result: RpcResult | Error = { error: null },
  apps: Record<string, App> = {},
): Deps & { calls: Call[]; looked: string[] } {
  const calls: Call[] = [];
  const looked: string[] = [];
  const settings: Record<string, string> = {
    WHATSAPP_VERIFY_TOKEN: "verify-me",
    WHATSAPP_APP_SECRETS: JSON.stringify(["old-secret", SECRET]),
    ...env,
  };
  return {
    calls,
    looked,
    env: (name) => settings[name],
    rpc: (fn, args) => {
      calls.push({ fn, args });
      return result instanceof Error ? Promise.reject(result) : Promise.resolve(result);
    },
    app: (id) => {
      looked.push(id);
      return Promise.resolve(apps[id] ?? { appSecrets: [], verifyTokens: [] });
    },
  };
}

async function sign(body: BufferSource, secret: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, body));
  return "sha256=" + Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function post(
  body: string | BufferSource,
  signature?: string | null,
  url = URL_BASE,
): Promise<Request> {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const headers: Record<string, string> = { "content-type": "application/json" };
  const header = signature === undefined ? await sign(bytes, SECRET) : signature;
  if (header !== null) headers["x-hub-signature-256"] = header;
  return new Request(url, { method: "POST", body: bytes, headers });
}

function handshake(query: Record<string, string>, url = URL_BASE): Request {
  return new Request(`${url}?${new URLSearchParams(query)}`);
}

Deno.test("handshake echoes hub.challenge as text/plain when the verify token matches", async () => {
  const res = await handle(
    handshake({
      "hub.mode": "subscribe",
      "hub.verify_token": "verify-me",
      "hub.challenge": "1158201444",
    }),
    deps(),
  );
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "1158201444");
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
});

Deno.test("handshake with a wrong token, wrong mode or unset token is 403", async () => {
  const cases: [Record<string, string>, Record<string, string>][] = [
    [{ "hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1" }, {}],
    [{ "hub.mode": "subscribe", "hub.verify_token": "verify-me-", "hub.challenge": "1" }, {}],
    [{ "hub.mode": "unsubscribe", "hub.verify_token": "verify-me", "hub.challenge": "1" }, {}],
    [{ "hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1" }, {
      WHATSAPP_VERIFY_TOKEN: "",
    }],
  ];
  for (const [query, env] of cases) {
    const res = await handle(handshake(query), deps(env));
    assert.equal(res.status, 403, JSON.stringify(query));
    assert.notEqual(await res.text(), "1");
  }
});

Deno.test("a correctly signed body reaches whatsapp_receive parsed, and Meta gets 200", async () => {
  const d = deps();
  const res = await handle(await post(ESCAPED_BODY), d);
  assert.equal(res.status, 200);
  assert.deepEqual(d.calls, [{ fn: "whatsapp_receive", args: { payload: PAYLOAD, signer: null } }]);
  const value = (d.calls[0].args.payload as typeof PAYLOAD).entry[0].changes[0].value;
  assert.equal(value.contacts[0].profile.name, "José");
});

Deno.test("a body signed with the previous secret is accepted during rotation", async () => {
  const bytes = new TextEncoder().encode(ESCAPED_BODY);
  const d = deps();
  const res = await handle(await post(bytes, await sign(bytes, "old-secret")), d);
  assert.equal(res.status, 200);
  assert.equal(d.calls.length, 1);
});

Deno.test("signature over the re-serialised (decoded) body does not verify the raw bytes", async () => {
  const decoded = new TextEncoder().encode(JSON.stringify(PAYLOAD));
  const d = deps();
  const res = await handle(await post(ESCAPED_BODY, await sign(decoded, SECRET)), d);
  assert.equal(res.status, 401);
  assert.deepEqual(d.calls, []);
});

Deno.test("bad, malformed or missing signatures are 401 and never reach the database", async () => {
  const good = await sign(new TextEncoder().encode(ESCAPED_BODY), SECRET);
  const flipped = good.slice(0, -1) + (good.endsWith("0") ? "1" : "0");
  const bad = [
    null,
    "",
    flipped,
    good.replace("sha256=", "sha1="),
    good.replace("sha256=", ""),
    good.toUpperCase(),
    await sign(new TextEncoder().encode(ESCAPED_BODY), "wrong-secret"),
  ];
  for (const header of bad) {
    const d = deps();
    const res = await handle(await post(ESCAPED_BODY, header), d);
    assert.equal(res.status, 401, String(header));
    assert.deepEqual(d.calls, []);
  }
});

Deno.test("signed invalid JSON is quarantined and answered 200 so Meta stops retrying", async () => {
  const d = deps();
  const res = await handle(await post('{"object":"whatsapp_business_account",'), d);
  assert.equal(res.status, 200);
  assert.equal(d.calls.length, 1);
  assert.equal(d.calls[0].fn, "whatsapp_quarantine_raw");
  assert.equal(d.calls[0].args.body, '{"object":"whatsapp_business_account",');
  assert.match(String(d.calls[0].args.reason), /JSON/);
});

Deno.test("signed JSON that is not an object and invalid UTF-8 are quarantined too", async () => {
  for (const body of ["[1,2]", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])]) {
    const d = deps();
    const res = await handle(await post(body), d);
    assert.equal(res.status, 200);
    assert.equal(d.calls[0].fn, "whatsapp_quarantine_raw");
  }
});

Deno.test("jsonbSafe gives the same results as the worker's jsonb_safe on the shared cases", () => {
  for (const c of cases) {
    assert.deepEqual(jsonbSafe(JSON.parse(c.json)), [c.clean, c.strings], c.name);
  }
});

Deno.test("strings jsonb refuses are cleaned and the rest of the body is applied", async () => {
  const body = ESCAPED_BODY.replace('"Ol\\u00e1"', '"Ol\\u0000\\ud800"');
  assert.notEqual(body, ESCAPED_BODY);
  const bytes = new TextEncoder().encode(body);
  const d = deps();
  const res = await handle(await post(bytes), d);
  assert.equal(res.status, 200);
  assert.equal(d.calls.length, 1);
  assert.equal(d.calls[0].fn, "whatsapp_receive");
  const payload = d.calls[0].args.payload as typeof PAYLOAD & Record<string, unknown>;
  assert.equal(payload.entry[0].changes[0].value.messages[0].text.body, "Ol\ufffd\ufffd");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  assert.deepEqual(payload[CLEANED_KEY], { strings: 1, raw_sha256: hex });
});

Deno.test("JSON the database still refuses (another data exception) is quarantined", async () => {
  const calls: Call[] = [];
  const d: Deps = {
    env: deps().env,
    app: deps().app,
    rpc: (fn, args) => {
      calls.push({ fn, args });
      return Promise.resolve(
        fn === "whatsapp_receive"
          ? { error: { message: "value overflows numeric format", code: "22003" } }
          : { error: null },
      );
    },
  };
  const body = '{"object":"whatsapp_business_account","entry":[{"id":1e999999}]}';
  const res = await handle(await post(body), d);
  assert.equal(res.status, 200);
  assert.deepEqual(calls.map((c) => c.fn), ["whatsapp_receive", "whatsapp_quarantine_raw"]);
  assert.equal(calls[1].args.body, body);
});

Deno.test("an RPC error or exception is 500 so Meta delivers again", async () => {
  for (const result of [{ error: { message: "connection refused" } }, new Error("network down")]) {
    const res = await handle(await post(ESCAPED_BODY), deps({}, result));
    assert.equal(res.status, 500);
  }
});

Deno.test("a failing quarantine is 500 as well", async () => {
  const res = await handle(await post("not json"), deps({}, { error: { message: "boom" } }));
  assert.equal(res.status, 500);
});

Deno.test("bodies over 3 MB are 413, by header or by streamed size", async () => {
  const big = new Uint8Array(MAX_BODY_BYTES + 1).fill(0x20);
  const d = deps();
  const declared = await handle(await post(big), d);
  assert.equal(declared.status, 413);
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < 4; i++) controller.enqueue(new Uint8Array(1024 * 1024));
      controller.close();
    },
  });
  const streamed = new Request(URL_BASE, {
    method: "POST",
    body: stream,
    headers: { "x-hub-signature-256": "sha256=" + "0".repeat(64) },
  });
  assert.equal((await handle(streamed, d)).status, 413);
  assert.deepEqual(d.calls, []);
});

Deno.test("exactly 3 MB is accepted", async () => {
  const body = new TextEncoder().encode(ESCAPED_BODY);
  const padded = new Uint8Array(MAX_BODY_BYTES).fill(0x20);
  padded.set(body);
  const d = deps();
  const res = await handle(await post(padded), d);
  assert.equal(res.status, 200);
  assert.deepEqual(d.calls[0].args.payload, PAYLOAD);
});

Deno.test("without app secrets configured the webhook answers 500, not 200", async () => {
  const d = deps({ WHATSAPP_APP_SECRETS: '[""]' });
  const res = await handle(await post(ESCAPED_BODY), d);
  assert.equal(res.status, 500);
  assert.deepEqual(d.calls, []);
});

Deno.test("a tenant's own app, named by its number in the path, signs with its secret from Vault", async () => {
  const env = { WHATSAPP_APP_SECRETS: "", WHATSAPP_VERIFY_TOKEN: "" };
  const apps = {
    [NUMBER]: { appSecrets: ["tenant-secret"], verifyTokens: ["token-of-the-number"] },
  };
  const query = {
    "hub.mode": "subscribe",
    "hub.verify_token": "token-of-the-number",
    "hub.challenge": "42",
  };
  const shake = await handle(handshake(query, TENANT_URL), deps(env, { error: null }, apps));
  assert.equal(shake.status, 200);
  assert.equal(await shake.text(), "42");
  const bytes = new TextEncoder().encode(ESCAPED_BODY);
  const d = deps(env, { error: null }, apps);
  const res = await handle(await post(bytes, await sign(bytes, "tenant-secret"), TENANT_URL), d);
  assert.equal(res.status, 200);
  assert.deepEqual(d.calls, [{
    fn: "whatsapp_receive",
    args: { payload: PAYLOAD, signer: NUMBER },
  }]);
});

Deno.test("each URL accepts only its own app's secret and verify token", async () => {
  const apps = {
    [NUMBER]: { appSecrets: ["tenant-secret"], verifyTokens: ["token-of-the-number"] },
  };
  const bytes = new TextEncoder().encode(ESCAPED_BODY);
  const cases: [string, string][] = [
    [TENANT_URL, SECRET], // the platform's secret on a tenant app's URL
    [URL_BASE, "tenant-secret"], // a tenant's secret on the platform's URL
    [`${URL_BASE}/999`, "tenant-secret"], // an unknown number
    [`${URL_BASE}/not-a-number`, "tenant-secret"],
  ];
  for (const [url, secret] of cases) {
    const d = deps({}, { error: null }, apps);
    const res = await handle(await post(bytes, await sign(bytes, secret), url), d);
    assert.equal(res.status, 401, url);
    assert.deepEqual(d.calls, []);
    const query = {
      "hub.mode": "subscribe",
      "hub.verify_token": url === URL_BASE ? "token-of-the-number" : "verify-me",
      "hub.challenge": "42",
    };
    assert.equal((await handle(handshake(query, url), d)).status, 403, url);
  }
  const d = deps({}, { error: null }, apps);
  await handle(await post(bytes, undefined, `${URL_BASE}/not-a-number`), d);
  assert.deepEqual(d.looked, []);
  assert.equal((await handle(await post(bytes, undefined, `${TENANT_URL}/extra`), d)).status, 404);
});

Deno.test("other methods are 405", async () => {
  const res = await handle(new Request(URL_BASE, { method: "PUT" }), deps());
  assert.equal(res.status, 405);
  assert.equal(res.headers.get("allow"), "GET, POST");
  await res.body?.cancel();
});
