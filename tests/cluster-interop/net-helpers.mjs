// What the cluster suites and the cross-node soak (bench/soak-recovery.mjs) share to move clients between
// servers: joining a client's socket to an upstream one, and bounded waiting.

/** Resolves after `ms`. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits (polling every 20 ms) until `cond()` is true; throws after `ms`. */
export async function until(cond, what, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * Joins client socket `c` to upstream socket `up`, bytes both ways, and keeps the pair in `live` (a Set)
 * while it lasts: when either side ends or fails, both are destroyed and the pair leaves `live`. Returns
 * the pair (`{c, up, ...extra}`), which a proxy cuts by destroying `c` and `up`.
 */
export function splice(c, up, live, extra = {}) {
  const pair = { c, up, ...extra };
  live.add(pair);
  const drop = () => {
    c.destroy();
    up.destroy();
    live.delete(pair);
  };
  for (const s of [c, up]) {
    s.on("error", drop);
    s.on("close", drop);
  }
  if (c.destroyed) drop();
  else {
    c.pipe(up);
    up.pipe(c);
  }
  return pair;
}
