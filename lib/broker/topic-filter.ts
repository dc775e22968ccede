/**
 * MQTT topic filter rules (MQTT 3.1.1 section 4.7) for the embedded broker's authorizer.
 *
 * Written here rather than taken from aedes' dependencies: qlobber (via mqemitter) answers
 * "which stored filters match this topic", but authorizing a SUBSCRIBE needs "is every topic
 * this filter can match also matched by that ACL filter" (filter coverage), which no
 * dependency offers; and matching one topic against the two or three filters of one identity
 * needs no trie. Semantics follow mosquitto_topic_matches_sub: `+` is one whole level (an
 * empty level too), `#` is the last level and also matches the parent (`a/#` matches `a`),
 * and a wildcard in the first level never matches a topic starting with `$` (MQTT-4.7.2-1).
 */

/** A topic name a client may publish to: non-empty, no wildcards, no NUL. */
export function isValidTopic(topic: string): boolean {
  return topic.length > 0 && !/[+#\0]/.test(topic);
}

/** A subscription filter: `+` and `#` only as whole levels, `#` only last. */
export function isValidFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\0')) return false;
  const levels = filter.split('/');
  return levels.every((level, i) => {
    if (level === '#') return i === levels.length - 1;
    return level === '+' || !/[+#]/.test(level);
  });
}

/** Whether `filter` matches the topic name `topic`. */
export function topicMatches(filter: string, topic: string): boolean {
  if (!isValidFilter(filter) || !isValidTopic(topic)) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * Whether every topic that `inner` can match is also matched by `outer`: a client asking
 * for `inner` then receives nothing its ACL filter `outer` would refuse.
 */
export function filterCovers(outer: string, inner: string): boolean {
  if (!isValidFilter(outer) || !isValidFilter(inner)) return false;
  const o = outer.split('/');
  const n = inner.split('/');
  // `+/x` or `#` cannot reach `$SYS/x`, while a literal `$SYS` level in `inner` does.
  if ((o[0] === '+' || o[0] === '#') && n[0].startsWith('$')) return false;
  for (let i = 0; i < o.length; i++) {
    if (o[i] === '#') return true;
    // `inner` ended: it only matches topics of this length, which `outer` (longer, no `#` here) does not.
    if (i >= n.length) return false;
    if (n[i] === '#') return false;
    if (o[i] === '+') continue;
    if (n[i] === '+' || n[i] !== o[i]) return false;
  }
  return o.length === n.length;
}
