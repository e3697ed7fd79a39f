//! Secret newtypes: the HSM PIN, client secrets, tokens and unwrapped key material.
//!
//! Every type here zeroizes on drop, prints as `[REDACTED]` in `Debug`, and has no `Display`,
//! no `Serialize` and no `Clone`. Reading the bytes needs an explicit `expose_secret()` call,
//! which keeps every use greppable.

use secrecy::{ExposeSecret, SecretBox, SecretString};
use std::fmt;

/// Secret bytes (client secrets, unsealed material). Zeroized on drop.
pub struct SecretBytes(SecretBox<[u8]>);

impl SecretBytes {
    /// Takes ownership of the bytes; the caller's buffer is moved, not copied. A buffer with
    /// spare capacity is copied once into an exact one and then zeroized, because
    /// `into_boxed_slice` would shrink it by reallocation and free the old block unzeroized.
    pub fn new(mut bytes: Vec<u8>) -> Self {
        if bytes.capacity() == bytes.len() {
            return Self(SecretBox::new(bytes.into_boxed_slice()));
        }
        let exact: Box<[u8]> = Box::from(bytes.as_slice());
        zeroize::Zeroize::zeroize(&mut bytes);
        Self(SecretBox::new(exact))
    }

    /// The secret's bytes. Callers must not copy them into a non-zeroizing buffer.
    pub fn expose_secret(&self) -> &[u8] {
        self.0.expose_secret()
    }

    pub fn len(&self) -> usize {
        self.expose_secret().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes([REDACTED])")
    }
}

/// The HSM user PIN. Read from `$CREDENTIALS_DIRECTORY` or a 0600 file, never argv or env.
pub struct Pin(SecretString);

impl Pin {
    /// Takes ownership of the PIN. As with [`SecretBytes::new`], a string with spare capacity
    /// is copied into an exact buffer and zeroized, never shrunk by reallocation.
    pub fn new(mut pin: String) -> Self {
        if pin.capacity() == pin.len() {
            return Self(SecretString::from(pin));
        }
        let exact: Box<str> = Box::from(pin.as_str());
        zeroize::Zeroize::zeroize(&mut pin);
        Self(SecretString::new(exact))
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin([REDACTED])")
    }
}

/// Trims exactly one trailing line ending (`\n` or `\r\n`, or a lone `\r`) and nothing else.
///
/// Used for secrets imported from files: every other byte, including leading and inner
/// whitespace, is kept exactly.
pub fn trim_trailing_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    use zeroize::Zeroize;
    let keep = if bytes.ends_with(b"\r\n") {
        bytes.len() - 2
    } else if bytes.ends_with(b"\n") || bytes.ends_with(b"\r") {
        bytes.len() - 1
    } else {
        bytes.len()
    };
    bytes[keep..].zeroize();
    bytes.truncate(keep);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_secret() {
        let s = SecretBytes::new(b"hunter2-super-secret".to_vec());
        let p = Pin::new("123456".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{p:?}").contains("123456"));
        assert!(!format!("{s:#?} {p:#?}").contains("secret"));
    }

    #[test]
    fn only_one_trailing_line_ending_is_trimmed() {
        assert_eq!(trim_trailing_newline(b"abc\n".to_vec()), b"abc");
        assert_eq!(trim_trailing_newline(b"abc\r\n".to_vec()), b"abc");
        assert_eq!(trim_trailing_newline(b"abc\n\n".to_vec()), b"abc\n");
        assert_eq!(trim_trailing_newline(b" a b \t".to_vec()), b" a b \t");
        assert_eq!(trim_trailing_newline(b"".to_vec()), b"");
    }
}
