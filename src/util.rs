//! Small helpers shared by several modules: random ids.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// `N` random bytes from the system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system random source does not fail on supported platforms; a zeroed id would only be
    // rejected later, never trusted.
    let _ = SystemRandom::new().fill(&mut bytes);
    bytes
}

/// A random (version 4) UUID in its usual text form.
pub fn uuid_v4() -> String {
    let mut bytes = random_bytes::<16>();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
