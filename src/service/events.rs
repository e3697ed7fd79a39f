//! Change events: what the state layer publishes after each commit, so that the scheduler and
//! the outbound allowlist follow the committed state without any handler or job telling them.
//!
//! The events are derived, not remembered: after every successful commit the state is compared
//! with what was last published, so no operation can forget to notify. Two outlets:
//! - the set of vaults that key groups name, in a `watch` (one value), replaced under the state
//!   lock before the committing operation returns: a job for a just-added vault finds it allowed;
//! - typed [`StateChange`]s on a `broadcast` bounded by [`CHANGE_CAPACITY`]. A subscriber that
//!   falls further behind is told it lagged and must re-read everything it follows.

use crate::model::{GroupName, KeyGroup, PendingGrace, Target};
use crate::store::State;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// How many [`StateChange`]s wait for a slow subscriber before it lags. A lagging subscriber
/// re-reads the whole state once (the scheduler re-plans everything), so a burst larger than
/// this costs one full re-plan and loses nothing.
pub const CHANGE_CAPACITY: usize = 64;

/// A committed change that a subscriber may have to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// A key group was created or deleted, or its record (rotation policy, last rotation) or
    /// its grace-period record changed.
    Group(GroupName),
    /// The designated-device setting changed.
    Designated,
}

/// The Key Vaults and Managed HSM pools that key groups name in the committed state.
pub type CommittedTargets = Arc<BTreeSet<Target>>;

/// The senders, shared by the service (to hand out receivers) and the state (to publish).
pub(super) struct Outlets {
    changes: broadcast::Sender<StateChange>,
    vaults: watch::Sender<CommittedTargets>,
}

impl Outlets {
    pub(super) fn subscribe(&self) -> broadcast::Receiver<StateChange> {
        self.changes.subscribe()
    }

    pub(super) fn vaults(&self) -> watch::Receiver<CommittedTargets> {
        self.vaults.subscribe()
    }
}

/// What a group looked like when it was last published: its group and grace records, postcard
/// encoded (`None` when it has neither). Compared byte for byte, so a change is never missed,
/// and about a fifth of a decoded copy: at 200,000 groups the copy alone cost more than the
/// footprint budget leaves for it (docs/performance.md, "State store").
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupFacts(Option<Box<[u8]>>);

impl GroupFacts {
    fn of(state: &State, name: &GroupName) -> Self {
        Self::from_records(state.groups.get(name), state.grace.get(name))
    }

    fn from_records(group: Option<&KeyGroup>, grace: Option<&PendingGrace>) -> Self {
        if group.is_none() && grace.is_none() {
            return Self(None);
        }
        // Encoding in-memory records into a growing buffer cannot fail (postcard fails only on
        // a writer out of room or a type serde cannot express, and these are plain data).
        Self(Some(
            postcard::to_allocvec(&(group, grace))
                .unwrap_or_default()
                .into_boxed_slice(),
        ))
    }
}

/// The publishing side, kept with the state under its lock.
pub(super) struct Publisher {
    outlets: Arc<Outlets>,
    groups: BTreeMap<GroupName, GroupFacts>,
    designated: Option<bool>,
}

impl Publisher {
    /// A publisher whose last published state is `state` (as loaded).
    pub(super) fn new(state: &State) -> Self {
        let (changes, _) = broadcast::channel(CHANGE_CAPACITY);
        let (vaults, _) = watch::channel(Arc::new(vaults_of(state)));
        let groups = names_of(state)
            .map(|n| (n.clone(), GroupFacts::of(state, n)))
            .collect();
        Self {
            outlets: Arc::new(Outlets { changes, vaults }),
            groups,
            designated: state.designated,
        }
    }

    pub(super) fn outlets(&self) -> &Arc<Outlets> {
        &self.outlets
    }

    /// Publishes what `state`, just committed, changed since the last publication: the vault
    /// set first (synchronously), then one event per changed group and for the designated
    /// setting.
    #[cfg(test)]
    pub(super) fn committed(&mut self, state: &State) {
        // Compared in place, cloning only what changed: a commit that touches no group (most
        // are job steps) costs a walk over the groups and no allocation.
        let mut changed: Vec<GroupName> = names_of(state)
            .filter(|name| {
                self.groups
                    .get(*name)
                    .is_none_or(|seen| *seen != GroupFacts::of(state, name))
            })
            .cloned()
            .collect();
        changed.extend(
            self.groups
                .keys()
                .filter(|name| {
                    !state.groups.contains_key(*name) && !state.grace.contains_key(*name)
                })
                .cloned(),
        );
        self.publish(state, changed);
    }

    /// As [`Publisher::committed`], comparing only the groups in `touched` (the group and grace
    /// records the commit wrote, from the store's change marks): a commit costs the same at
    /// 200,000 groups as at 10.
    pub(super) fn committed_touching(&mut self, state: &State, touched: &[GroupName]) {
        let changed: Vec<GroupName> = touched
            .iter()
            .filter(|name| {
                let now = GroupFacts::of(state, name);
                self.groups
                    .get(*name)
                    .map_or(now.0.is_some(), |seen| *seen != now)
            })
            .cloned()
            .collect();
        self.publish(state, changed);
    }

