// medsight web page: upload one image to /predict and draw what the answer holds, whatever the task:
// preview.mask -> overlaid on the image; volumes -> a table per class; probabilities -> the list;
// any other answer -> its fields. No renderer knows a task by name.
"use strict";

const PALETTE = [
  [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
  [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
];
const ALPHA = 0.45;
const $ = (id) => document.getElementById(id);

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function loadImage(base64) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the server sent an unreadable preview"));
    img.src = "data:image/png;base64," + base64;
  });
}

function pixels(img) {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, c.width, c.height);
}

async function drawPreview(preview) {
  const canvas = $("overlay");
  const image = await loadImage(preview.image);
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  canvas.style.width = Math.max(image.naturalWidth, 384) + "px";
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  let overlaid = 0;
  if (preview.mask) {
    const mask = pixels(await loadImage(preview.mask));
    const out = ctx.getImageData(0, 0, canvas.width, canvas.height);
    for (let i = 0; i < mask.data.length; i += 4) {
      const label = mask.data[i];
      if (label === 0) continue;
      const colour = PALETTE[label % PALETTE.length] || PALETTE[1];
      for (let k = 0; k < 3; k++) out.data[i + k] = Math.round((1 - ALPHA) * out.data[i + k] + ALPHA * colour[k]);
      overlaid++;
    }
    ctx.putImageData(out, 0, 0);
  }
  canvas.dataset.overlaid = String(overlaid);
  canvas.dataset.state = "done";
  $("slice").textContent = preview.slice === null ? "" : "slice " + preview.slice + " (last axis)";
}

function row(cells, header = false) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement(header ? "th" : "td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
    tr.appendChild(td);
  }
  return tr;
}

function showVolumes(table, body) {
  table.appendChild(row(["class", "label", body.shape && body.shape.length === 2 ? "area" : "volume"], true));
  for (const [name, v] of Object.entries(body.volumes)) {
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    const c = PALETTE[v.label % PALETTE.length];
    swatch.style.background = "rgb(" + c.join(",") + ")";
    const label = document.createElement("span");
    label.append(swatch, " " + name);
    table.appendChild(row([label, String(v.label), v.size.toFixed(1) + " " + v.unit + " (" + v.voxels + " voxels)"]));
  }
}

function showProbabilities(table, body) {
  const predicted = Array.isArray(body.predicted) ? body.predicted : [];
  table.appendChild(row(["class", "probability", ""], true));
  for (const [name, p] of Object.entries(body.probabilities)) {
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = Math.round(p * 200) + "px";
    table.appendChild(row([name + (predicted.includes(name) ? " (predicted)" : ""), p.toFixed(3), bar]));
  }
}

const NOT_SHOWN = new Set(["task", "preview", "mask"]);

function showFields(table, body) {
  table.appendChild(row(["field", "value"], true));
  for (const [key, value] of Object.entries(body)) {
    if (NOT_SHOWN.has(key)) continue;
    const text = typeof value === "object" ? JSON.stringify(value) : String(value);
    table.appendChild(row([key, text.length > 200 ? text.slice(0, 200) + "…" : text]));
  }
}

// the fields of an answer that have their own renderer; an answer with none of them lists its fields
const RENDERERS = [["volumes", showVolumes], ["probabilities", showProbabilities]];

function showTable(body) {
  const table = $("table");
  table.replaceChildren();
  const found = RENDERERS.filter(([key]) => body[key] && typeof body[key] === "object");
  if (found.length === 0) showFields(table, body);
  for (const [, render] of found) render(table, body);
}

function summary(body) {
  if (Array.isArray(body.predicted)) return "predicted: " + body.predicted.join(", ");
  if (body.preview && body.preview.mask) return "mask overlaid";
  return "done";
}

async function upload(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) { status("choose an image file first", true); return; }
  const form = new FormData();
  form.append("file", file, file.name);
  const headers = {};
  const token = $("token").value.trim();
  if (token) headers.Authorization = "Bearer " + token;
  $("send").disabled = true;
  $("overlay").dataset.state = "waiting";
  status("predicting…");
  try {
    const response = await fetch("predict?preview=true", { method: "POST", headers, body: form });
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) throw new Error(response.status + ": " + (body.detail || response.statusText));
    $("result").className = "";
    if (body.preview) await drawPreview(body.preview); else $("overlay").dataset.state = "done";
    showTable(body);
    status(summary(body));
  } catch (err) {
    $("overlay").dataset.state = "error";
    status(err.message, true);
  } finally {
    $("send").disabled = false;
  }
}

async function describe() {
  try {
    const h = await (await fetch("health")).json();
    $("model").textContent = h.task + " model " + h.run + " (" + h.model.dim + "D, " + h.model.in_channels +
      " channel(s); classes: " + h.model.classes.join(", ") + ")";
    if (!h.auth) $("token").parentElement.className = "hidden";
  } catch (err) {
    $("model").textContent = "the server did not answer /health";
  }
}

$("upload").addEventListener("submit", upload);
describe();
