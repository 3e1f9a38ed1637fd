// COCO run-length masks, as the data channel carries them ({"size": [h, w], "counts": "..."}, pycocotools'
// compressed string form): runs alternate 0s and 1s over the mask in column-major order, starting with 0s.

// The run lengths of a compressed counts string (pycocotools' rleFrString).
export function runLengths(counts) {
  const out = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0;
    let k = 0;
    let more = 1;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p += 1;
      k += 1;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (out.length > 2) x += out[out.length - 2];
    out.push(x);
  }
  return out;
}

// Calls fill(x, yStart, yEnd) for every vertical run of 1s (pixels (x, y) for yStart <= y < yEnd).
export function forEachRun(rle, fill) {
  const [height] = rle.size;
  const runs = runLengths(rle.counts);
  let position = 0;
  for (let i = 0; i < runs.length; i += 1) {
    const length = runs[i];
    if (i % 2 === 1 && length > 0) {
      let start = position;
      const end = position + length;
      while (start < end) {  // a run may wrap from one column into the next
        const x = Math.floor(start / height);
        const y0 = start - x * height;
        const y1 = Math.min(height, y0 + (end - start));
        fill(x, y0, y1);
        start += y1 - y0;
      }
    }
    position += length;
  }
}