    fn publish(&mut self, state: &State, changed: Vec<GroupName>) {
        let mut changes = Vec::with_capacity(changed.len() + 1);
        for name in changed {
            let now = GroupFacts::of(state, &name);
            if now.0.is_none() {
                self.groups.remove(&name);
            } else {
                self.groups.insert(name.clone(), now);
            }
            changes.push(StateChange::Group(name));
        }
        if state.designated != self.designated {
            self.designated = state.designated;
            changes.push(StateChange::Designated);
        }
        if changes.is_empty() {
            return;
        }
        let vaults = vaults_of(state);
        self.outlets.vaults.send_if_modified(|v| {
            let modified = **v != vaults;
            if modified {
                *v = Arc::new(vaults);
            }
            modified
        });
        for change in changes {
            tracing::debug!(?change, "state change published");
            // No subscriber yet is not an error: whoever subscribes later reads the state first.
            let _ = self.outlets.changes.send(change);
        }
    }
}

/// Every group name the state mentions (groups, then grace records of no group).
fn names_of(state: &State) -> impl Iterator<Item = &GroupName> {
    state.groups.keys().chain(
        state
            .grace
            .keys()
            .filter(|name| !state.groups.contains_key(*name)),
    )
}

/// The targets groups name, each once. Inserted one by one: collecting would first clone every
/// group's target into a vector (200,000 of them for a handful of vaults), as the scheduler's
/// first plan once copied every group.
fn vaults_of(state: &State) -> BTreeSet<Target> {
    let mut targets = BTreeSet::new();
    for g in state.groups.values() {
        if !targets.contains(&g.target) {
            targets.insert(g.target.clone());
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::group::fixtures::test_group;
    use time::macros::datetime;

    fn state_with(names: &[(&str, &str)]) -> State {
        let mut state = State::default();
        for (name, vault) in names {
            let mut g = test_group(name, datetime!(2026-01-31 00:00 UTC), 1);
            g.target = Target::KeyVault(crate::model::VaultName::try_from(*vault).unwrap());
            state.groups.insert(g.name.clone(), g);
        }
        state
    }

    fn drain(rx: &mut broadcast::Receiver<StateChange>) -> Vec<StateChange> {
        let mut out = Vec::new();
        while let Ok(c) = rx.try_recv() {
            out.push(c);
        }
        out
    }

    fn group(name: &str) -> StateChange {
        StateChange::Group(GroupName::try_from(name).unwrap())
    }

    fn vaults(rx: &watch::Receiver<CommittedTargets>) -> Vec<String> {
        rx.borrow().iter().map(|t| t.name().to_owned()).collect()
    }

    #[test]
    fn each_commit_publishes_exactly_the_groups_it_changed() {
        let mut state = state_with(&[("a", "vault-one")]);
        let mut p = Publisher::new(&state);
        let mut rx = p.outlets().subscribe();
        let vault_rx = p.outlets().vaults();
        assert_eq!(vaults(&vault_rx), ["vault-one"]);

        // Created: the new vault is published with the event.
        let b = state_with(&[("b", "vault-two")]).groups;
        state.groups.extend(b);
        p.committed(&state);
        assert_eq!(drain(&mut rx), [group("b")]);
        assert_eq!(vaults(&vault_rx), ["vault-one", "vault-two"]);

        // A commit that touches no group (a job step, say) publishes nothing.
        p.committed(&state);
        assert!(drain(&mut rx).is_empty());

        // Edited policy, then a grace record, then the designated setting.
        let a = GroupName::try_from("a").unwrap();
        if let Some(g) = state.groups.get_mut(&a) {
            g.rotation.rotate_every_months = 3;
        }
        p.committed(&state);
        assert_eq!(drain(&mut rx), [group("a")]);
        state.grace.insert(
            a.clone(),
            PendingGrace {
                versions: vec!["v1".into()],
                due: 1,
                new_version: "v2".into(),
            },
        );
        p.committed(&state);
        assert_eq!(drain(&mut rx), [group("a")]);
        state.designated = Some(false);
        p.committed(&state);
        assert_eq!(drain(&mut rx), [StateChange::Designated]);

        // Deleted: the vault no group names any more leaves the set.
        state.groups.remove(&GroupName::try_from("b").unwrap());
        p.committed(&state);
        assert_eq!(drain(&mut rx), [group("b")]);
        assert_eq!(vaults(&vault_rx), ["vault-one"]);
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_told_it_lagged() {
        let mut state = state_with(&[("a", "vault-one")]);
        let mut p = Publisher::new(&state);
        let mut rx = p.outlets().subscribe();
        let a = GroupName::try_from("a").unwrap();
        for i in 0..=CHANGE_CAPACITY {
            if let Some(g) = state.groups.get_mut(&a) {
                g.last_rotated = Some(i as i64);
            }
            p.committed(&state);
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(1))
        ));
        assert_eq!(drain(&mut rx).len(), CHANGE_CAPACITY);
    }
}
