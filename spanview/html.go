package spanview

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
)

// Style is the CSS of the picture (class names start with xs-).
const Style = `
.xs-view { font-family: system-ui, sans-serif; }
.xs-bar { display: flex; flex-wrap: wrap; align-items: center; gap: .4rem 1rem; margin: .5rem 0; font-size: .9rem; }
.xs-layers button { font: inherit; padding: .1rem .5rem; border: 1px solid #999; background: #fff; border-radius: 3px; cursor: pointer; }
.xs-layers button.xs-on { background: #253494; color: #fff; border-color: #253494; }
.xs-scale { display: inline-block; width: 9rem; height: .8rem; vertical-align: middle; border: 1px solid #999;
  background: linear-gradient(to right, rgb(255,255,204), rgb(161,218,180), rgb(65,182,196), rgb(44,127,184), rgb(37,52,148)); }
.xs-key-alive { display: inline-block; padding: 0 .3rem; box-shadow: inset 0 -3px 0 #e4572e; background: #eee; }
.xs-summary { font-size: .9rem; color: #333; margin: .3rem 0; }
.xs-text { white-space: pre-wrap; word-break: break-all; font-family: ui-monospace, monospace; font-size: 15px; line-height: 1.6;
  border: 1px solid #ccc; padding: .5rem; }
.xs-t { cursor: default; }
.xs-t.xs-alive { box-shadow: inset 0 -3px 0 #e4572e; }
.xs-t.xs-hover { outline: 2px solid #e4572e; }
.xs-nl { opacity: .5; }
.xs-tip { position: fixed; pointer-events: none; background: #222; color: #fff; font-size: .8rem; padding: .3rem .5rem;
  border-radius: 4px; display: none; max-width: 24rem; z-index: 10; }
.xs-chart { width: 100%; height: 170px; display: block; margin-top: .5rem; }
.xs-chart text { font: 11px system-ui, sans-serif; fill: #333; }
`

