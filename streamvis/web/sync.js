// Which frame message belongs to the frame on screen. Each video frame's RTP timestamp is its server pts (on the
// 90 kHz clock) plus a random origin the server tells this viewer ("clock" message); each frame message carries
// that pts (rtp_pts). requestVideoFrameCallback hands over every displayed frame's RTP timestamp, so the two meet.

const KEEP = 300;  // frame messages remembered (10 s at 30 fps): enough for any display delay

export class FrameSync {
  constructor(video, onDisplayed) {
    this.video = video;
    this.onDisplayed = onDisplayed;  // (message, metadata, synced) for every displayed frame
    this.origin = null;
    this.byPts = new Map();
    this.latest = null;
    this.running = false;
  }

  setOrigin(origin) {
    if (typeof origin === "number") this.origin = origin >>> 0;
  }

  add(message) {
    this.latest = message;
    if (typeof message.rtp_pts !== "number") return;
    this.byPts.set(message.rtp_pts >>> 0, message);
    if (this.byPts.size > KEEP) this.byPts.delete(this.byPts.keys().next().value);
  }

  // The message of a displayed frame: exact when the RTP timestamp and origin are known, else the newest.
  lookup(metadata) {
    if (this.origin !== null && metadata && typeof metadata.rtpTimestamp === "number") {
      const found = this.byPts.get((metadata.rtpTimestamp - this.origin) >>> 0);
      if (found) return { message: found, synced: true };
    }
    return { message: this.latest, synced: false };
  }

  start() {
    if (this.running || !("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
    this.running = true;
    const step = (now, metadata) => {
      if (!this.running) return;
      const { message, synced } = this.lookup(metadata);
      if (message) this.onDisplayed(message, metadata, synced);
      this.video.requestVideoFrameCallback(step);
    };
    this.video.requestVideoFrameCallback(step);
  }

  stop() {
    this.running = false;
    this.byPts.clear();
    this.latest = null;
    this.origin = null;
  }
}
