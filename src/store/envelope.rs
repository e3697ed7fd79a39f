//! The on-disk envelope: magic, format version, generation, payload length, payload and a
//! SHA-256 checksum over everything before it. Decoding refuses any truncation, extension or
//! flipped byte. Formats 1-4 kept the whole state in two such files (see `slots`).

use sha2::{Digest, Sha256};

/// File magic: `BYOKDST` and a NUL.
pub const MAGIC: [u8; 8] = *b"BYOKDST\0";
/// The last format written as A/B envelopes; from format 5 on the state is a redb file.
pub const LAST_AB_FORMAT: u16 = 4;

const HEADER_LEN: usize = 8 + 2 + 8 + 4;
/// The highest generation a state file may carry. A daemon committing a thousand times a second
/// needs 292 million years to get here, so a header above it was damaged or forged; refusing it
/// keeps "one past the newest" from overflowing.
pub const MAX_GENERATION: u64 = i64::MAX as u64;
const CHECKSUM_LEN: usize = 32;
/// The longest file an envelope can be (its length field is 32 bits); a slot longer than this
/// is refused from its size alone, before it is read.
pub const MAX_ENVELOPE_LEN: u64 = (HEADER_LEN + CHECKSUM_LEN) as u64 + u32::MAX as u64;

/// A decoded envelope whose checksum was verified.
pub struct Envelope<'a> {
    pub format: u16,
    pub generation: u64,
    pub payload: &'a [u8],
}

#[cfg(test)]
pub fn encode(format: u16, generation: u64, payload: &[u8]) -> Result<Vec<u8>, String> {
    encode_with(format, generation, |mut out: Vec<u8>| {
        out.extend_from_slice(payload);
        Ok::<_, String>(out)
    })
}

/// Encodes the envelope around whatever `payload` appends to the buffer it is given, so a large
/// state is serialised once, straight into the file's bytes, with no second copy.
pub fn encode_with<E>(
    format: u16,
    generation: u64,
    payload: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, String>
where
    E: std::fmt::Display,
{
    let mut out = Vec::with_capacity(HEADER_LEN + CHECKSUM_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut out = payload(out).map_err(|e| e.to_string())?;
    let len = u32::try_from(out.len() - HEADER_LEN)
        .map_err(|_| "state payload exceeds 4 GiB".to_string())?;
    out[18..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
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
    if generation > MAX_GENERATION {
        return Err(format!(
            "generation {generation} is above the highest byokd ever writes ({MAX_GENERATION}): the header was damaged or forged"
        ));
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
        let bytes = encode(LAST_AB_FORMAT, 7, b"some postcard payload").unwrap();
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

    #[test]
    fn a_generation_past_the_maximum_is_refused_even_with_a_valid_checksum() {
        assert!(decode(&encode(LAST_AB_FORMAT, MAX_GENERATION, b"p").unwrap()).is_ok());
        for generation in [MAX_GENERATION + 1, u64::MAX] {
            let err = decode(&encode(LAST_AB_FORMAT, generation, b"p").unwrap())
                .err()
                .unwrap_or_default();
            assert!(err.contains("damaged or forged"), "{generation}: {err}");
        }
    }

    #[test]
    fn encoding_in_place_gives_the_same_bytes() {
        let payload = b"some postcard payload".to_vec();
        let in_place = encode_with(LAST_AB_FORMAT, 9, |mut v: Vec<u8>| {
            v.extend_from_slice(&payload);
            Ok::<_, String>(v)
        })
        .unwrap();
        let mut expected = MAGIC.to_vec();
        expected.extend_from_slice(&LAST_AB_FORMAT.to_le_bytes());
        expected.extend_from_slice(&9u64.to_le_bytes());
        expected.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        expected.extend_from_slice(&payload);
        let sum = Sha256::digest(&expected);
        expected.extend_from_slice(&sum);
        assert_eq!(in_place, expected);
        assert_eq!(encode(LAST_AB_FORMAT, 9, &payload).unwrap(), expected);
        assert_eq!(decode(&in_place).unwrap().payload, &payload[..]);
    }
}
