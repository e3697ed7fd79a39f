//! The on-disk envelope: magic, format version, generation, payload length, payload and a
//! SHA-256 checksum over everything before it. Decoding refuses any truncation, extension or
//! flipped byte.

use sha2::{Digest, Sha256};

/// File magic: `BYOKDST` and a NUL.
pub const MAGIC: [u8; 8] = *b"BYOKDST\0";
/// The state format this build writes. Older formats are migrated on load (see `legacy`).
pub const FORMAT_VERSION: u16 = 3;

const HEADER_LEN: usize = 8 + 2 + 8 + 4;
const CHECKSUM_LEN: usize = 32;

/// A decoded envelope whose checksum was verified.
pub struct Envelope<'a> {
    pub format: u16,
    pub generation: u64,
    pub payload: &'a [u8],
}

pub fn encode(format: u16, generation: u64, payload: &[u8]) -> Result<Vec<u8>, String> {
    let len =
        u32::try_from(payload.len()).map_err(|_| "state payload exceeds 4 GiB".to_string())?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + CHECKSUM_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<Envelope<'_>, String> {
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(format!(
            "truncated: {} bytes is shorter than an empty envelope",
            bytes.len()
        ));
    }
    if bytes[..8] != MAGIC {
        return Err("not a byokd state file (bad magic)".into());
    }
    let format = u16::from_le_bytes([bytes[8], bytes[9]]);
    let mut gen_bytes = [0u8; 8];
    gen_bytes.copy_from_slice(&bytes[10..18]);
    let generation = u64::from_le_bytes(gen_bytes);
    let len = u32::from_le_bytes([bytes[18], bytes[19], bytes[20], bytes[21]]) as usize;
    let expected = HEADER_LEN + len + CHECKSUM_LEN;
    if bytes.len() != expected {
        return Err(format!(
            "length mismatch: header says {expected} bytes, file has {}",
            bytes.len()
        ));
    }
    let (body, sum) = bytes.split_at(HEADER_LEN + len);
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch: the file was damaged".into());
    }
    Ok(Envelope {
        format,
        generation,
        payload: &body[HEADER_LEN..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_truncation_and_bit_flip_is_detected() {
        let bytes = encode(FORMAT_VERSION, 7, b"some postcard payload").unwrap();
        assert_eq!(decode(&bytes).unwrap().generation, 7);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b).is_err(), "flip at {i}:{bit}");
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}
