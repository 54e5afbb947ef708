// mnistseg serve: the drawing page. Plain JavaScript, no build step, nothing from the internet.
//
// You draw white strokes on a black canvas (MNIST's polarity). After every change the
// canvas goes to POST /api/segment as a PNG; the answer's mask (one class id per canvas
// pixel) is painted on a second canvas above the drawing, in the class colours.
// At most one request is in flight: changes made meanwhile are sent when it returns.
"use strict";

const drawing = document.getElementById("drawing");
const overlay = document.getElementById("overlay");
const ink = drawing.getContext("2d");
const paint = overlay.getContext("2d");
const statusLine = document.getElementById("status");
const penInput = document.getElementById("pen");

const page = {
  strokes: [],          // each {width, points: [[x, y], ...]} in canvas pixels
  activeStroke: null,   // the stroke under the pointer, also the last of page.strokes
  clearedStrokes: [],   // what Clear removed, so that Undo can bring it back
  drawnVersion: 0,      // bumped at every change of the drawing
  dirty: false,         // a change not yet sent
  inFlight: false,
  colors: [],           // [r, g, b] per class id, from /api/info
  classes: [],
};

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function hexToRgb(hex) {
  return [1, 3, 5].map((start) => parseInt(hex.slice(start, start + 2), 16));
}

function swatch(color) {
  const box = document.createElement("span");
  box.className = "swatch";
  box.style.background = color;
  return box;
}

// ---- drawing -------------------------------------------------------------------------

function canvasPoint(event) {
  const box = drawing.getBoundingClientRect();  // the canvas is scaled by CSS
  return [
    (event.clientX - box.left) * (drawing.width / box.width),
    (event.clientY - box.top) * (drawing.height / box.height),
  ];
}

function drawSegment(width, from, to) {
  ink.strokeStyle = "#fff";
  ink.fillStyle = "#fff";
  ink.lineWidth = width;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  if (from[0] === to[0] && from[1] === to[1]) {  // a dot: a zero-length line draws nothing
    ink.beginPath();
    ink.arc(to[0], to[1], width / 2, 0, 2 * Math.PI);
    ink.fill();
    return;
  }
  ink.beginPath();
  ink.moveTo(from[0], from[1]);
  ink.lineTo(to[0], to[1]);
  ink.stroke();
}

function redraw() {
  ink.fillStyle = "#000";  // opaque black: a transparent canvas would read as white paper
  ink.fillRect(0, 0, drawing.width, drawing.height);
  for (const stroke of page.strokes) {
    stroke.points.forEach((point, index) => drawSegment(stroke.width, stroke.points[Math.max(index - 1, 0)], point));
  }
}

function changed() {
  page.drawnVersion += 1;
  document.body.dataset.drawnVersion = String(page.drawnVersion);
  requestSegmentation();
}

drawing.addEventListener("pointerdown", (event) => {
  if (event.pointerType === "mouse" && event.button !== 0) return;
  event.preventDefault();
  drawing.setPointerCapture(event.pointerId);
  const point = canvasPoint(event);
  page.activeStroke = { width: Number(penInput.value), points: [point] };
  page.strokes.push(page.activeStroke);
  page.clearedStrokes = [];
  drawSegment(page.activeStroke.width, point, point);
  changed();
});

drawing.addEventListener("pointermove", (event) => {
  const stroke = page.activeStroke;
  if (!stroke) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) {
    const point = canvasPoint(each);
    drawSegment(stroke.width, stroke.points[stroke.points.length - 1], point);
    stroke.points.push(point);
  }
  changed();
});

for (const name of ["pointerup", "pointercancel"]) {
  drawing.addEventListener(name, () => { page.activeStroke = null; });
}

function undo() {
  if (!page.strokes.length && !page.clearedStrokes.length) return;
  if (page.strokes.length) {
    page.strokes.pop();
  } else {  // undo a Clear
    page.strokes = page.clearedStrokes;
    page.clearedStrokes = [];
  }
  page.activeStroke = null;
  redraw();
  changed();
}

function clearAll() {
  if (!page.strokes.length) return;
  page.clearedStrokes = page.strokes;
  page.strokes = [];
  page.activeStroke = null;
  redraw();
  changed();
}

document.getElementById("undo").addEventListener("click", undo);
document.getElementById("clear").addEventListener("click", clearAll);
document.getElementById("show-overlay").addEventListener("change", (event) => {
  overlay.style.visibility = event.target.checked ? "visible" : "hidden";
});
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") { event.preventDefault(); undo(); }
  if (event.key === "Escape") clearAll();
});

// ---- segmentation --------------------------------------------------------------------

function requestSegmentation() {
  page.dirty = true;
  if (!page.inFlight && page.colors.length) sendDrawing();
}

function finished(version) {
  page.inFlight = false;
  document.body.dataset.segmentedVersion = String(version);
  if (page.dirty) sendDrawing();
}

function sendDrawing() {
  page.dirty = false;
  page.inFlight = true;
  const version = page.drawnVersion;
  if (!page.strokes.length) {
    showResult(null);
    setStatus("draw a digit");
    finished(version);
    return;
  }
  setStatus("segmenting…");
  drawing.toBlob(async (blob) => {
    try {
      const response = await fetch("/api/segment", { method: "POST", headers: { "Content-Type": "image/png" }, body: blob });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || `the server answered ${response.status}`);
      showResult(answer);
      setStatus(`segmented in ${Math.round(answer.milliseconds)} ms`);
    } catch (error) {
      setStatus(error instanceof TypeError ? "the server did not answer: is `mnistseg serve` still running?" : error.message, true);
    } finally {
      finished(version);
    }
  }, "image/png");
}

function showResult(answer) {
  paint.clearRect(0, 0, overlay.width, overlay.height);
  const list = document.getElementById("digits");
  list.replaceChildren();
  document.getElementById("reading").textContent = answer && answer.digits.length ? answer.digits.join(" ") : "–";
  if (!answer) return;

  // The mask: base64 of one byte per canvas pixel (class id, 0 = background), row by row.
  const mask = Uint8Array.from(atob(answer.mask), (char) => char.charCodeAt(0));
  const pixels = paint.createImageData(answer.width, answer.height);
  mask.forEach((classId, index) => {
    if (classId === 0) return;  // background stays transparent: the strokes show through
    pixels.data.set([...page.colors[classId], 255], 4 * index);
  });
  paint.putImageData(pixels, 0, 0);

  for (const region of answer.regions) {
    const item = document.createElement("li");
    item.dataset.classId = String(region.class_id);
    item.append(swatch(`rgb(${page.colors[region.class_id].join(",")})`),
      `${region.class}: ${region.area.toLocaleString("en")} px`);
    list.append(item);
  }
}

// ---- start ---------------------------------------------------------------------------

async function start() {
  redraw();
  try {
    const response = await fetch("/api/info");
    const info = await response.json();
    if (!response.ok) throw new Error(info.error);
    page.classes = info.classes;
    page.colors = info.colors.map(hexToRgb);
    document.getElementById("model").textContent = info.model;
    const legend = document.getElementById("legend");
    info.classes.forEach((name, classId) => {
      if (classId === 0) return;
      const item = document.createElement("li");
      item.append(swatch(info.colors[classId]), name);
      legend.append(item);
    });
    document.body.dataset.ready = "true";
    setStatus("draw a digit");
    if (page.dirty) sendDrawing();
  } catch (error) {
    setStatus(`could not load the model's details: ${error.message}`, true);
  }
}

start();
