// seglab web page: upload an image, draw the instance outlines over it with zoom and pan,
// count instances per class, download the server's GeoJSON / overlay PNG / label TIFF.
"use strict";
const $ = (sel) => document.querySelector(sel);
const canvas = $("#overlay");
const ctx = canvas.getContext("2d");
const view = { scale: 1, x: 0, y: 0 };
let base = null;      // ImageBitmap of the image (or of the server's overlay for TIFF)
let result = null;    // the /predict JSON
let file = null;

fetch("/model").then((r) => r.json()).then((m) => {
  $("#model").textContent = `${m.name} · ${m.task}${m.method ? " / " + m.method : ""} · backend ${m.backend}` +
    (m.mpp ? ` · ${m.mpp} µm/px` : "");
}).catch(() => { $("#model").textContent = "model unavailable"; });

function status(text, error = false) {
  $("#status").textContent = text;
  $("#status").classList.toggle("error", error);
}

async function post(format) {
  const body = new FormData();
  body.append("file", file, file.name);
  const response = await fetch(`/predict?format=${format}`, { method: "POST", body });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response;
}

async function run(chosen) {
  file = chosen;
  result = null;
  canvas.dataset.ready = "0";
  $("#counts").hidden = true;
  $("#downloads").hidden = true;
  status(`Predicting ${file.name}…`);
  const started = performance.now();
  try {
    result = await (await post("json")).json();
    try {
      base = await createImageBitmap(file);
    } catch (e) {  // TIFF and other formats the browser cannot show: the server's overlay instead
      base = await createImageBitmap(await (await post("png")).blob());
    }
  } catch (e) {
    status(e.message, true);
    return;
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  status(`${result.count} instances in ${result.width} × ${result.height} px (${seconds} s).`);
  fillCounts(result);
  $("#downloads").hidden = false;
  fit();
  canvas.dataset.ready = "1";
}

function fillCounts(r) {
  const body = $("#counts tbody");
  body.replaceChildren();
  const colors = {};
  for (const inst of r.instances) colors[inst.class] = inst.color;
  for (const [name, count] of Object.entries(r.counts).sort()) {
    const row = body.insertRow();
    const cell = row.insertCell();
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${(colors[name] || [255, 255, 0]).join(",")})`;
    cell.append(swatch, name);
    row.insertCell().textContent = count;
    row.dataset.class = name;
  }
  $("#total").textContent = r.count;
  $("#counts").hidden = false;
}

function fit() {
  if (!result) return;
  resize();
  view.scale = Math.min(canvas.width / result.width, canvas.height / result.height);
  view.x = (canvas.width - result.width * view.scale) / 2;
  view.y = (canvas.height - result.height * view.scale) / 2;
  draw();
}

function resize() {
  canvas.width = canvas.clientWidth * devicePixelRatio;
  canvas.height = canvas.clientHeight * devicePixelRatio;
}

function draw() {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!result) return;
  ctx.setTransform(view.scale, 0, 0, view.scale, view.x, view.y);
  ctx.imageSmoothingEnabled = view.scale < 1;
  if (base) ctx.drawImage(base, 0, 0, result.width, result.height);
  ctx.lineWidth = 1.5 / view.scale;
  for (const inst of result.instances) {
    ctx.strokeStyle = `rgb(${inst.color.join(",")})`;
    ctx.beginPath();
    inst.polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    ctx.stroke();
  }
}

// zoom at the pointer, pan by dragging, double-click to fit
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  const factor = Math.exp(-e.deltaY * 0.0015);
  const px = e.offsetX * devicePixelRatio, py = e.offsetY * devicePixelRatio;
  view.x = px - (px - view.x) * factor;
  view.y = py - (py - view.y) * factor;
  view.scale *= factor;
  draw();
}, { passive: false });
let drag = null;
canvas.addEventListener("pointerdown", (e) => {
  drag = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y };
  canvas.setPointerCapture(e.pointerId);
  canvas.classList.add("dragging");
});
canvas.addEventListener("pointermove", (e) => {
  if (!drag) return;
  view.x = drag.vx + (e.clientX - drag.x) * devicePixelRatio;
  view.y = drag.vy + (e.clientY - drag.y) * devicePixelRatio;
  draw();
});
canvas.addEventListener("pointerup", () => { drag = null; canvas.classList.remove("dragging"); });
canvas.addEventListener("dblclick", fit);
window.addEventListener("resize", fit);

// choose or drop a file
$("#file").addEventListener("change", (e) => e.target.files[0] && run(e.target.files[0]));
const drop = $("#drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) run(e.dataTransfer.files[0]);
});

// downloads: the server's files for the same image
const SUFFIX = { geojson: ".geojson", png: "_overlay.png", tiff: "_instances.tif" };
$("#downloads").addEventListener("click", async (e) => {
  const format = e.target.dataset && e.target.dataset.format;
  if (!format || !file) return;
  try {
    const blob = await (await post(format)).blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = file.name.replace(/\.[^.]*$/, "") + SUFFIX[format];
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  } catch (err) {
    status(err.message, true);
  }
});
