// The server's clock as seen from this page: pings over the data channel, and the offset of the quickest
// round trip (NTP's rule: the shortest exchange is the least skewed). server_ms ~ performance.now() + offset.

export class ServerClock {
  constructor() {
    this.offset = null;
    this.bestRtt = Infinity;
    this.samples = [];
  }

  ping(channel) {
    if (channel && channel.readyState === "open") channel.send(JSON.stringify({ type: "ping", t: performance.now() }));
  }

  pong(message) {
    const now = performance.now();
    const rtt = now - message.t;
    if (!(rtt >= 0) || typeof message.server_ms !== "number") return;
    this.samples.push({ rtt, offset: message.server_ms - (message.t + now) / 2 });
    if (this.samples.length > 20) this.samples.shift();
    const best = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    this.bestRtt = best.rtt;
    this.offset = best.offset;
  }

  // A server timestamp (ms) on this page's performance.now() clock, or null before the first pong.
  toLocal(serverMs) {
    return this.offset === null ? null : serverMs - this.offset;
  }
}

// p50 and p95 of the last `keep` samples.
export class Percentiles {
  constructor(keep = 300) {
    this.keep = keep;
    this.values = [];
  }

  add(value) {
    this.values.push(value);
    if (this.values.length > this.keep) this.values.shift();
  }

  summary() {
    if (!this.values.length) return null;
    const sorted = [...this.values].sort((a, b) => a - b);
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.round(q * (sorted.length - 1)))];
    return { p50: at(0.5), p95: at(0.95), samples: sorted.length };
  }
}
