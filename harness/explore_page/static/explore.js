// attnrepro explore: asks the server (harness/explore.py) what each run produced and attended to, and draws it
// as SVG from the JSON, so that "download SVG" is the drawn element itself and "download PNG" goes through a canvas.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CELL = 22; // pixels per matrix cell
const state = { runs: [], answers: {}, images: {}, view: "cross", layer: -1, head: "mean" };
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// -- the weights of one layer and head (or their mean) --------------------------------------------------------------

function pickLayer(view, layer) {
  const n = view.weights.length;
  return ((layer % n) + n) % n;
}

function matrixOf(view, layer, head) {
  const heads = view.weights[pickLayer(view, layer)];
  if (head === "mean" || head === "all") {
    return heads[0].map((row, r) => row.map((_, c) => heads.reduce((s, h) => s + h[r][c], 0) / heads.length));
  }
  return heads[Math.min(Number(head), heads.length - 1)];
}

// -- drawing --------------------------------------------------------------------------------------------------------

function matrixSvg(view, matrix, options = {}) {
  const labels = options.labels !== false;
  const cell = options.cell || CELL;
  const left = labels ? 8 + 7 * Math.max(...view.rows.map((t) => t.length)) : 0;
  const top = labels ? 8 + 5.5 * Math.max(...view.cols.map((t) => t.length)) : 0;
  const width = left + cell * view.cols.length, height = top + cell * matrix.length;
  const svg = svgEl("svg", { xmlns: SVG_NS, width, height, viewBox: `0 0 ${width} ${height}`, class: "matrix" });
  svg.appendChild(svgEl("rect", { x: 0, y: 0, width, height, fill: "#ffffff" }));
  matrix.forEach((row, r) => row.forEach((w, c) => {
    const shade = Math.round(255 * Math.max(0, Math.min(1, w))); // white = high weight, as in Bahdanau's Fig. 3
    svg.appendChild(svgEl("rect", { class: "cell", x: left + c * cell, y: top + r * cell, width: cell, height: cell,
      fill: `rgb(${shade},${shade},${shade})`, "data-row": r, "data-col": c, "data-weight": String(w) }));
  }));
  if (labels) {
    view.rows.forEach((t, r) => svg.appendChild(svgEl("text", { class: "row-label", "data-row": r, x: left - 4,
      y: top + r * cell + cell * 0.7, "text-anchor": "end", "font-size": 12 }, t)));
    view.cols.forEach((t, c) => {
      const x = left + c * cell + cell * 0.65, y = top - 4;
      svg.appendChild(svgEl("text", { class: "col-label", "data-col": c, x, y, "font-size": 12,
        transform: `rotate(-60 ${x} ${y})` }, t));
    });
  }
  return svg;
}

function hoverMatrix(svg, view, matrix, info) {
  const highlight = (r) => {
    svg.querySelectorAll(".active, .attended").forEach((n) => n.classList.remove("active", "attended"));
    if (r === null) { info.textContent = ""; return; }
    svg.querySelectorAll(`[data-row="${r}"]`).forEach((n) => n.classList.add("active"));
    const ranked = matrix[r].map((w, c) => [w, c]).sort((a, b) => b[0] - a[0]);
    ranked.filter(([w], i) => i < 3 || w >= 0.1).forEach(([, c]) =>
      svg.querySelector(`.col-label[data-col="${c}"]`)?.classList.add("attended"));
    info.textContent = `${view.rows[r]} → ` + ranked.slice(0, 5).map(([w, c]) => `${view.cols[c]} ${w.toFixed(2)}`)
      .join(", ");
  };
  svg.querySelectorAll(".row-label, rect.cell").forEach((n) => {
    n.addEventListener("mouseenter", () => highlight(Number(n.dataset.row)));
  });
  svg.addEventListener("mouseleave", () => highlight(null));
}

