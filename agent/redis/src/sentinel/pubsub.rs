//! Sentinel events to subscribers: the hub the daemon publishes on, and Redis's glob
//! patterns for `PSUBSCRIBE`.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::resp::Reply;
use super::view::Event;

/// Where events are published; every connection with a subscription reads from it.
///
/// One bounded ring (`tokio::sync::broadcast`): publishing never waits, and a subscriber
/// that falls more than `capacity` events behind is disconnected by its connection task
/// (as Redis drops a pub/sub client over its output-buffer limit) instead of slowing
/// anyone else down.
#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Event>>,
}

impl EventHub {
    /// A hub keeping at most `capacity` undelivered events per subscriber.
    pub fn new(capacity: usize) -> EventHub {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventHub { tx }
    }

    /// Publishes `payload` on `channel` (e.g. `+switch-master`) to every subscriber.
    pub fn publish(&self, channel: &str, payload: &str) {
        self.publish_event(Event {
            channel: channel.into(),
            payload: payload.into(),
        });
    }

    /// Publishes a prepared event (see [`Event::switch_master`]).
    pub fn publish_event(&self, event: Event) {
        tracing::debug!(channel = %event.channel, payload = %event.payload, "sentinel event");
        // An error only means nobody is subscribed right now.
        let _ = self.tx.send(Arc::new(event));
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

/// The messages one event produces for a connection: `message` for a subscribed channel,
/// one `pmessage` per matching pattern.
pub fn messages_for(channels: &[Vec<u8>], patterns: &[Vec<u8>], event: &Event) -> Vec<Reply> {
    let channel = event.channel.as_bytes();
    let mut out = Vec::new();
    if channels.iter().any(|c| c == channel) {
        out.push(Reply::Push(vec![
            Reply::bulk("message"),
            Reply::bulk(channel),
            Reply::bulk(&event.payload),
        ]));
    }
    for pattern in patterns.iter().filter(|p| glob_match(p, channel)) {
        out.push(Reply::Push(vec![
            Reply::bulk("pmessage"),
            Reply::Bulk(pattern.clone()),
            Reply::bulk(channel),
            Reply::bulk(&event.payload),
        ]));
    }
    out
}

/// Redis's glob: `*`, `?`, `[abc]`, `[^a-z]`, `\x` escapes. Linear backtracking on the
/// last `*` only, so a hostile pattern costs at most pattern × text steps.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
            continue;
        }
        if p < pattern.len() {
            if let Some(next) = match_one(pattern, p, text[t]) {
                p = next;
                t += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches one text byte against the pattern element at `p`; the index after the element.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => {
            let mut i = p + 1;
            let negate = pattern.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut hit = false;
            while i < pattern.len() && pattern[i] != b']' {
                if pattern[i] == b'\\' && i + 1 < pattern.len() {
                    hit |= pattern[i + 1] == c;
                    i += 2;
                } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']'
                {
                    let (lo, hi) = (
                        pattern[i].min(pattern[i + 2]),
                        pattern[i].max(pattern[i + 2]),
                    );
                    hit |= (lo..=hi).contains(&c);
                    i += 3;
                } else {
                    hit |= pattern[i] == c;
                    i += 1;
                }
            }
            // An unterminated class ends at the pattern's end, as in Redis.
            let next = (i + 1).min(pattern.len());
            (hit != negate).then_some(next)
        }
        other => (other == c).then_some(p + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_redis() {
        assert!(glob_match(b"*", b"+switch-master"));
        assert!(glob_match(b"+*", b"+sdown"));
        assert!(!glob_match(b"+*", b"-sdown"));
        assert!(glob_match(b"?sdown", b"-sdown"));
        assert!(glob_match(b"[+-]sdown", b"+sdown"));
        assert!(!glob_match(b"[^+-]sdown", b"+sdown"));
        assert!(glob_match(b"[a-z]x", b"qx"));
        assert!(glob_match(b"a\\*", b"a*"));
        assert!(!glob_match(b"a\\*", b"ab"));
        assert!(glob_match(b"*master*", b"+switch-master"));
        assert!(!glob_match(b"*a*a*a*a*b", &[b'a'; 200]));
    }

    #[test]
    fn one_event_gives_a_message_and_a_pmessage_per_match() {
        let event = Event {
            channel: "+sdown".into(),
            payload: "p".into(),
        };
        let out = messages_for(
            &[b"+sdown".to_vec()],
            &[b"*".to_vec(), b"-*".to_vec()],
            &event,
        );
        assert_eq!(out.len(), 2);
        let mut wire = Vec::new();
        out[1].encode(2, &mut wire);
        assert_eq!(
            wire,
            b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$6\r\n+sdown\r\n$1\r\np\r\n"
        );
    }
}
