//! Fair shares of the control socket: connections counted per peer address, long-polls counted
//! per identity, so one misbehaving peer or identity cannot take the slots everyone else needs.
//!
//! It owns the counting (a capped count per key, given back when its permit drops) and what a
//! peer address is: an IPv4 address, an IPv6 /64 (one host or LAN usually holds a whole /64),
//! or the unix socket. It never decides what to answer; the server does.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

/// Where a connection comes from, as the per-peer cap and the failure records count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// An IPv4 address, or an IPv6 address with its last 64 bits zeroed.
    Ip(IpAddr),
    /// The unix socket (mode 0600: only byokd's own user reaches it).
    Unix,
}

impl Peer {
    pub fn of(addr: &SocketAddr) -> Peer {
        let ip = match addr.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
            v4 => v4,
        };
        Peer::Ip(ip)
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Ip(IpAddr::V6(v6)) => write!(f, "{v6}/64"),
            Peer::Ip(v4) => write!(f, "{v4}"),
            Peer::Unix => f.write_str("the unix socket"),
        }
    }
}

type Table<K> = Arc<Mutex<HashMap<K, usize>>>;

/// At most `cap` permits per key at once.
#[derive(Debug)]
pub struct Counts<K> {
    held: Table<K>,
    cap: usize,
}

impl<K: Hash + Eq + Clone> Counts<K> {
    pub fn new(cap: usize) -> Self {
        Self {
            held: Arc::new(Mutex::new(HashMap::new())),
            cap: cap.max(1),
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// A permit for `key`, or `None` when `key` already holds `cap`.
    pub fn try_take(&self, key: K) -> Option<Permit<K>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(key.clone()).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Permit {
            held: self.held.clone(),
            key,
        })
    }

    /// How many permits `key` holds.
    pub fn held(&self, key: &K) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(key).copied().unwrap_or(0)
    }
}

/// One counted slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct Permit<K: Hash + Eq> {
    held: Table<K>,
    key: K,
}

impl<K: Hash + Eq> Drop for Permit<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_its_cap_and_gets_slots_back() {
        let c = Counts::new(2);
        let a1 = c.try_take("a").unwrap();
        let _a2 = c.try_take("a").unwrap();
        assert!(c.try_take("a").is_none());
        let _b = c.try_take("b").unwrap();
        drop(a1);
        assert_eq!(c.held(&"a"), 1);
        assert!(c.try_take("a").is_some());
    }

    #[test]
    fn ipv6_peers_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let a: SocketAddr = "[2001:db8:1:2:3:4:5:6]:1".parse().unwrap();
        let b: SocketAddr = "[2001:db8:1:2:ffff::9]:2".parse().unwrap();
        assert_eq!(Peer::of(&a), Peer::of(&b));
        assert_eq!(Peer::of(&a).to_string(), "2001:db8:1:2::/64");
        let m: SocketAddr = "[::ffff:127.0.0.2]:3".parse().unwrap();
        let v4: SocketAddr = "127.0.0.2:4".parse().unwrap();
        assert_eq!(Peer::of(&m), Peer::of(&v4));
    }
}
