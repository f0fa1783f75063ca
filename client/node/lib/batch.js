// Splits an id list into batches the daemon accepts: at most maxBatch ids
// (its max_batch) and a request under its max_frame_bytes, so callers can
// pass lists of any length, as they could to Redis directly.

// Room for the rest of the request: op, id, and a channel of up to 512
// bytes, each of which JSON may write as a 6-byte escape.
const OVERHEAD = 4096;

export function batches(ids, maxBatch, maxRequestBytes) {
  if (!Array.isArray(ids)) throw new TypeError('expected an array of ids');
  const budget = Math.max(maxRequestBytes - OVERHEAD, 1);
  const out = [];
  let cur = [];
  let bytes = 0;
  for (const id of ids) {
    const n = typeof id === 'string' ? Buffer.byteLength(JSON.stringify(id)) + 1 : 32;
    if (cur.length > 0 && (cur.length >= maxBatch || bytes + n > budget)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(id);
    bytes += n;
  }
  out.push(cur);
  return out;
}
