// Checks of options and arguments. Every delay in ms goes to setTimeout, which
// fires after 1 ms when given more than 2^31-1 (or Infinity, or NaN), and
// the daemon takes ttls, delays and retry counts up to 2^31-1 too
// (PROTOCOL.md §7).

export const MAX_MS = 2147483647;

// v as an integer from min to max; undefined and null give dflt.
export function intOption(name, v, dflt, min = 1, max = MAX_MS) {
  if (v === undefined || v === null) return dflt;
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new TypeError(`${name} must be an integer from ${min} to ${max}`);
  }
  return v;
}

// A size or count with no bound of the daemon's.
export function countOption(name, v, dflt) {
  return intOption(name, v, dflt, 1, Number.MAX_SAFE_INTEGER);
}

// An object literal (or Object.create(null)): what JSON.stringify writes as
// the members it shows.
export function isPlainObject(v) {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
