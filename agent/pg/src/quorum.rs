//! `synchronous_mode: quorum`: quorum commit, as Patroni runs it.
//!
//! Two settings describe synchronous replication, and they change one at a time:
//! - PostgreSQL's `synchronous_standby_names = 'ANY n (s1, ..., sm)'`: a commit is
//!   acknowledged once `n` of the listed standbys flushed it ([`Names`]);
//! - the `/sync` key `{"sync_standby": "v1,...", "quorum": q}`: a replica may be promoted
//!   only after it saw `q` of the voters (and the last leader) not ahead of it, counting
//!   itself — `q + 1` in all ([`Key`]).
//!
//! The rule that keeps every acknowledged commit on whoever is promoted: for every commit
//! ever acknowledged, at most `q` voters may lack it (then any `q + 1` voters include one
//! that has it, and the candidate is at least as far ahead as each of them). Under
//! `ANY n (S)` a commit is on at least `n` members of `S`, so at most `|V ∪ S| - n` voters
//! lack it: the key *covers* the names when `q >= |V ∪ S| - n`.
//!
//! Changing either setting must keep the rule for commits already acknowledged and for
//! those to come:
//! - PostgreSQL may change to names the current key covers (future commits stay safe);
//! - the key may *tighten* at any time (`q' >= q + |V' \ V|`: whoever lacked a commit
//!   before is still counted) as long as it covers the names in force;
//! - the key may loosen only on evidence: it covers the names in force, and at most `q'`
//!   voters are not *confirmed*, i.e. not known to have flushed the leader's WAL position
//!   of the moment those names took effect (the *mark*: every commit acknowledged under
//!   earlier names lies before it).
//!
//! So the leader grows the key before it makes PostgreSQL require less, makes PostgreSQL
//! require more before it relaxes the key, and relaxes the key only at a later turn, once
//! enough voters confirmed. The target is Patroni's: every eligible streaming standby is
//! both listed and a voter, `n = min(synchronous_node_count, standbys)`, `q = standbys - n`.
//! Everything here is pure; `operate.rs` reads PostgreSQL and the DCS and carries the
//! steps out in order.

use super::sync::{Standby, SyncSettings};
use std::collections::BTreeSet;

/// `synchronous_standby_names`, as far as durability goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// How many listed standbys must acknowledge a commit (0: asynchronous).
    pub count: usize,
    pub standbys: BTreeSet<String>,
    /// `*` is listed: any standby may acknowledge, listed or not.
    pub any_standby: bool,
    /// `FIRST n (...)` (priority) rather than `ANY n (...)`. For durability both mean "on
    /// at least n of the list"; Warden writes `ANY` in quorum mode.
    pub first: bool,
}

impl Names {
    /// Asynchronous replication: `''`.
    pub fn none() -> Names {
        Names::default()
    }

    /// Strict mode without a candidate: `'*'`, one acknowledgement from any standby.
    pub fn any_one() -> Names {
        Names {
            count: 1,
            any_standby: true,
            first: true,
            ..Names::default()
        }
    }

    /// `ANY n (a,b)`, `*`, or `''`.
    pub fn render(&self) -> String {
        if self.any_standby && self.standbys.is_empty() {
            return "*".into();
        }
        if self.count == 0 || (self.standbys.is_empty() && !self.any_standby) {
            return String::new();
        }
        // Patroni's text (monitoring compares it): sorted, quoted only where needed,
        // `,` without spaces.
        let mut list = crate::sync::standby_list(self.standbys.iter());
        if self.any_standby {
            if !list.is_empty() {
                list.push(',');
            }
            list.push('*');
        }
        if self.first {
            format!("{} ({list})", self.count)
        } else {
            format!("ANY {} ({list})", self.count)
        }
    }

