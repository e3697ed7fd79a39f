//! Unit tests of the on-demand key view: reads through the overlay, staging and eviction.
use super::*;
use crate::model::{HsmKeyId, KeyType, Storage};
use crate::store::{State, Store};

fn key(group: &str, name: &str, version: Option<&str>) -> Key {
    Key {
        name: KeyName::try_from(name).unwrap(),
        group: GroupName::try_from(group).unwrap(),
        hsm_id: HsmKeyId([name.len() as u8; 16]),
        check_digits: "ABCD".into(),
        key_type: KeyType::parse("EC-P256", Default::default()).unwrap(),
        storage: Storage::Protected,
        created: 1_800_000_000,
        azure_version: version.map(|v| v.to_owned().into()),
    }
}

fn id(group: &str, name: &str) -> KeyId {
    (
        GroupName::try_from(group).unwrap(),
        KeyName::try_from(name).unwrap(),
    )
}

fn names(keys: &[Key]) -> Vec<String> {
    keys.iter().map(|k| k.name.to_string()).collect()
}

/// What a resident map of the same changes shows, for every way of reading.
fn view(state: &State, groups: &[&str]) -> Vec<(String, Vec<Key>, usize)> {
    groups
        .iter()
        .map(|g| {
            let g = GroupName::try_from(*g).unwrap();
            (
                g.to_string(),
                state.keys_in(&g).unwrap(),
                state.keys.count_in(&g).unwrap(),
            )
        })
        .collect()
}

/// Groups whose names are prefixes of each other stay apart, and a group's keys come back
/// by name (the store orders its records by encoded length first).
#[test]
fn a_group_reads_its_own_keys_by_name_before_and_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut state, _) = Store::open(dir.path()).unwrap();
    for (g, n) in [
        ("g", "b"),
        ("g", "aa"),
        ("g", "a"),
        ("g1", "a"),
        ("g10", "z"),
    ] {
        state.keys.insert(id(g, n), key(g, n, None)).unwrap();
    }
    let groups = ["g", "g1", "g10", "h"];
    let before = view(&state, &groups);
    assert_eq!(names(&before[0].1), ["a", "aa", "b"]);
    assert_eq!((before[1].2, before[2].2, before[3].2), (1, 1, 0));
    store.commit(&mut state).unwrap();
    // The next batch lets go of what the store now shows.
    store.commit(&mut state).unwrap();
    assert_eq!(state.keys.pending(), 0);
    assert_eq!(view(&state, &groups), before);
    assert_eq!(state.keys.len(), 5);
    drop((store, state));
    let (_store, state, _) = Store::open(dir.path()).unwrap();
    assert_eq!(view(&state, &groups), before);
    assert_eq!(state.keys.len(), 5);
}

/// Inserts, changes and removals made under the state lock are seen by every reader at once,
/// before their commit is durable, and stay seen after it.
#[test]
fn uncommitted_changes_are_read_back_as_a_resident_map_would_show_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut state, _) = Store::open(dir.path()).unwrap();
    for n in ["k1", "k2", "k3"] {
        state.keys.insert(id("g", n), key("g", n, None)).unwrap();
    }
    store.commit(&mut state).unwrap();
    store.commit(&mut state).unwrap();
    assert_eq!(state.keys.pending(), 0);

    // Changed, removed and added, not committed.
    if let Some(k) = state.keys.get_mut(&id("g", "k1")).unwrap() {
        k.azure_version = Some("0123456789abcdef0123456789abcdef".to_owned().into());
    }
    assert_eq!(
        state.keys.remove(&id("g", "k2")).unwrap(),
        Some(key("g", "k2", None))
    );
    assert_eq!(state.keys.remove(&id("g", "k2")).unwrap(), None);
    assert_eq!(
        state
            .keys
            .insert(id("g", "k4"), key("g", "k4", None))
            .unwrap(),
        None
    );
    let expect = vec![
        key("g", "k1", Some("0123456789abcdef0123456789abcdef")),
        key("g", "k3", None),
        key("g", "k4", None),
    ];
    let check = |state: &State| {
        let g = GroupName::try_from("g").unwrap();
        assert_eq!(state.keys_in(&g).unwrap(), expect);
        assert_eq!(state.keys.count_in(&g).unwrap(), 3);
        let h = GroupName::try_from("h").unwrap();
        assert_eq!(state.keys.count_in_each([&h, &g, &h]).unwrap(), [0, 3, 0]);
        assert_eq!(state.keys.len(), 3);
        assert!(!state.keys.contains_key(&id("g", "k2")).unwrap());
        assert_eq!(state.keys.get(&id("g", "k2")).unwrap(), None);
        assert_eq!(
            state.keys.get(&id("g", "k1")).unwrap(),
            Some(expect[0].clone())
        );
        let mut all = Vec::new();
        state.keys.for_each(|k| all.push(k.clone())).unwrap();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(all, expect);
    };
    check(&state);
    // Staged: queued for the writer, maybe not yet durable.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pending = store.stage(&mut state).unwrap();
    check(&state);
    rt.block_on(pending.durable()).unwrap();
    check(&state);
    store.commit(&mut state).unwrap();
    assert_eq!(state.keys.pending(), 0);
    check(&state);
    drop((store, state));
    let (_store, state, _) = Store::open(dir.path()).unwrap();
    check(&state);
}

/// A change made again after it was staged stays in memory until its own batch commits.
#[test]
fn a_change_made_again_after_staging_is_kept_until_its_own_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut state, _) = Store::open(dir.path()).unwrap();
    state
        .keys
        .insert(id("g", "k"), key("g", "k", None))
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let first = store.stage(&mut state).unwrap();
    state
        .keys
        .insert(id("g", "k"), key("g", "k", Some("v2")))
        .unwrap();
    rt.block_on(first.durable()).unwrap();
    // The first batch is committed, but the entry holds the second change: still read.
    let nothing = store.stage(&mut state).unwrap();
    rt.block_on(nothing.durable()).unwrap();
    assert_eq!(
        state.keys.get(&id("g", "k")).unwrap(),
        Some(key("g", "k", Some("v2")))
    );
    drop((store, state));
    let (_store, state, _) = Store::open(dir.path()).unwrap();
    assert_eq!(
        state.keys.get(&id("g", "k")).unwrap(),
        Some(key("g", "k", Some("v2")))
    );
}

/// A state built in memory keeps its keys in memory and compares by content.
#[test]
fn a_detached_state_holds_its_keys_and_serialises_them_as_a_map() {
    let mut state = State::default();
    state
        .keys
        .insert(id("g", "b"), key("g", "b", None))
        .unwrap();
    state
        .keys
        .insert(id("g", "a"), key("g", "a", None))
        .unwrap();
    let bytes = postcard::to_allocvec(&state).unwrap();
    let back: State = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, state);
    assert_eq!(back.keys.len(), 2);
    assert_eq!(
        names(&back.keys_in(&GroupName::try_from("g").unwrap()).unwrap()),
        ["a", "b"]
    );
}
