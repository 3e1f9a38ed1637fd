// Boxes, masks and labels drawn in the browser over the clean video, from the frame message of the frame on
// screen: masks stay sharp whatever the video's bitrate. Layers and classes can be switched off one by one, and
// masks have an opacity. Labels can be clicked (hitLabel) to pick an object.

import { forEachRun } from "./rle.js";

function colour(trackId, index) {
  const hue = ((trackId ?? index) * 137.508) % 360;  // the golden angle: neighbours get distant hues
  return { css: `hsl(${hue.toFixed(0)} 85% 55%)`, rgb: hslToRgb(hue / 360, 0.85, 0.55) };
}

function hslToRgb(h, s, l) {
  const f = (n) => {
    const k = (n + h * 12) % 12;
    const a = s * Math.min(l, 1 - l);
    return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

export class Overlay {
  constructor(canvas, controls) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.controls = controls;  // {boxes, masks, labels: checkboxes; opacity: range; classes: container}
    this.hidden = new Set();  // class names switched off
    this.labels = [];  // hit areas of the labels drawn last: {x, y, w, h, trackId, name}
    this.drawnFrame = null;
    this.enabled = false;
    this.highlighted = null;  // a track pointed out by a search: drawn with a thicker box
  }

  setEnabled(on) {
    this.enabled = on;
    this.canvas.hidden = !on;
    if (!on) this.clear();
  }

  clear() {
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.labels = [];
  }

  // A checkbox per class seen so far, so any class can be hidden.
  noteClasses(detections) {
    const box = this.controls.classes;
    for (const d of detections) {
      const name = d.class_name || "object";
      if (box.querySelector(`input[data-class="${CSS.escape(name)}"]`)) continue;
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.checked = !this.hidden.has(name);
      input.dataset.class = name;
      input.addEventListener("change", () => {
        if (input.checked) this.hidden.delete(name); else this.hidden.add(name);
      });
      label.append(input, ` ${name}`);
      box.append(label);
    }
  }

  draw(message) {
    if (!this.enabled || !message) return;
    const [width, height] = message.resolution_wh;
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    const ctx = this.context;
    ctx.clearRect(0, 0, width, height);
    this.labels = [];
    const detections = (message.detections || []).filter((d) => !this.hidden.has(d.class_name || "object"));
    this.noteClasses(message.detections || []);
    if (this.controls.masks.checked) this.drawMasks(detections, width, height);
    detections.forEach((d, i) => {
      const { css } = colour(d.track_id, i);
      const [x1, y1, x2, y2] = d.xyxy;
      if (this.controls.boxes.checked) {
        ctx.lineWidth = Math.max(2, width / 480) * (d.track_id === this.highlighted ? 3 : 1);
        ctx.strokeStyle = css;
        ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      }
      if (this.controls.labels.checked) {
        const text = `${d.class_name || "object"}${d.track_id !== null && d.track_id !== undefined ? ` #${d.track_id}` : ""}`;
        const size = Math.max(12, Math.round(height / 40));
        ctx.font = `${size}px system-ui, sans-serif`;
        const w = ctx.measureText(text).width + size * 0.6;
        const h = size * 1.4;
        const y = Math.max(0, y1 - h);
        ctx.fillStyle = css;
        ctx.fillRect(x1, y, w, h);
        ctx.fillStyle = "#000";
        ctx.fillText(text, x1 + size * 0.3, y + size * 1.05);
        this.labels.push({ x: x1, y, w, h, trackId: d.track_id, name: d.class_name });
      }
    });
    this.drawnFrame = message.frame_index;
    window.streamvisOverlay = message;  // what is drawn now, for tests and tools
  }

  drawMasks(detections, width, height) {
    const image = this.context.createImageData(width, height);
    const pixels = image.data;
    const alpha = Math.round(255 * Number(this.controls.opacity.value));
    detections.forEach((d, i) => {
      if (!d.mask) return;
      const [r, g, b] = colour(d.track_id, i).rgb;
      forEachRun(d.mask, (x, y0, y1) => {
        for (let y = y0; y < y1; y += 1) {
          const at = (y * width + x) * 4;
          pixels[at] = r;
          pixels[at + 1] = g;
          pixels[at + 2] = b;
          pixels[at + 3] = alpha;
        }
      });
    });
    this.context.putImageData(image, 0, 0);
  }

  // The object whose label is under (x, y) in frame pixels, if any.
  hitLabel(x, y) {
    return this.labels.find((l) => x >= l.x && x <= l.x + l.w && y >= l.y && y <= l.y + l.h) || null;
  }
}