    /// Parses PostgreSQL's syntax: `''`, `s1, s2` (FIRST 1), `n (s1, ...)` (FIRST n),
    /// `FIRST n (...)`, `ANY n (...)`; names plain or double-quoted, `*` for any.
    /// `None` if PostgreSQL would not accept it either.
    pub fn parse(text: &str) -> Option<Names> {
        let tokens = tokenize(text)?;
        let mut rest: &[Token] = &tokens;
        if rest.is_empty() {
            return Some(Names::none());
        }
        let mut first = true;
        let mut count = 1;
        let keyword =
            |t: &Token, word: &str| matches!(t, Token::Word(w) if w.eq_ignore_ascii_case(word));
        let counted = match rest {
            [k, Token::Number(n), Token::Open, ..] if keyword(k, "any") || keyword(k, "first") => {
                first = keyword(k, "first");
                count = *n;
                rest = &rest[3..];
                true
            }
            [Token::Number(n), Token::Open, ..] => {
                count = *n;
                rest = &rest[2..];
                true
            }
            _ => false,
        };
        if counted {
            rest = match rest.split_last() {
                Some((Token::Close, inner)) => inner,
                _ => return None,
            };
        }
        let mut names = Names {
            count,
            first,
            ..Names::default()
        };
        for (i, t) in rest.iter().enumerate() {
            match (i % 2, t) {
                (0, Token::Word(w)) => {
                    names.standbys.insert(w.clone());
                }
                (0, Token::Star) => names.any_standby = true,
                (1, Token::Comma) if i + 1 < rest.len() => {}
                _ => return None,
            }
        }
        if rest.is_empty() {
            return None;
        }
        Some(names)
    }

    /// How many of `voters` may lack a commit acknowledged under these names.
    pub fn may_lack(&self, voters: &BTreeSet<String>) -> usize {
        if self.count == 0 || self.any_standby {
            // No acknowledgement, or one from a standby that need not be a voter.
            return voters.len();
        }
        let union = voters.union(&self.standbys).count();
        union.saturating_sub(self.count).min(voters.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Number(usize),
    Star,
    Comma,
    Open,
    Close,
}

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            ',' => out.push(Token::Comma),
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            '*' => out.push(Token::Star),
            '"' => {
                let mut word = String::new();
                loop {
                    match chars.next()? {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            word.push('"');
                        }
                        '"' => break,
                        other => word.push(other),
                    }
                }
                out.push(Token::Word(word));
            }
            c if c.is_ascii_digit() => {
                let mut digits = String::from(c);
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                out.push(Token::Number(digits.parse().ok()?));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = String::from(c);
                while let Some(d) = chars
                    .peek()
                    .filter(|d| d.is_alphanumeric() || **d == '_' || **d == '$')
                {
                    word.push(*d);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The `/sync` key's promotion rule (leader aside).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Key {
    pub quorum: usize,
    pub voters: BTreeSet<String>,
}

impl Key {
    /// Nobody but the leader may be promoted: safe whatever PostgreSQL does.
    pub fn leader_only() -> Key {
        Key::default()
    }

    /// Every commit acknowledged under `names` misses at most `quorum` voters.
    pub fn covers(&self, names: &Names) -> bool {
        self.voters.is_empty() || self.quorum >= names.may_lack(&self.voters)
    }

    /// `to` asks a candidate for at least as much as `self`: every voter that may lack a
    /// commit under `self` is still allowed for.
    pub fn tightened_by(&self, to: &Key) -> bool {
        to.quorum >= self.quorum + to.voters.difference(&self.voters).count()
    }

    /// The smallest tightening of `self` that also covers `names`: their standbys join
    /// the voters, and the quorum grows with them.
    fn widened_for(&self, names: &Names) -> Key {
        let voters: BTreeSet<String> = self.voters.union(&names.standbys).cloned().collect();
        let quorum = (self.quorum + names.standbys.difference(&self.voters).count())
            .max(names.may_lack(&voters));
        Key { quorum, voters }
    }
}

/// What the leader knows this turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// `/sync` if it names us as leader; `None` otherwise (another leader's, or missing).
    pub key: Option<Key>,
    /// The names PostgreSQL enforces now.
    pub in_force: Names,
    /// `in_force` is what we last set and its mark was taken: `confirmed` is evidence.
    pub settled: bool,
    /// Standbys that should be synchronous now ([`pick`]).
    pub active: BTreeSet<String>,
    /// Standbys that flushed the mark of `in_force`.
    pub confirmed: BTreeSet<String>,
    pub node_count: u32,
    pub strict: bool,
}

/// One change, carried out in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write `/sync` (us as leader) by compare-and-swap.
    Key(Key),
    /// Set `synchronous_standby_names` (and reload).
    Names(Names),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// At most one key write (it is a compare-and-swap on the revision read this turn).
    pub steps: Vec<Step>,
    /// The target is not reached yet: look again soon rather than a `loop_wait` later.
    pub pending: bool,
}

