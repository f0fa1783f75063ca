// Exact JSON for cached executions (the `bigNumbers` option). The daemon
// keeps an execution's text byte for byte (PROTOCOL.md §9), but JSON.parse
// turns every number into a double, so 12345678901234567890 or
// 0.1000000000000000055511151231257827 would come back rounded. This parser
// keeps them: integers outside ±(2^53−1) become BigInt, and other numbers
// whose value a double does not hold become ExactNumber, which keeps the
// text. stringifyExact() writes both back as their digits.

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const WHOLE_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

// A JSON number kept as its text, for values a double would round.
export class ExactNumber {
  constructor(text) {
    text = String(text);
    if (!WHOLE_NUMBER.test(text)) throw new TypeError(`not a JSON number: ${text}`);
    this.text = text;
    Object.freeze(this);
  }

  toString() {
    return this.text;
  }

  // Arithmetic gets the nearest double; the text stays exact.
  valueOf() {
    return Number(this.text);
  }

  // JSON.stringify cannot write raw digits, so it gets the exact text as a
  // string rather than a rounded number.
  toJSON() {
    return this.text;
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    return `ExactNumber(${this.text})`;
  }
}

// The decimal value of a JSON number's text, as "[-]digits e exp" with no
// leading or trailing zeros in digits, so that equal values compare equal
// whatever their notation ("1.50e3" and "1500").
function canonical(text) {
  let i = 0;
  let sign = '';
  if (text[0] === '-') {
    sign = '-';
    i = 1;
  }
  const e = text.search(/[eE]/);
  const mant = e < 0 ? text.slice(i) : text.slice(i, e);
  let exp = e < 0 ? 0 : Number(text.slice(e + 1));
  const dot = mant.indexOf('.');
  let digits = mant;
  if (dot >= 0) {
    digits = mant.slice(0, dot) + mant.slice(dot + 1);
    exp -= mant.length - dot - 1;
  }
  digits = digits.replace(/^0+/, '');
  if (digits === '') return '0';
  const trailing = digits.length - digits.replace(/0+$/, '').length;
  return sign + digits.slice(0, digits.length - trailing) + 'e' + (exp + trailing);
}

function numberOf(text, integer) {
  const n = Number(text);
  if (integer) return Number.isSafeInteger(n) ? n : BigInt(text);
  if (n === 0 && canonical(text) === '0') return n;
  if (Number.isFinite(n) && canonical(text) === canonical(String(n))) return n;
  return new ExactNumber(text);
}

class Parser {
  constructor(text) {
    this.text = text;
    this.pos = 0;
  }

  fail(what) {
    throw new SyntaxError(`${what} at position ${this.pos} of JSON`);
  }

  space() {
    const t = this.text;
    let p = this.pos;
    for (;;) {
      const c = t.charCodeAt(p);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) p++;
      else break;
    }
    this.pos = p;
  }

  value() {
    this.space();
    const c = this.text[this.pos];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') return this.string();
    if (c === 't') return this.literal('true', true);
    if (c === 'f') return this.literal('false', false);
    if (c === 'n') return this.literal('null', null);
    return this.number();
  }

  literal(word, v) {
    if (!this.text.startsWith(word, this.pos)) this.fail('unexpected token');
    this.pos += word.length;
    return v;
  }

  number() {
    NUMBER.lastIndex = this.pos;
    const m = NUMBER.exec(this.text);
    if (m === null) this.fail('unexpected token');
    this.pos = NUMBER.lastIndex;
    return numberOf(m[0], m[1] === undefined && m[2] === undefined);
  }

  // Finds the closing quote, then lets JSON.parse decode the literal: the
  // escapes and the checks on control characters are then JSON.parse's own.
  string() {
    const t = this.text;
    let p = this.pos + 1;
    for (;;) {
      const q = t.indexOf('"', p);
      if (q < 0) this.fail('unterminated string');
      let b = q - 1;
      while (t.charCodeAt(b) === 0x5c) b--;
      if ((q - 1 - b) % 2 === 0) {
        const lit = t.slice(this.pos, q + 1);
        this.pos = q + 1;
        if (!/[\\\u0000-\u001f]/.test(lit)) return lit.slice(1, -1);
        return JSON.parse(lit);
      }
      p = q + 1;
    }
  }

  array() {
    const out = [];
    this.pos++;
    this.space();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.space();
      const c = this.text[this.pos++];
      if (c === ']') return out;
      if (c !== ',') this.fail('expected , or ]');
    }
  }

  object() {
    const out = {};
    this.pos++;
    this.space();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.space();
      if (this.text[this.pos] !== '"') this.fail('expected a member name');
      const key = this.string();
      this.space();
      if (this.text[this.pos++] !== ':') this.fail('expected :');
      const v = this.value();
      // An own member named __proto__, as JSON.parse makes it, not the
      // object's prototype.
      if (key === '__proto__') {
        Object.defineProperty(out, key, { value: v, writable: true, enumerable: true, configurable: true });
      } else {
        out[key] = v;
      }
      this.space();
      const c = this.text[this.pos++];
      if (c === '}') return out;
      if (c !== ',') this.fail('expected , or }');
    }
  }
}

// JSON.parse, but numbers a double would change come back as BigInt or
// ExactNumber.
export function parseExact(text) {
  const p = new Parser(text);
  const v = p.value();
  p.space();
  if (p.pos !== text.length) p.fail('unexpected data after the value');
  return v;
}

// JSON.stringify (toJSON, undefined and functions left out, non-finite
// numbers as null), plus BigInt and ExactNumber written as their digits.
export function stringifyExact(value) {
  const stack = [];

  function write(v, key) {
    if (v instanceof ExactNumber) return v.text;
    if (v !== null && (typeof v === 'object' || typeof v === 'bigint') && typeof v.toJSON === 'function') {
      v = v.toJSON(key);
      if (v instanceof ExactNumber) return v.text;
    }
    if (v instanceof Number || v instanceof String || v instanceof Boolean) v = v.valueOf();
    switch (typeof v) {
      case 'string':
        return JSON.stringify(v);
      case 'number':
        return Number.isFinite(v) ? String(v) : 'null';
      case 'boolean':
        return v ? 'true' : 'false';
      case 'bigint':
        return v.toString();
      case 'object':
        break;
      default:
        return undefined;
    }
    if (v === null) return 'null';
    if (stack.includes(v)) throw new TypeError('Converting circular structure to JSON');
    stack.push(v);
    let out;
    if (Array.isArray(v)) {
      const parts = [];
      for (let i = 0; i < v.length; i++) parts.push(write(v[i], String(i)) ?? 'null');
      out = '[' + parts.join(',') + ']';
    } else {
      const parts = [];
      for (const k of Object.keys(v)) {
        const s = write(v[k], k);
        if (s !== undefined) parts.push(JSON.stringify(k) + ':' + s);
      }
      out = '{' + parts.join(',') + '}';
    }
    stack.pop();
    return out;
  }

  return write(value, '');
}
