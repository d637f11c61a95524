package generate

// indexHTML is the page at /: type a prompt, watch the tokens stream in. Plain HTML and
// JavaScript, no build step; it reads the Server-Sent Events of POST /v1/generate with
// fetch, since EventSource only does GET.
const indexHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>xspan generate</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 50rem; margin: 2rem auto; padding: 0 1rem; }
textarea { width: 100%; height: 6rem; font-family: monospace; }
#out { white-space: pre-wrap; font-family: monospace; border: 1px solid #ccc; padding: .5rem; min-height: 8rem; }
#out .prompt { color: #666; }
label { margin-right: 1rem; }
input[type=number] { width: 5rem; }
#stats { color: #555; font-size: .9rem; margin-top: .5rem; }
</style>
</head>
<body>
<h1>xspan generate</h1>
<p id="model">loading model…</p>
<textarea id="prompt" placeholder="empty: start from a new line">The </textarea>
<p>
<label>new tokens <input id="n" type="number" value="200" min="1"></label>
<label>temperature <input id="temp" type="number" value="0.8" step="0.1" min="0"></label>
<label>top-k <input id="topk" type="number" value="0" min="0"></label>
<label>top-p <input id="topp" type="number" value="1" step="0.05" min="0" max="1"></label>
<label>seed <input id="seed" type="number" placeholder="random" min="0"></label>
</p>
<button id="go">Generate</button> <button id="stop" disabled>Stop</button>
<div id="out"></div>
<div id="stats"></div>
<script>
const $ = id => document.getElementById(id);
fetch("v1/model").then(r => r.json()).then(m => {
  $("model").textContent = "vocabulary: " + m.vocab.kind + ", " + m.vocab.size + " ids; " + JSON.stringify(m.model);
}).catch(e => { $("model").textContent = "model: " + e; });
let ctrl = null;
$("stop").onclick = () => { if (ctrl) ctrl.abort(); };
$("go").onclick = async () => {
  const out = $("out"), stats = $("stats");
  out.textContent = ""; stats.textContent = "";
  const p = document.createElement("span"); p.className = "prompt"; p.textContent = $("prompt").value; out.appendChild(p);
  const gen = document.createTextNode(""); out.appendChild(gen);
  const body = { prompt: $("prompt").value, stream: true,
    max_new_tokens: +$("n").value, temperature: +$("temp").value, top_k: +$("topk").value, top_p: +$("topp").value };
  if ($("seed").value !== "") body.seed = +$("seed").value;
  ctrl = new AbortController(); $("go").disabled = true; $("stop").disabled = false;
  try {
    const r = await fetch("v1/generate", { method: "POST", body: JSON.stringify(body), signal: ctrl.signal,
      headers: { "Content-Type": "application/json" } });
    if (!r.ok) { stats.textContent = r.status + ": " + (await r.json()).error; return; }
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
        if (name === "token") gen.appendData(d.text);
        else if (name === "done") stats.textContent = d.new_tokens + " tokens, " + d.tokens_per_second.toFixed(1) +
          " tok/s, seed " + d.seed + ", live memories " + JSON.stringify(d.live) + ", dropped " + d.dropped;
        else if (name === "error") stats.textContent = "error: " + d.error;
      }
    }
  } catch (e) {
    stats.textContent = e.name === "AbortError" ? "stopped" : "error: " + e;
  } finally {
    ctrl = null; $("go").disabled = false; $("stop").disabled = true;
  }
};
</script>
</body>
</html>
`
