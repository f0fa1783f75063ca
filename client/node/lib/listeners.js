// Emitting to user listeners from inside the client's own work (reading a
// chunk, answering hello, handling a close). EventEmitter.emit stops at the
// first listener that throws and hands the exception to its caller, which
// here would lose the rest of a chunk, or make a connect listener's bug
// look like a failed hello; an async listener's rejection would go
// unhandled. So every listener runs on its own and its failure goes to
// report(err), and the client's work goes on.

export function emitGuarded(emitter, name, args, report) {
  for (const listener of emitter.rawListeners(name)) {
    try {
      const r = listener.apply(emitter, args);
      if (r !== null && typeof r === 'object' && typeof r.then === 'function') r.then(undefined, report);
    } catch (err) {
      report(err);
    }
  }
}

// Where a failure nobody else can take goes: onError if given, else the
// emitter's 'error' listeners, else stderr. Never throws.
export function reportError(emitter, onError, what, err) {
  try {
    if (typeof onError === 'function') onError(err);
    else if (emitter.listenerCount('error') > 0) emitter.emit('error', err);
    else console.error(`fmredis: ${what} failed:`, err);
  } catch (err2) {
    console.error(`fmredis: the error handler failed (reporting that ${what} failed):`, err2);
  }
}