// Script defines xspanView(root, score): it draws a Score (the JSON of POST /v1/score)
// into the element root and returns an object whose layer(l) shows layer l.
const Script = `
function xspanView(root, s) {
  const stops = [[255,255,204],[161,218,180],[65,182,196],[44,127,184],[37,52,148]];
  const lineColours = ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f","#bcbd22","#17becf"];
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; };
  const shade = e => s.max_span > 0 ? Math.min(Math.max(Math.log1p(Math.max(e, 0)) / Math.log1p(s.max_span), 0), 1) : 0;
  const colour = x => {
    x = Math.min(Math.max(x, 0), 1) * (stops.length - 1);
    const i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
    return "rgb(" + [0,1,2].map(k => Math.round(stops[i][k] + f * (stops[i+1][k] - stops[i][k]))).join(",") + ")";
  };
  const n = s.tokens.length, fmt = (x, d) => x == null ? "–" : x.toFixed(d);
  root.textContent = "";
  const view = el("div", "xs-view");
  const bar = el("div", "xs-bar"), layers = el("span", "xs-layers");
  layers.appendChild(el("span", null, "layer "));
  const buttons = [];
  for (let l = 0; l < s.layers; l++) {
    const b = el("button", null, String(l + 1)); b.type = "button"; b.dataset.layer = l;
    b.onclick = () => show(l); buttons.push(b); layers.appendChild(b);
  }
  bar.appendChild(layers);
  if (s.expire) {
    const k = el("span"); k.append("span: short ", el("span", "xs-scale"), " long (0 to " + s.max_span + " tokens, log scale)"); bar.appendChild(k);
  } else {
    bar.appendChild(el("span", null, "no learned spans: a fixed memory of the last " + s.max_span + " tokens"));
  }
  const ka = el("span"); ka.append(el("span", "xs-key-alive", "x"), " still in memory after the text"); bar.appendChild(ka);
  view.appendChild(bar);
  const summary = el("div", "xs-summary"); view.appendChild(summary);
  const text = el("div", "xs-text"), cells = [];
  s.tokens.forEach((t, i) => {
    const c = el("span", "xs-t"); c.dataset.i = i;
    if (t.text === "\n") { c.append(el("span", "xs-nl", "\u21b5"), "\n"); } else c.textContent = t.text;
    cells.push(c); text.appendChild(c);
  });
  view.appendChild(text);
  const tip = el("div", "xs-tip"); view.appendChild(tip);
  // The chart: a legend band at the top (a colour key per layer, then its memories at
  // the end), the lines below it, so that the legend never covers a line.
  const NS = "http://www.w3.org/2000/svg", W = 800, H = 170, ml = 44, mr = 10, mb = 30, mt = 10 + 13 * s.live.length;
  const svg = document.createElementNS(NS, "svg"); svg.setAttribute("class", "xs-chart");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H); svg.setAttribute("preserveAspectRatio", "none");
  const sv = (tag, attrs, text) => { const e = document.createElementNS(NS, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); if (text != null) e.textContent = text; svg.appendChild(e); return e; };
  let ymax = 1; for (const row of s.live) for (const v of row) ymax = Math.max(ymax, v);
  const X = i => ml + (n > 1 ? i / (n - 1) : 0) * (W - ml - mr), Y = v => H - mb - v / ymax * (H - mt - mb);
  sv("line", {x1: ml, y1: Y(0), x2: W - mr, y2: Y(0), stroke: "#999"});
  sv("line", {x1: ml, y1: Y(0), x2: ml, y2: mt, stroke: "#999"});
  sv("text", {x: ml - 4, y: Y(ymax) + 4, "text-anchor": "end"}, String(ymax));
  sv("text", {x: ml - 4, y: Y(0) + 4, "text-anchor": "end"}, "0");
  sv("text", {x: ml, y: H - 8}, "memories held per layer, over the text's " + n + " tokens");
  const lines = s.live.map((row, l) => sv("polyline", {"class": "xs-live", "data-layer": l, fill: "none",
    stroke: lineColours[l % lineColours.length], points: row.map((v, i) => X(i).toFixed(1) + "," + Y(v).toFixed(1)).join(" ")}));
  s.live.forEach((row, l) => {
    const c = lineColours[l % lineColours.length], y = 8 + 13 * l;
    sv("line", {"class": "xs-key", x1: W - mr - 190, y1: y, x2: W - mr - 170, y2: y, stroke: c, "stroke-width": 2.5});
    sv("text", {"class": "xs-end", x: W - mr - 164, y: y + 4, fill: "#333"}, "layer " + (l + 1) + ": " + row[row.length - 1] + " held at the end");
  });
  const cursor = sv("line", {x1: 0, y1: mt, x2: 0, y2: Y(0), stroke: "#e4572e", visibility: "hidden"});
  view.appendChild(svg);
  root.appendChild(view);
  let cur = 0;
  function show(l) {
    cur = l;
    buttons.forEach((b, k) => b.classList.toggle("xs-on", k === l));
    s.tokens.forEach((t, i) => {
      const c = cells[i];
      if (s.expire && t.spans && t.spans.length > l) {
        const x = shade(t.spans[l]); c.style.background = colour(x); c.style.color = x > 0.6 ? "#fff" : "#000";
      }
      c.classList.toggle("xs-alive", !!(t.alive && t.alive[l]));
    });
    lines.forEach((p, k) => { p.setAttribute("stroke-width", k === l ? 2.5 : 1); p.setAttribute("opacity", k === l ? 1 : .45); });
    let alive = 0, sum = 0; s.tokens.forEach(t => { if (t.alive && t.alive[l]) alive++; if (t.spans && t.spans.length > l) sum += t.spans[l]; });
    summary.textContent = (s.bpc != null ? s.bpc.toFixed(3) + " bits per character over " + s.scored_chars + " characters; " : "") +
      "layer " + (l + 1) + ": " + (s.expire ? "mean span " + (sum / Math.max(n, 1)).toFixed(1) + " tokens, " : "") +
      alive + " of " + n + " tokens still in memory after the text";
  }
  text.addEventListener("mouseover", ev => {
    const c = ev.target.closest(".xs-t"); if (!c) return;
    const i = +c.dataset.i, t = s.tokens[i], age = n - 1 - i, a = t.alive && t.alive[cur];
    let msg = JSON.stringify(t.text) + " (token " + (i + 1) + " of " + n + "), layer " + (cur + 1) + ": ";
    if (s.expire && t.spans && t.spans.length > cur) {
      const e = t.spans[cur];
      msg += "span " + fmt(e, 1) + " tokens, age " + age + "; " + (a ? "still in memory, for about " + Math.max(Math.ceil(e + s.ramp - age - 1), 1) + " more tokens" : "expired about " + Math.max(Math.ceil(age + 1 - e - s.ramp), 1) + " tokens ago");
    } else msg += "age " + age + "; " + (a ? "still in memory" : "no longer in memory");
    msg += "; " + (t.bits == null ? "first token, not predicted" : fmt(t.bits, 2) + " bits to predict");
    tip.textContent = msg; tip.style.display = "block";
    const r = c.getBoundingClientRect();
    tip.style.left = Math.min(r.left, window.innerWidth - 300) + "px"; tip.style.top = (r.bottom + 6) + "px";
    c.classList.add("xs-hover");
    cursor.setAttribute("x1", X(i)); cursor.setAttribute("x2", X(i)); cursor.setAttribute("visibility", "visible");
  });
  text.addEventListener("mouseout", ev => {
    const c = ev.target.closest(".xs-t"); if (c) c.classList.remove("xs-hover");
    tip.style.display = "none"; cursor.setAttribute("visibility", "hidden");
  });
  show(s.layers > 0 ? s.layers - 1 : 0);
  return { layer: show };
}
`

var page = template.Must(template.New("spans").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.3rem; }
.note { color: #555; font-size: .9rem; }
{{.Style}}
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="note">Each character is coloured by the span the model gave it as a memory in the chosen
layer: light for memories it drops within a few tokens, dark blue for those it keeps up to
{{.MaxSpan}} tokens. Underlined characters are still in memory after the text. Hover over a
character for its span and age. The chart shows how many memories each layer holds after
each token.</p>
<div id="view"></div>
<script id="xs-data" type="application/json">{{.Data}}</script>
<script>
{{.Script}}
xspanView(document.getElementById("view"), JSON.parse(document.getElementById("xs-data").textContent));
</script>
</body>
</html>
`))

// WriteHTML writes s as a self-contained HTML page (its CSS, script and data inline).
func WriteHTML(w io.Writer, s *Score, title string) error {
	data, err := json.Marshal(s) // escapes <, > and &: safe inside a script element
	if err != nil {
		return fmt.Errorf("spanview: %w", err)
	}
	return page.Execute(w, map[string]any{
		"Title":   title,
		"MaxSpan": s.MaxSpan,
		"Style":   template.CSS(Style),
		"Script":  template.JS(Script),
		"Data":    template.JS(data),
	})
}