/// Where quorum commit is headed with `active` standbys.
pub fn target(active: &BTreeSet<String>, node_count: u32, strict: bool) -> (Key, Names) {
    if active.is_empty() {
        let names = if strict {
            Names::any_one()
        } else {
            Names::none()
        };
        return (Key::leader_only(), names);
    }
    let wanted = usize::try_from(node_count.max(1)).unwrap_or(usize::MAX);
    let count = wanted.min(active.len());
    let names = Names {
        count,
        standbys: active.clone(),
        any_standby: false,
        first: false,
    };
    let key = Key {
        quorum: active.len() - count,
        voters: active.clone(),
    };
    (key, names)
}

/// The safe steps toward [`target`] this turn (see the module comment for the rules).
pub fn plan(input: &Input) -> Plan {
    let (want_key, want_names) = target(&input.active, input.node_count, input.strict);
    let mut steps = Vec::new();
    let Some(mut key) = input.key.clone() else {
        // The key must name us before anything relies on it.
        return Plan {
            steps: vec![Step::Key(Key::leader_only())],
            pending: true,
        };
    };
    let mut key_written = false;
    if !key.covers(&input.in_force) {
        // Not a state we produced (set by hand, by `on` mode, or PostgreSQL's settings
        // were replaced): trust nobody but the leader until it is rebuilt.
        key = write_key(&mut steps, Key::leader_only());
        key_written = true;
    }
    if !key_written
        && key != want_key
        && (want_key.voters.is_empty() || key.tightened_by(&want_key))
    {
        key = write_key(&mut steps, want_key.clone());
        key_written = true;
    }
    let names_change = input.in_force != want_names;
    if names_change {
        if !key.covers(&want_names) {
            if key_written {
                // Cannot happen (a key written above covers the target names); a second
                // key write would fail its compare-and-swap anyway.
                return Plan {
                    steps,
                    pending: true,
                };
            }
            key = write_key(&mut steps, key.widened_for(&want_names));
            key_written = true;
        }
        steps.push(Step::Names(want_names));
    }
    let proven = want_key.covers(&input.in_force)
        && want_key.voters.difference(&input.confirmed).count() <= want_key.quorum;
    if !key_written && !names_change && key != want_key && input.settled && proven {
        key = write_key(&mut steps, want_key.clone());
    }
    Plan {
        pending: names_change || key != want_key,
        steps,
    }
}

fn write_key(steps: &mut Vec<Step>, key: Key) -> Key {
    steps.push(Step::Key(key.clone()));
    key
}

/// The standbys quorum commit wants: streaming, not `nosync`, `sync_priority` above 0,
/// within `maximum_lag_on_syncnode`. Standbys tagged `nofailover` only as far as they
/// are needed to reach `synchronous_node_count` (Patroni's choice: a voter that may
/// never be promoted only makes promotions harder).
pub fn pick(standbys: &[Standby], settings: SyncSettings) -> BTreeSet<String> {
    let mut eligible = super::sync::eligible(standbys, settings);
    eligible.sort_by(|a, b| {
        a.nofailover
            .cmp(&b.nofailover)
            .then(b.priority.cmp(&a.priority))
            .then(a.lag.unwrap_or(u64::MAX).cmp(&b.lag.unwrap_or(u64::MAX)))
            .then(a.name.cmp(&b.name))
    });
    let wanted = usize::try_from(settings.node_count.max(1)).unwrap_or(usize::MAX);
    let mut out = BTreeSet::new();
    for s in eligible {
        if !s.nofailover || out.len() < wanted {
            out.insert(s.name.clone());
        }
    }
    out
}

#[cfg(test)]
#[path = "quorum_tests.rs"]
mod tests;
