// Pointing at the video: a click is a point (with Alt or Shift held, a point that is not the object), a drag is a
// box, both on the frame that was on screen when the button went down. With an object picked (its label clicked,
// or its entry in the list), clicks refine that object. Coordinates are the frame's pixels.

const DRAG_PX = 6;  // a press that moves less than this is a click

export class Pointer {
  constructor(stage, video, overlay, { frameShown, send, picked, pick }) {
    this.stage = stage;
    this.video = video;
    this.overlay = overlay;
    this.frameShown = frameShown;  // () => the frame message on screen ({frame_index, resolution_wh})
    this.send = send;  // (prompt) => void
    this.picked = picked;  // () => the picked object's id or null
    this.pick = pick;  // (objectId | null) => void
    this.press = null;
    this.rubber = stage.querySelector(".rubber-band");
    stage.addEventListener("pointerdown", (e) => this.down(e));
    stage.addEventListener("pointermove", (e) => this.move(e));
    stage.addEventListener("pointerup", (e) => this.up(e));
    stage.addEventListener("pointercancel", () => this.cancel());
  }

  // Client coordinates to the frame's pixels (the video keeps its aspect inside its box).
  toFrame(clientX, clientY, message) {
    const rect = this.video.getBoundingClientRect();
    const [width, height] = message.resolution_wh;
    const scale = Math.min(rect.width / width, rect.height / height);
    const left = rect.left + (rect.width - width * scale) / 2;
    const top = rect.top + (rect.height - height * scale) / 2;
    const x = (clientX - left) / scale;
    const y = (clientY - top) / scale;
    return [Math.min(width, Math.max(0, x)), Math.min(height, Math.max(0, y))];
  }

  down(event) {
    const message = this.frameShown();
    if (!message || event.button !== 0) return;
    this.stage.setPointerCapture(event.pointerId);
    this.press = { x: event.clientX, y: event.clientY, message, negative: event.altKey || event.shiftKey };
  }

  move(event) {
    if (!this.press || !this.rubber) return;
    const { x, y } = this.press;
    if (Math.hypot(event.clientX - x, event.clientY - y) < DRAG_PX) return;
    const stage = this.stage.getBoundingClientRect();
    Object.assign(this.rubber.style, {
      display: "block", left: `${Math.min(x, event.clientX) - stage.left}px`,
      top: `${Math.min(y, event.clientY) - stage.top}px`, width: `${Math.abs(event.clientX - x)}px`,
      height: `${Math.abs(event.clientY - y)}px`,
    });
  }

  cancel() {
    this.press = null;
    if (this.rubber) this.rubber.style.display = "none";
  }

  up(event) {
    const press = this.press;
    this.cancel();
    if (!press) return;
    const { message } = press;
    const [x0, y0] = this.toFrame(press.x, press.y, message);
    const frameIndex = message.frame_index;
    if (Math.hypot(event.clientX - press.x, event.clientY - press.y) >= DRAG_PX) {
      const [x1, y1] = this.toFrame(event.clientX, event.clientY, message);
      const xyxy = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)].map((v) => Math.round(v));
      const prompt = { type: "box", frame_index: frameIndex, xyxy };
      if (this.picked() !== null) prompt.object_id = this.picked();
      this.send(prompt);
      return;
    }
    const label = this.overlay && this.overlay.enabled ? this.overlay.hitLabel(x0, y0) : null;
    if (label && label.trackId !== null && label.trackId !== undefined) {
      this.pick(label.trackId);
      return;
    }
    const prompt = { type: "point", frame_index: frameIndex, x: Math.round(x0), y: Math.round(y0),
                     label: press.negative ? 0 : 1 };
    if (this.picked() !== null) prompt.object_id = this.picked();
    this.send(prompt);
  }
}
