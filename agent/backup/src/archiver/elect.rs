//! Who archives WAL: the pure rule behind the `warden/archiver` key.
//!
//! One member streams WAL into the repository. A healthy streaming replica is
//! preferred (archiving then costs the primary nothing but one more cascaded stream);
//! the primary archives only while no healthy replica can. The key lives under the
//! holder's lease, so a dead holder's key vanishes with it; a live holder gives the key
//! up itself when it stops being healthy, or when it is the primary and a healthy
//! replica could take over. Only members with a `backup` section take part (they
//! announce it in their member key).
//!
//! Nobody takes the key from a live holder: a hand-over happens only through a
//! release, and the new holder resumes from the repository's last segment, so the
//! archive has no gap (see `stream.rs`).

/// What the election needs to know about one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub role: Role,
    /// Running and, for a replica, streaming from its upstream.
    pub healthy: bool,
    /// Has a `backup` section and is not tagged `noarchive`.
    pub eligible: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
    /// Stopped, starting, uninitialized: never archives.
    Other,
}

/// One member's view of the election.
#[derive(Debug, Clone)]
pub struct View<'a> {
    /// This member, described from its own fresh probe (not its published key).
    pub me: &'a Candidate,
    /// Every other member, from their member keys.
    pub others: &'a [Candidate],
    /// The current holder of `warden/archiver`.
    pub holder: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Take the free key (create-only: a racing member may win instead).
    Acquire,
    /// We hold it and should go on archiving.
    Keep,
    /// We hold it and must give it up (and stop archiving).
    Release,
    /// Someone else holds it, or someone else should take it.
    Idle,
}

fn usable(c: &Candidate) -> bool {
    c.eligible && c.healthy && c.role != Role::Other
}

/// The member that should take a free key: the first healthy replica by name (the
/// same answer on every member, so they do not all race), else a healthy primary.
pub fn preferred<'a>(all: &[&'a Candidate]) -> Option<&'a str> {
    let first = |role| {
        all.iter()
            .filter(|c| usable(c) && c.role == role)
            .map(|c| c.name.as_str())
            .min()
    };
    first(Role::Replica).or_else(|| first(Role::Primary))
}

pub fn decide(v: &View<'_>) -> Step {
    let me = v.me;
    if v.holder == Some(me.name.as_str()) {
        if !usable(me) {
            return Step::Release;
        }
        let replica_elsewhere = v
            .others
            .iter()
            .any(|c| usable(c) && c.role == Role::Replica);
        if me.role == Role::Primary && replica_elsewhere {
            return Step::Release;
        }
        return Step::Keep;
    }
    if v.holder.is_some() {
        return Step::Idle;
    }
    let all: Vec<&Candidate> = std::iter::once(me).chain(v.others.iter()).collect();
    if preferred(&all) == Some(me.name.as_str()) {
        Step::Acquire
    } else {
        Step::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, role: Role, healthy: bool, eligible: bool) -> Candidate {
        Candidate {
            name: name.into(),
            role,
            healthy,
            eligible,
        }
    }
    fn primary(name: &str) -> Candidate {
        c(name, Role::Primary, true, true)
    }
    fn replica(name: &str) -> Candidate {
        c(name, Role::Replica, true, true)
    }
    fn step(me: &Candidate, others: &[Candidate], holder: Option<&str>) -> Step {
        decide(&View { me, others, holder })
    }

    #[test]
    fn a_free_key_goes_to_the_first_healthy_replica() {
        let others = [primary("a"), replica("c")];
        assert_eq!(step(&replica("b"), &others, None), Step::Acquire);
        let others = [primary("a"), replica("b")];
        assert_eq!(step(&replica("c"), &others, None), Step::Idle);
        let others = [replica("b"), replica("c")];
        assert_eq!(step(&primary("a"), &others, None), Step::Idle);
    }

    #[test]
    fn the_primary_archives_only_without_a_healthy_eligible_replica() {
        let others = [
            c("b", Role::Replica, false, true),
            c("c", Role::Replica, true, false),
            c("d", Role::Other, true, true),
        ];
        assert_eq!(step(&primary("a"), &others, None), Step::Acquire);
        assert_eq!(step(&primary("a"), &others, Some("a")), Step::Keep);
        assert_eq!(step(&primary("a"), &[], None), Step::Acquire);
    }

    #[test]
    fn a_primary_holder_hands_over_to_a_healthy_replica() {
        let others = [replica("b")];
        assert_eq!(step(&primary("a"), &others, Some("a")), Step::Release);
    }

    #[test]
    fn an_unhealthy_or_ineligible_holder_releases() {
        let others = [primary("a")];
        let sick = c("b", Role::Replica, false, true);
        assert_eq!(step(&sick, &others, Some("b")), Step::Release);
        let stopped = c("b", Role::Other, true, true);
        assert_eq!(step(&stopped, &others, Some("b")), Step::Release);
        let no_backup = c("b", Role::Replica, true, false);
        assert_eq!(step(&no_backup, &others, Some("b")), Step::Release);
        assert_eq!(step(&replica("b"), &others, Some("b")), Step::Keep);
    }

    #[test]
    fn a_live_holder_is_never_displaced() {
        // Even a "better" replica waits for the holder to release: two archivers
        // would race for the same segment names.
        let others = [c("z", Role::Primary, true, true)];
        assert_eq!(step(&replica("b"), &others, Some("z")), Step::Idle);
        assert_eq!(step(&replica("a"), &[replica("b")], Some("b")), Step::Idle);
    }

    #[test]
    fn nobody_eligible_means_nobody_archives() {
        let me = c("a", Role::Primary, true, false);
        assert_eq!(step(&me, &[], None), Step::Idle);
        let me = c("b", Role::Replica, false, true);
        assert_eq!(
            step(&me, &[c("a", Role::Primary, false, true)], None),
            Step::Idle
        );
    }
}