function imageSvg(view, image, options = {}) {
  const side = options.side || 150, pad = 6, caption = 18;
  const cols = Math.min(view.rows.length, options.columns || 5);
  const rows = Math.ceil(view.rows.length / cols);
  const width = cols * (side + pad) + pad, height = rows * (side + caption + pad) + pad;
  const svg = svgEl("svg", { xmlns: SVG_NS, width, height, viewBox: `0 0 ${width} ${height}`, class: "image-maps" });
  svg.appendChild(svgEl("rect", { x: 0, y: 0, width, height, fill: "#ffffff" }));
  const g = view.grid, cellSide = side / g;
  view.rows.forEach((word, t) => {
    const x0 = pad + (t % cols) * (side + pad), y0 = pad + Math.floor(t / cols) * (side + caption + pad);
    const panel = svgEl("g", { class: "panel", "data-word": t });
    panel.appendChild(svgEl("image", { href: image, x: x0, y: y0, width: side, height: side,
      preserveAspectRatio: "none" }));
    const weights = view.weights[t], top = Math.max(...weights);
    weights.forEach((w, i) => {
      const shade = 0.8 * (1 - w / top); // bright where the word looked (Xu Figs. 2-3), dark elsewhere
      panel.appendChild(svgEl("rect", { class: "cell", x: x0 + (i % g) * cellSide, y: y0 + Math.floor(i / g) * cellSide,
        width: cellSide, height: cellSide, fill: "#000000", "fill-opacity": shade.toFixed(3), "data-row": t,
        "data-col": i, "data-weight": String(w) }));
    });
    if (view.locations) { // hard attention: the location sampled from this map
      const s = view.locations[t];
      panel.appendChild(svgEl("rect", { class: "sampled", x: x0 + (s % g) * cellSide, y: y0 + Math.floor(s / g) * cellSide,
        width: cellSide, height: cellSide, fill: "none", stroke: "#ff2020", "stroke-width": 2 }));
    }
    panel.appendChild(svgEl("rect", { class: "frame", x: x0, y: y0, width: side, height: side, fill: "none",
      stroke: "#999999" }));
    panel.appendChild(svgEl("text", { class: "word", "data-row": t, x: x0 + side / 2, y: y0 + side + 14,
      "text-anchor": "middle", "font-size": 13 }, word));
    svg.appendChild(panel);
  });
  return svg;
}

// -- downloads -----------------------------------------------------------------------------------------------------

