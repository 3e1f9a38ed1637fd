// Every displayed frame's time, from its arrival at the server to this screen, on the server's clock: in the
// pipeline (decode to result: detector, tracker, drawing; `stages_ms` says which), waiting for the encoder, the
// encode, the network and the jitter buffer (encoded to received here), decode and display. The server's times
// come with the frame messages (`decoded_at_ms`, `result_at_ms`, and `encoded` for frames encoded lately); this
// page's come from requestVideoFrameCallback (`receiveTime`, `expectedDisplayTime`), moved to the server's clock by
// `ServerClock`. The last frames are shown as a small waterfall, with every figure in the table for screen readers.

import { Percentiles } from "./clock.js";

export const SEGMENTS = [
  ["pipeline", "In the pipeline"],
  ["to_encoder", "Waiting for the encoder"],
  ["encode", "Encode"],
  ["network", "Network and jitter buffer"],
  ["display", "Decode and display"],
];
const KEEP_ENCODED = 300;  // encode times remembered (10 s at 30 fps)
const WAIT_FOR_ENCODE_MS = 1000;  // a frame whose encode time has not come by then is shown without it
const SCALE_MS = 200;  // a full-width bar

export class Timeline {
  constructor(table, rows = 6) {
    this.table = table;
    this.rows = rows;
    this.encoded = new Map();
    this.pending = [];
    this.done = [];
    this.percentiles = Object.fromEntries(SEGMENTS.map(([key]) => [key, new Percentiles()]));
    this.totals = new Percentiles();
  }

  addEncoded(entries) {
    for (const [pts, start, done] of entries || []) {
      this.encoded.set(pts >>> 0, [start, done]);
      if (this.encoded.size > KEEP_ENCODED) this.encoded.delete(this.encoded.keys().next().value);
    }
  }

  displayed(message, metadata) {
    if (typeof message.result_at_ms !== "number" || !metadata) return;
    this.pending.push({ message, metadata, at: performance.now() });
    if (this.pending.length > 120) this.pending.shift();
  }

  // Frames whose timelines are complete (or waited long enough), measured and shown; call about once a second.
  update(clock) {
    if (clock.offset === null) return;
    const now = performance.now();
    const waiting = [];
    for (const item of this.pending) {
      const encoded = this.encoded.get(item.message.rtp_pts >>> 0);
      if (!encoded && now - item.at < WAIT_FOR_ENCODE_MS) { waiting.push(item); continue; }
      this.done.push(this.measure(item, encoded, clock.offset));
      if (this.done.length > this.rows) this.done.shift();
    }
    this.pending = waiting;
    this.render();
    window.streamvisTimeline = this.summary();
  }

  measure({ message, metadata }, encoded, offset) {
    const toServer = (local) => (typeof local === "number" ? local + offset : null);
    const received = toServer(metadata.receiveTime);
    const shown = toServer(metadata.expectedDisplayTime);
    const [start, done] = encoded || [null, null];
    const span = (a, b) => (a !== null && b !== null ? b - a : null);
    const parts = {
      pipeline: span(message.decoded_at_ms, message.result_at_ms),
      to_encoder: span(message.result_at_ms, start),
      encode: span(start, done),
      network: span(done, received),
      display: span(received, shown),
    };
    for (const [key] of SEGMENTS) if (parts[key] !== null) this.percentiles[key].add(parts[key]);
    const total = span(message.decoded_at_ms, shown);
    if (total !== null) this.totals.add(total);
    return { frame: message.frame_index, parts, total, stages: message.stages_ms || {} };
  }

  summary() {
    const p50 = {};
    for (const [key] of SEGMENTS) {
      const s = this.percentiles[key].summary();
      p50[key] = s ? s.p50 : null;
    }
    const total = this.totals.summary();
    return { p50, total_p50: total ? total.p50 : null, samples: total ? total.samples : 0 };
  }

  render() {
    if (!this.table) return;
    const body = this.table.tBodies[0];
    const ms = (v) => (v === null ? "-" : `${v.toFixed(0)}`);
    body.replaceChildren(...this.done.slice().reverse().map((row) => {
      const tr = document.createElement("tr");
      const frame = document.createElement("th");
      frame.scope = "row";
      frame.textContent = String(row.frame);
      const stages = Object.entries(row.stages).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(", ");
      if (stages) frame.title = stages;
      tr.append(frame);
      for (const [key] of SEGMENTS) {
        const td = document.createElement("td");
        td.textContent = ms(row.parts[key]);
        tr.append(td);
      }
      const total = document.createElement("td");
      total.textContent = ms(row.total);
      const bar = document.createElement("td");
      bar.className = "waterfall";
      bar.setAttribute("aria-hidden", "true");
      for (const [key] of SEGMENTS) {
        const span = document.createElement("span");
        span.className = `seg-${key}`;
        span.style.width = `${Math.max(0, Math.min(100, (100 * (row.parts[key] || 0)) / SCALE_MS))}%`;
        bar.append(span);
      }
      tr.append(total, bar);
      return tr;
    }));
  }
}
