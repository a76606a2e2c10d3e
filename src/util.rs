//! Small helpers shared by several modules: random ids, a counting gate, spare header maps.

use std::cell::Cell;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use http::HeaderValue;

/// `N` random bytes from the system's CSPRNG: for secrets (session ids, states, verifiers).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system random source does not fail on supported platforms; a zeroed id would only be
    // rejected later, never trusted.
    let _ = SystemRandom::new().fill(&mut bytes);
    bytes
}

thread_local! {
    /// Per-thread generator state, seeded once from the CSPRNG.
    static ID_STATE: Cell<(u64, u64)> = Cell::new({
        let seed = random_bytes::<16>();
        let (a, b) = seed.split_at(8);
        (
            u64::from_le_bytes(a.try_into().unwrap_or([1; 8])),
            u64::from_le_bytes(b.try_into().unwrap_or([2; 8])) | 1,
        )
    });
}

/// 128 unique-looking bits for correlation and trace ids. Not a secret: a per-thread counter run
/// through splitmix64, so the hot path makes no system call and no allocation.
pub fn fast_id() -> [u8; 16] {
    ID_STATE.with(|state| {
        let (seed, counter) = state.get();
        let next = counter.wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set((seed, next));
        let hi = splitmix64(seed ^ next);
        let lo = splitmix64(next.rotate_left(17) ^ seed.rotate_right(7));
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_le_bytes());
        bytes[8..].copy_from_slice(&lo.to_le_bytes());
        bytes
    })
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `bytes` into `out` (which must be twice as long).
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0x0f) as usize];
    }
}

/// A version 4 UUID as a header value, formatted on the stack.
pub fn uuid_header() -> HeaderValue {
    let mut bytes = fast_id();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = [b'-'; 36];
    hex_into(&bytes[0..4], &mut text[0..8]);
    hex_into(&bytes[4..6], &mut text[9..13]);
    hex_into(&bytes[6..8], &mut text[14..18]);
    hex_into(&bytes[8..10], &mut text[19..23]);
    hex_into(&bytes[10..16], &mut text[24..36]);
    HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("00000000-0000-4000-8000-000000000000"))
}

/// A counting limit that never waits: [`Gate::try_enter`] either lets in at once or refuses.
/// (One atomic add each way; a semaphore would also lock its waiter list on release.)
#[derive(Debug)]
pub struct Gate {
    inside: std::sync::atomic::AtomicUsize,
    max: usize,
}

/// One holder of a place in a [`Gate`]; the place frees when it drops.
#[derive(Debug)]
pub struct GatePass(std::sync::Arc<Gate>);

impl Gate {
    pub fn new(max: usize) -> Gate {
        Gate {
            inside: std::sync::atomic::AtomicUsize::new(0),
            max,
        }
    }

    /// A place, unless `max` are taken.
    pub fn try_enter(self: &std::sync::Arc<Self>) -> Option<GatePass> {
        use std::sync::atomic::Ordering;
        if self.inside.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.inside.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(GatePass(self.clone()))
    }

    /// How many places are taken.
    pub fn inside(&self) -> usize {
        self.inside.load(std::sync::atomic::Ordering::Acquire).min(self.max)
    }

    #[cfg(test)]
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for GatePass {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_lets_in_up_to_its_maximum_and_frees_places_on_drop() {
        let gate = std::sync::Arc::new(Gate::new(2));
        let first = gate.try_enter().expect("first");
        let second = gate.try_enter().expect("second");
        assert!(gate.try_enter().is_none(), "a third got in");
        assert_eq!(gate.inside(), 2);
        drop(first);
        assert_eq!(gate.inside(), 1);
        let third = gate.try_enter().expect("a freed place");
        assert!(gate.try_enter().is_none());
        drop((second, third));
        assert_eq!(gate.inside(), 0);
        assert!(Gate::new(0).max() == 0 && std::sync::Arc::new(Gate::new(0)).try_enter().is_none());
    }

    #[test]
    fn uuids_are_well_formed_and_distinct() {
        let a = uuid_header().to_str().unwrap().to_string();
        let b = uuid_header().to_str().unwrap().to_string();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}

/// Spare header maps, per thread: a message's map is cleared and kept when the message has been
/// written, and the next message read on the thread fills it (the maps of the fast lane's requests
/// and of the inline client's responses), instead of two allocations and two frees per map.
pub mod spare_headers {
    use std::cell::RefCell;

    use http::HeaderMap;

    /// Maps kept per thread: about one per request in flight on it is enough to serve the next.
    const KEPT: usize = 64;
    /// A map grown past this many entries (a message with unusually many headers) is not kept.
    const LARGEST: usize = 64;

    thread_local! {
        static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty map with room for `capacity` headers.
    pub fn take(capacity: usize) -> HeaderMap {
        let spare = SPARE.with(|spare| spare.borrow_mut().pop());
        match spare {
            Some(mut map) => {
                map.reserve(capacity);
                map
            }
            None => HeaderMap::with_capacity(capacity),
        }
    }

    /// Keeps `map`, emptied, for [`take`].
    pub fn give(mut map: HeaderMap) {
        if map.capacity() > LARGEST || map.capacity() == 0 {
            return;
        }
        map.clear();
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < KEPT {
                spare.push(map);
            }
        });
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_map_given_back_comes_back_empty_with_its_room() {
            let mut map = HeaderMap::with_capacity(12);
            map.insert("x-a", "1".parse().unwrap());
            let room = map.capacity();
            give(map);
            let again = take(4);
            assert!(again.is_empty());
            assert_eq!(again.capacity(), room);
            // Grown past the limit, or never allocated: not kept.
            let mut big = HeaderMap::with_capacity(LARGEST + 1);
            big.insert("x-b", "2".parse().unwrap());
            give(big);
            give(HeaderMap::new());
            assert_eq!(
                take(4).capacity(),
                HeaderMap::<http::HeaderValue>::with_capacity(4).capacity()
            );
        }
    }
}