function save(blob, name) {
  const a = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function downloads(svg, name) {
  const box = el("div", { class: "downloads" });
  const svgButton = el("button", { type: "button", class: "download-svg" }, "download SVG");
  const pngButton = el("button", { type: "button", class: "download-png" }, "download PNG");
  svgButton.addEventListener("click", () => {
    save(new Blob([new XMLSerializer().serializeToString(svg)], { type: "image/svg+xml" }), `${name}.svg`);
  });
  pngButton.addEventListener("click", () => {
    const url = URL.createObjectURL(new Blob([new XMLSerializer().serializeToString(svg)], { type: "image/svg+xml" }));
    const img = new Image();
    img.onload = () => {
      const canvas = el("canvas", { width: svg.getAttribute("width") * 2, height: svg.getAttribute("height") * 2 });
      const ctx = canvas.getContext("2d");
      ctx.scale(2, 2);
      ctx.drawImage(img, 0, 0);
      URL.revokeObjectURL(url);
      canvas.toBlob((blob) => save(blob, `${name}.png`), "image/png");
    };
    img.src = url;
  });
  box.append(svgButton, pngButton);
  return box;
}

// -- one run's answer ------------------------------------------------------------------------------------------------

function card(run) {
  let node = $(`run-${run.id}`);
  if (!node) {
    node = el("article", { class: "card", id: `run-${run.id}`, "data-run": run.id });
    $("results").appendChild(node);
  }
  node.replaceChildren(el("h3", {}, `${run.model} (${run.reproduction}) `));
  node.firstChild.appendChild(el("span", { class: "setting" }, `${run.setting}, ${run.name}`));
  return node;
}

function renderAnswer(node, run, answer, figureName) {
  node.appendChild(el("p", { class: "output" }, answer.output || "(empty)"));
  const alternatives = el("ol", { class: "alternatives" });
  answer.alternatives.forEach((a) => {
    const li = el("li", {}, `${a.output} `);
    li.appendChild(el("span", { class: "score" }, `(${a.score.toFixed(3)})`));
    alternatives.appendChild(li);
  });
  node.appendChild(alternatives);
  if (!answer.attends) {
    node.appendChild(el("p", { class: "no-attention" }, `${run.model} reads its input as one fixed vector: it has no ` +
      "attention to show."));
    return;
  }
  const figure = el("div", { class: "figure" });
  node.appendChild(figure);
  drawViews(figure, run, answer, figureName);
}

function drawViews(figure, run, answer, figureName) {
  figure.replaceChildren();
  if (answer.views.image) {
    const svg = imageSvg(answer.views.image, state.images[run.id]);
    figure.append(svg, downloads(svg, `${figureName}-image`));
    return;
  }
  const name = answer.views[state.view] ? state.view : "cross";
  const view = answer.views[name];
  const layer = pickLayer(view, state.layer);
  const heads = view.weights[layer].length;
  const head = state.head === "mean" || state.head === "all" ? state.head : String(Math.min(Number(state.head), heads - 1));
  const title = view.weights.length > 1 || heads > 1 ? `${name} attention, layer ${layer}, ` +
    (head === "mean" ? "mean over heads" : head === "all" ? "all heads" : `head ${head}`) : `${name} attention`;
  figure.appendChild(el("p", { class: "view-title" }, title));
  if (head === "all" && (view.weights.length > 1 || heads > 1)) {
    figure.appendChild(overview(view, run, answer, figureName));
    return;
  }
  const matrix = matrixOf(view, layer, head === "all" ? "mean" : head);
  const svg = matrixSvg(view, matrix);
  svg.dataset.view = name; svg.dataset.layer = layer; svg.dataset.head = head;
  const info = el("p", { class: "hover-info" });
  hoverMatrix(svg, view, matrix, info);
  figure.append(svg, info, downloads(svg, `${figureName}-${name}-L${layer}-${head}`));
}

function overview(view, run, answer, figureName) {
  const box = el("div", { class: "overview" });
  view.weights.forEach((heads, layer) => heads.forEach((_, head) => {
    const fig = el("figure", { "data-layer": layer, "data-head": head });
    fig.appendChild(matrixSvg(view, matrixOf(view, layer, head), { labels: false, cell: 6 }));
    fig.appendChild(el("figcaption", {}, `L${layer} H${head}`));
    fig.addEventListener("click", () => { state.layer = layer; state.head = String(head); syncControls(); redraw(); });
    box.appendChild(fig);
  }));
  return box;
}

// -- controls, permalink --------------------------------------------------------------------------------------------

function syncControls() {
  const views = new Set(), layers = [1], heads = [1];
  Object.values(state.answers).forEach((a) => Object.entries(a.views || {}).forEach(([name, v]) => {
    if (v.kind !== "matrix") return;
    views.add(name); layers.push(v.weights.length); heads.push(v.weights[0].length);
  }));
  $("controls").hidden = views.size === 0;
  const fill = (select, options, value) => {
    select.replaceChildren(...options.map(([v, label]) => el("option", { value: v }, label)));
    select.value = options.some(([v]) => v === String(value)) ? String(value) : options[0][0];
  };
  fill($("view"), [...views].sort().map((v) => [v, v]), state.view);
  const nLayers = Math.max(...layers);
  fill($("layer"), [...Array(nLayers).keys()].map((i) => [String(i), String(i)]), pickLayer({ weights: Array(nLayers) }, state.layer));
  fill($("head"), [["mean", "mean over heads"], ["all", "all heads (overview)"],
    ...[...Array(Math.max(...heads)).keys()].map((i) => [String(i), String(i)])], state.head);
  permalink();
}

function permalink() {
  const params = new URLSearchParams();
  if (state.text) params.set("text", state.text);
  if (state.image) params.set("image", state.image);
  params.set("view", state.view); params.set("layer", state.layer); params.set("head", state.head);
  const url = `${location.pathname}?${params}`;
  history.replaceState(null, "", url);
  $("permalink").href = url;
}

function redraw() {
  for (const run of state.runs) {
    const answer = state.answers[run.id];
    const figure = $(`run-${run.id}`)?.querySelector(".figure");
    if (answer && figure && !answer.views.image) drawViews(figure, run, answer, `${run.name}`);
  }
  permalink();
}

// -- asking the runs ------------------------------------------------------------------------------------------------

async function translate(text) {
  showError("");
  state.text = text; state.image = null;
  const runs = state.runs.filter((r) => r.input === "text");
  await Promise.all(runs.map(async (run) => {
    const node = card(run);
    try {
      const answer = await api(`/api/runs/${run.id}/attend`, { method: "POST",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text }) });
      state.answers[run.id] = answer;
      renderAnswer(node, run, answer, run.name);
    } catch (err) {
      node.appendChild(el("p", { class: "error" }, err.message));
      showError(err.message);
    }
  }));
  syncControls();
}

function asDataUrl(blob) {
  return new Promise((resolve) => { const r = new FileReader(); r.onload = () => resolve(r.result); r.readAsDataURL(blob); });
}

