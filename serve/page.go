package serve

import "xspan/spanview"

// indexHTML is the page at /: a short card of the model; type a prompt and watch the
// tokens stream in; then see what the model remembers of the text (or of a pasted one):
// every character coloured by its span in the chosen layer, those still in memory
// marked, the live memory per layer as a chart (from POST /v1/score, drawn by
// spanview.Script). Plain HTML and JavaScript, no build step; it reads the Server-Sent
// Events of POST /v1/generate with fetch, since EventSource only does GET. Its messages
// speak to the person at the browser, not about the server's flags.
const indexHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>xspan</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 56rem; margin: 1.5rem auto; padding: 0 1rem; color: #111; }
h1 { font-size: 1.4rem; margin-bottom: .3rem; }
h2 { font-size: 1.1rem; margin-top: 1.5rem; }
#card { display: flex; flex-wrap: wrap; gap: .2rem 1.2rem; font-size: .9rem; color: #333; margin: 0 0 1rem; padding: 0; }
#card div { white-space: nowrap; }
#card b { font-weight: 600; color: #000; }
textarea { width: 100%; height: 5rem; font-family: ui-monospace, monospace; box-sizing: border-box; }
#out { white-space: pre-wrap; font-family: ui-monospace, monospace; border: 1px solid #ccc; padding: .5rem; min-height: 4rem; }
#out .prompt { color: #666; }
label { margin-right: 1rem; font-size: .9rem; }
input[type=number] { width: 5rem; }
#stats { color: #555; font-size: .9rem; margin-top: .5rem; }
#error { display: none; background: #fdecea; border: 1px solid #e4572e; color: #611; padding: .5rem .7rem; margin: .7rem 0; border-radius: 4px; }
.hint { color: #555; font-size: .9rem; }
` + spanview.Style + `
</style>
</head>
<body>
<h1>xspan</h1>
<div id="card">loading the model…</div>
<textarea id="prompt" placeholder="Type a prompt, or paste a text to see what the model remembers of it">The </textarea>
<p>
<label>new tokens <input id="n" type="number" value="200" min="1"></label>
<label>temperature <input id="temp" type="number" value="0.8" step="0.1" min="0"></label>
<label>top-k <input id="topk" type="number" value="0" min="0"></label>
<label>top-p <input id="topp" type="number" value="1" step="0.05" min="0" max="1"></label>
<label>seed <input id="seed" type="number" placeholder="random" min="0"></label>
</p>
<button id="go">Generate</button> <button id="stop" disabled>Stop</button>
<button id="score" title="Show what the model remembers of the text in the box, without generating">What does it remember of this text?</button>
<div id="error" role="alert"></div>
<div id="out"></div>
<div id="stats"></div>
<div id="memory" hidden>
<h2>What it remembers</h2>
<p class="hint">Each character is coloured by the span the model gave it as a memory in the chosen layer:
pale for memories dropped within a few tokens, dark blue for those kept longest. Underlined
characters are still in memory at the end. Hover over a character for its span and age.</p>
<div id="view"></div>
</div>
<script>
` + spanview.Script + `
const $ = id => document.getElementById(id);
let scoring = false;
function showError(msg) { const e = $("error"); e.textContent = msg; e.style.display = msg ? "block" : "none"; }
// clearMemory hides what the model remembered of the last text: a new generation, score
// or error must not stand above it.
function clearMemory() { $("memory").hidden = true; $("view").textContent = ""; }
const fieldNames = { max_new_tokens: "New tokens", temperature: "Temperature", top_k: "Top-k", top_p: "Top-p", seed: "Seed", prompt: "The prompt", text: "The text" };
// explain turns an answer of the API into a sentence for the person at the page.
function explain(status, msg, what) {
  msg = msg || "";
  if (status === 429) return "The server is busy with other requests. Try again in a moment.";
  if (status === 413) return "The " + what + " is too long for this server. Try a shorter one.";
  if (status === 503) return "The server is shutting down. Try again once it is back.";
  if (status === 403 || status === 415) return "The server refused the request from this page. Reload the page from the server's own address.";
  if (status >= 500) return "The model failed on this " + what + ". (" + msg + ")";
  let m = msg.match(/character\(s\) outside the model's vocabulary: (.*?) \(/);
  if (m) return "The " + what + " has characters this model does not know: " + m[1] + ". Remove them and try again.";
  m = msg.match(/(?:prompt|text) of (\d+) tokens: over the limit of (\d+)/);
  if (m) return "The " + what + " is " + m[1] + " tokens long; this server takes at most " + m[2] + ". Try a shorter one.";
  if (/is empty/.test(msg)) return "The " + what + " is empty. Type something first.";
  for (const k in fieldNames) msg = msg.split(k + " = ").join(fieldNames[k] + " = ").replace(new RegExp("^" + k + " "), fieldNames[k] + " ");
  return msg.charAt(0).toUpperCase() + msg.slice(1) + ".";
}
function unreachable(e) { return "Could not reach the server (" + e.message + "). Is it still running?"; }
async function apiError(r, what) {
  let msg = ""; try { const e = (await r.json()).error; msg = typeof e === "string" ? e : (e && e.message) || ""; } catch (e) {}
  return explain(r.status, msg, what);
}
function card(m) {
  const c = $("card"); c.textContent = "";
  const item = (k, v) => { if (v == null || v === "") return; const d = document.createElement("div"); const b = document.createElement("b"); b.textContent = k + " "; d.append(b, String(v)); c.appendChild(d); };
  const info = m.model || {}, cfg = info.config || info;
  item("model", m.id);
  if (info.step != null) item("step", info.step.toLocaleString("en"));
  if (info.random_init) item("weights", "random (untrained)");
  if (info.params != null) item("parameters", info.params >= 1e6 ? (info.params / 1e6).toFixed(1) + "M" : (info.params / 1e3).toFixed(0) + "k");
  if (cfg.layers) item("shape", cfg.layers + " layers × d " + cfg.dim + ", " + cfg.heads + " heads");
  if (cfg.max_span) item("memory", cfg.expire === false ? "fixed, last " + cfg.max_span + " tokens" : "Expire-Span, up to " + cfg.max_span + " tokens");
  if (m.vocab) item("vocabulary", m.vocab.kind + ", " + m.vocab.size + " tokens");
  if (info.device) item("device", info.device);
  if (!m.score) { $("score").disabled = true; $("score").title = "This model cannot show what it remembers."; }
}
fetch("v1/model").then(r => r.ok ? r.json() : Promise.reject(new Error("status " + r.status))).then(card)
  .catch(e => { $("card").textContent = "Could not load the model's description (" + e.message + ")."; });
async function score(text) {
  if (scoring || !text) return;
  scoring = true; $("score").disabled = true; clearMemory();
  try {
    const r = await fetch("v1/score", { method: "POST", body: JSON.stringify({ text }), headers: { "Content-Type": "application/json" } });
    if (!r.ok) { showError(await apiError(r, "text")); return; }
    const s = await r.json();
    $("memory").hidden = false;
    xspanView($("view"), s);
  } catch (e) {
    showError(unreachable(e));
  } finally {
    scoring = false; $("score").disabled = false;
  }
}
// Scoring the box's text shows that text alone: the last generation goes.
$("score").onclick = () => { showError(""); $("out").textContent = ""; $("stats").textContent = ""; score($("prompt").value); };
let ctrl = null;
$("stop").onclick = () => { if (ctrl) ctrl.abort(); };
$("go").onclick = async () => {
  const out = $("out"), stats = $("stats");
  out.textContent = ""; stats.textContent = ""; showError(""); clearMemory();
  const prompt = $("prompt").value;
  const p = document.createElement("span"); p.className = "prompt"; p.textContent = prompt; out.appendChild(p);
  const gen = document.createTextNode(""); out.appendChild(gen);
  const body = { prompt, stream: true,
    max_new_tokens: +$("n").value, temperature: +$("temp").value, top_k: +$("topk").value, top_p: +$("topp").value };
  if ($("seed").value !== "") body.seed = +$("seed").value;
  ctrl = new AbortController(); $("go").disabled = true; $("stop").disabled = false;
  let text = "", finished = false;
  try {
    const r = await fetch("v1/generate", { method: "POST", body: JSON.stringify(body), signal: ctrl.signal,
      headers: { "Content-Type": "application/json" } });
    if (!r.ok) { showError(await apiError(r, "prompt")); return; }
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, i); buf = buf.slice(i + 2);
        let name = "message", data = "";
        for (const line of ev.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        const d = JSON.parse(data);
        if (name === "token") { gen.appendData(d.text); text += d.text; }
        else if (name === "done") {
          finished = true;
          // The memories held at the end are the chart's (below), from the scored text.
          stats.textContent = d.new_tokens + " tokens at " + d.tokens_per_second.toFixed(0) + " tokens/s (seed " + d.seed +
            "); " + d.dropped + " memories dropped";
        } else if (name === "error") showError(explain(500, d.error, "prompt"));
      }
    }
  } catch (e) {
    if (e.name === "AbortError") { stats.textContent = "Stopped."; finished = text !== ""; }
    else showError(unreachable(e));
  } finally {
    ctrl = null; $("go").disabled = false; $("stop").disabled = true;
  }
  if (finished) score(prompt + text);
};
</script>
</body>
</html>
`