async function caption(request) { // request: {example: id} or {file: File}
  showError("");
  state.image = request.example || null; state.text = null;
  const runs = state.runs.filter((r) => r.input === "image");
  await Promise.all(runs.map(async (run) => {
    const node = card(run);
    try {
      let answer;
      if (request.file) {
        state.images[run.id] = await asDataUrl(request.file);
        answer = await api(`/api/runs/${run.id}/upload`, { method: "POST",
          headers: { "Content-Type": request.file.type || "application/octet-stream" }, body: request.file });
      } else {
        const image = await fetch(`/api/runs/${run.id}/images/${encodeURIComponent(request.example)}`);
        state.images[run.id] = await asDataUrl(await image.blob());
        answer = await api(`/api/runs/${run.id}/attend`, { method: "POST",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify({ example: request.example }) });
      }
      state.answers[run.id] = answer;
      renderAnswer(node, run, answer, run.name);
    } catch (err) {
      node.appendChild(el("p", { class: "error" }, err.message));
      showError(err.message);
    }
  }));
  permalink();
}

// -- the papers' figures ---------------------------------------------------------------------------------------------

async function gallery() {
  const box = $("gallery-items");
  const items = await api("/api/gallery");
  box.replaceChildren();
  for (const item of items) {
    const node = el("div", { class: "gallery-item", "data-figure": item.key });
    node.appendChild(el("h3", {}, item.title));
    box.appendChild(node);
    if (item.needs) { node.appendChild(el("p", { class: "note" }, `Not drawn: ${item.needs}.`)); continue; }
    const run = state.runs.find((r) => r.id === item.run), base = state.runs.find((r) => r.id === item.baseline);
    const inputs = item.inputs.length ? item.inputs.map((text) => ({ text })) :
      run.examples.slice(0, 1).map((e) => ({ example: e.id }));
    for (const input of inputs) {
      for (const who of [run, base].filter(Boolean)) {
        const answer = await api(`/api/runs/${who.id}/attend`, { method: "POST",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify(input) });
        node.appendChild(el("p", { class: "output" }, `${who.model}: ${answer.output}`));
        if (!answer.attends) { node.appendChild(el("p", { class: "no-attention" }, "no attention to show (a fixed vector)")); continue; }
        const view = answer.views[item.view];
        let svg;
        if (item.view === "image") {
          const blob = await (await fetch(`/api/runs/${who.id}/images/${encodeURIComponent(input.example)}`)).blob();
          svg = imageSvg(view, await asDataUrl(blob), { side: 110, columns: 8 });
        } else if (item.view === "encoder") {
          svg = overview(view, who, answer, item.key);
        } else {
          svg = matrixSvg(view, matrixOf(view, -1, "mean"));
        }
        node.appendChild(svg);
        if (svg.tagName.toLowerCase() === "svg") node.appendChild(downloads(svg, item.key));
      }
    }
  }
}

// -- start ----------------------------------------------------------------------------------------------------------

async function start() {
  const params = new URLSearchParams(location.search);
  state.view = params.get("view") || "cross";
  state.layer = Number(params.get("layer") ?? -1);
  state.head = params.get("head") || "mean";
  state.runs = await api("/api/runs");
  const textRuns = state.runs.filter((r) => r.input === "text"), imageRuns = state.runs.filter((r) => r.input === "image");
  $("text-input").hidden = textRuns.length === 0;
  $("image-input").hidden = imageRuns.length === 0;
  (textRuns[0]?.examples || []).forEach((e) => $("text-example").appendChild(el("option", { value: e.text }, e.label)));
  (imageRuns[0]?.examples || []).forEach((e) => $("image-example").appendChild(el("option", { value: e.id }, `${e.id}: ${e.label}`)));
  $("text-form").addEventListener("submit", (event) => { event.preventDefault(); translate($("text").value); });
  $("text-example").addEventListener("change", () => { if ($("text-example").value) { $("text").value = $("text-example").value; translate($("text").value); } });
  $("image-example").addEventListener("change", () => { if ($("image-example").value) caption({ example: $("image-example").value }); });
  $("upload").addEventListener("change", () => { if ($("upload").files[0]) caption({ file: $("upload").files[0] }); });
  $("view").addEventListener("change", () => { state.view = $("view").value; redraw(); });
  $("layer").addEventListener("change", () => { state.layer = Number($("layer").value); redraw(); });
  $("head").addEventListener("change", () => { state.head = $("head").value; redraw(); });
  if (params.get("text")) { $("text").value = params.get("text"); await translate(params.get("text")); }
  if (params.get("image")) { $("image-example").value = params.get("image"); await caption({ example: params.get("image") }); }
  document.body.dataset.ready = "true";
  gallery().catch((err) => { $("gallery-items").replaceChildren(el("p", { class: "error" }, err.message)); })
    .finally(() => { document.body.dataset.gallery = "done"; });
}

start().catch((err) => showError(err.message));
