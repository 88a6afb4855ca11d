use super::*;

fn key(seed: u8) -> EncryptionKey {
    let hex: String = (0..32u8)
        .map(|i| format!("{:02x}", i.wrapping_mul(37).wrapping_add(seed)))
        .collect();
    EncryptionKey::parse(&hex, "test").unwrap()
}

/// Pseudo-random, poorly compressible bytes so the sealed form spans many chunks.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn err_of(sealed: &[u8], k: &EncryptionKey) -> CodecError {
    match open_bytes(k, "ctx", sealed) {
        Ok(_) => panic!("opening should fail"),
        Err(e) => e,
    }
}

fn sha(plain: &[u8]) -> Digest32 {
    Sha256::digest(plain).into()
}

/// Encrypts `payload` as a STREAM after `header`, the way both formats cut chunks;
/// `last_aad_extra` is appended to the associated data of the last chunk (version 1's
/// clear trailer).
fn stream(k: &EncryptionKey, header: &[u8], ctx: &str, payload: &[u8], extra: &[u8]) -> Vec<u8> {
    let nonce = &header[header.len() - NONCE_LEN..];
    let mut enc = EncryptorBE32::from_aead(cipher(k), GenericArray::from_slice(nonce));
    let aad = associated_data(header, ctx);
    let mut out = header.to_vec();
    let mut rest = payload;
    while rest.len() > CHUNK {
        let c = enc
            .encrypt_next(Payload {
                msg: &rest[..CHUNK],
                aad: &aad,
            })
            .unwrap();
        out.extend_from_slice(&c);
        rest = &rest[CHUNK..];
    }
    let last_aad = [&aad[..], extra].concat();
    let c = enc
        .encrypt_last(Payload {
            msg: rest,
            aad: &last_aad,
        })
        .unwrap();
    out.extend_from_slice(&c);
    out
}

/// A version 1 object exactly as Warden wrote them before format version 2 (kept
/// here only: production code no longer writes this format).
pub(crate) fn seal_v1(k: &EncryptionKey, ctx: &str, plain: &[u8]) -> Vec<u8> {
    let mut header = MAGIC_V1.to_vec();
    header.extend_from_slice(&[7u8; NONCE_LEN]);
    let compressed = zstd::encode_all(plain, 3).unwrap();
    let digest = sha(plain);
    let mut out = stream(k, &header, ctx, &compressed, &digest);
    out.extend_from_slice(&digest);
    out
}

/// A version 2 object with an arbitrary in-stream digest (a writer holding the key
/// but lying about the checksum).
fn seal_v2_with_digest(k: &EncryptionKey, ctx: &str, plain: &[u8], digest: &Digest32) -> Vec<u8> {
    let mut header = MAGIC_V2.to_vec();
    header.extend_from_slice(&0u64.to_be_bytes());
    header.extend_from_slice(&[9u8; NONCE_LEN]);
    let mut payload = zstd::encode_all(plain, 3).unwrap();
    payload.extend_from_slice(digest);
    stream(k, &header, ctx, &payload, &[])
}

#[test]
fn round_trips_empty_small_chunk_sized_and_large() {
    let k = key(1);
    for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17] {
        let plain = noise(len);
        let (sealed, info) = seal_bytes(&k, 3, "ctx", &plain).unwrap();
        assert_eq!(info.len, len as u64);
        assert_eq!(info.digest, sha(&plain));
        let (back, digest) = open_bytes(&k, "ctx", &sealed).unwrap();
        assert_eq!(back, plain, "len {len}");
        assert_eq!(digest, info.digest);
    }
}

/// The digest is cut like the rest of the payload: every split of it between the
/// last two chunks (and a compressed stream ending exactly on a chunk boundary) opens.
#[test]
fn a_digest_straddling_the_last_two_chunks_opens() {
    let k = key(1);
    for compressed_len in [CHUNK - 32, CHUNK - 31, CHUNK - 1, CHUNK, CHUNK + 1] {
        // Build the payload by hand around a zstd stream of the wanted length is
        // awkward; instead pad the compressed bytes with a skippable zstd frame.
        let plain = b"straddle".to_vec();
        let mut compressed = zstd::encode_all(&plain[..], 3).unwrap();
        let pad = compressed_len - compressed.len() - 8;
        compressed.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        compressed.extend_from_slice(&u32::try_from(pad).unwrap().to_le_bytes());
        compressed.extend(std::iter::repeat_n(0u8, pad));
        assert_eq!(compressed.len(), compressed_len);
        let mut header = MAGIC_V2.to_vec();
        header.extend_from_slice(&0u64.to_be_bytes());
        header.extend_from_slice(&[3u8; NONCE_LEN]);
        let mut payload = compressed;
        payload.extend_from_slice(&sha(&plain));
        let sealed = stream(&k, &header, "ctx", &payload, &[]);
        let (back, digest) = open_bytes(&k, "ctx", &sealed)
            .unwrap_or_else(|e| panic!("compressed {compressed_len}: {e}"));
        assert_eq!(back, plain);
        assert_eq!(digest, sha(&plain));
    }
}

#[test]
fn compresses_before_encrypting() {
    let plain = vec![7u8; 4 * CHUNK];
    let (sealed, _) = seal_bytes(&key(1), 3, "ctx", &plain).unwrap();
    assert!(sealed.len() < 1024, "{} bytes", sealed.len());
}

#[test]
fn same_plaintext_seals_differently() {
    let (a, _) = seal_bytes(&key(1), 3, "ctx", b"segment").unwrap();
    let (b, _) = seal_bytes(&key(1), 3, "ctx", b"segment").unwrap();
    assert_ne!(a, b, "a fresh nonce per object");
}

/// Issue 12: the old format ended every object with the plaintext's SHA-256 in the
/// clear, a confirmation oracle for predictable content. No encoding of it may appear
/// anywhere in a sealed object now, header included.
#[test]
fn sealed_bytes_do_not_reveal_the_plaintext_digest() {
    let k = key(1);
    for plain in [
        b"a predictable catalog record".to_vec(),
        vec![0u8; 3 * CHUNK],
    ] {
        let digest = sha(&plain);
        let (sealed, info) = seal_bytes(&k, 3, "ctx", &plain).unwrap();
        assert_eq!(info.digest, digest, "the caller still learns it");
        assert!(sealed.starts_with(MAGIC_V2));
        let hex_lower = hex::encode(digest);
        let hex_upper = hex_lower.to_uppercase();
        for needle in [
            &digest[..],
            &digest[..8],
            hex_lower.as_bytes(),
            hex_upper.as_bytes(),
        ] {
            assert!(
                !sealed.windows(needle.len()).any(|w| w == needle),
                "the sealed object contains the plaintext digest"
            );
        }
        // The clear header is magic, sequence and nonce only.
        let header = &sealed[..HEADER_V2_LEN];
        assert!(!header.windows(4).any(|w| digest.windows(4).any(|d| d == w)));
        // The old format's trailer position holds no digest either.
        assert_ne!(&sealed[sealed.len() - DIGEST_LEN..], &digest[..]);
    }
    // And the v1 writer kept for tests did expose it: the check above is meaningful.
    let v1 = seal_v1(&k, "ctx", b"a predictable catalog record");
    assert!(v1.ends_with(&sha(b"a predictable catalog record")));
}

#[test]
fn version_1_objects_still_open() {
    let k = key(1);
    for len in [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 5] {
        let plain = noise(len);
        let v1 = seal_v1(&k, "wal/1/A", &plain);
        assert!(v1.starts_with(MAGIC_V1));
        let mut opener = open(&k, "wal/1/A", &v1[..]).unwrap();
        assert_eq!(opener.format(), Format::V1);
        assert_eq!(opener.sequence(), None);
        let mut back = Vec::new();
        opener.read_to_end(&mut back).unwrap();
        assert_eq!(back, plain, "len {len}");
        assert_eq!(opener.digest(), Some(sha(&plain)));
        // Still authenticated: path, trailer and chunks.
        assert!(matches!(
            open_bytes(&k, "wal/1/B", &v1),
            Err(CodecError::Tampered)
        ));
        let mut bad = v1.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            open_bytes(&k, "wal/1/A", &bad),
            Err(CodecError::Tampered)
        ));
    }
}

/// A v2 header cannot be pasted onto a v1 body or the other way round: the header
/// (so the format) is authenticated.
#[test]
fn the_format_is_authenticated() {
    let k = key(1);
    let v1 = seal_v1(&k, "ctx", b"x");
    let mut as_v2 = MAGIC_V2.to_vec();
    as_v2.extend_from_slice(&0u64.to_be_bytes());
    as_v2.extend_from_slice(&v1[MAGIC_LEN..]);
    assert!(err_of(&as_v2, &k).is_corruption());
    let (v2, _) = seal_bytes(&k, 3, "ctx", b"x").unwrap();
    let as_v1 = [&MAGIC_V1[..], &v2[MAGIC_LEN + SEQUENCE_LEN..]].concat();
    assert!(err_of(&as_v1, &k).is_corruption());
}

#[test]
fn a_tampered_in_stream_digest_is_refused() {
    let k = key(1);
    let plain = noise(2 * CHUNK + 100);
    let (sealed, _) = seal_bytes(&k, 1, "ctx", &plain).unwrap();
    // Flipping any of the last chunk's bytes (where the digest travels) fails
    // authentication.
    for back in [1, TAG_LEN, TAG_LEN + 1, TAG_LEN + DIGEST_LEN] {
        let mut bad = sealed.clone();
        let at = bad.len() - back;
        bad[at] ^= 0x01;
        assert!(matches!(err_of(&bad, &k), CodecError::Tampered), "{back}");
    }
    // Appending a clear "trailer" as version 1 had is refused too.
    let appended = [&sealed[..], &sha(&plain)[..]].concat();
    assert!(err_of(&appended, &k).is_corruption());
    // A writer with the key that seals a wrong digest is caught after decompression.
    let mut wrong = sha(&plain);
    wrong[0] ^= 1;
    let forged = seal_v2_with_digest(&k, "ctx", &plain, &wrong);
    assert!(matches!(err_of(&forged, &k), CodecError::ChecksumMismatch));
    let honest = seal_v2_with_digest(&k, "ctx", &plain, &sha(&plain));
    assert_eq!(open_bytes(&k, "ctx", &honest).unwrap().0, plain);
}

#[test]
fn the_sequence_is_reported_and_authenticated() {
    let k = key(1);
    let (sealed, _) = seal_bytes_sequenced(&k, 3, "live", 41, b"v41").unwrap();
    let mut opener = open(&k, "live", &sealed[..]).unwrap();
    opener.read_to_end(&mut Vec::new()).unwrap();
    assert_eq!(opener.sequence(), Some(41));
    assert_eq!(opener.format(), Format::V2);
    let (plain_seq, _) = seal_bytes(&k, 3, "live", b"x").unwrap();
    assert_eq!(
        open(&k, "live", &plain_seq[..]).unwrap().sequence(),
        Some(0)
    );
    // Claiming a newer sequence in the clear header fails authentication.
    let mut bumped = sealed.clone();
    bumped[MAGIC_LEN..MAGIC_LEN + SEQUENCE_LEN].copy_from_slice(&42u64.to_be_bytes());
    assert!(matches!(
        open_bytes(&k, "live", &bumped),
        Err(CodecError::Tampered)
    ));
}

#[test]
fn detects_flipped_bits_everywhere() {
    let k = key(1);
    let (sealed, _) = seal_bytes(&k, 1, "ctx", &noise(3 * CHUNK)).unwrap();
    // The magic, the sequence, the nonce, a middle chunk and the last chunk.
    for at in [
        0,
        MAGIC_LEN + 2,
        HEADER_V2_LEN - 1,
        HEADER_V2_LEN + 10,
        HEADER_V2_LEN + SEALED_CHUNK + 5,
        sealed.len() - DIGEST_LEN - 3,
        sealed.len() - 1,
    ] {
        let mut bad = sealed.clone();
        bad[at] ^= 0x01;
        let e = err_of(&bad, &k);
        assert!(e.is_corruption(), "flip at {at}: {e}");
    }
}

#[test]
fn detects_truncation_at_and_between_chunk_boundaries() {
    let k = key(1);
    let (sealed, _) = seal_bytes(&k, 1, "ctx", &noise(3 * CHUNK)).unwrap();
    assert!(sealed.len() > HEADER_V2_LEN + 3 * SEALED_CHUNK);
    for cut in [
        HEADER_V2_LEN + SEALED_CHUNK,
        HEADER_V2_LEN + SEALED_CHUNK + DIGEST_LEN,
        HEADER_V2_LEN + 2 * SEALED_CHUNK,
        sealed.len() - 1,
        HEADER_V2_LEN + 3,
        HEADER_V2_LEN,
        5,
    ] {
        let e = err_of(&sealed[..cut], &k);
        assert!(e.is_corruption(), "cut at {cut}: {e}");
    }
}

#[test]
fn detects_reordered_and_dropped_chunks() {
    let k = key(1);
    let (sealed, _) = seal_bytes(&k, 1, "ctx", &noise(4 * CHUNK)).unwrap();
    let h = HEADER_V2_LEN;
    let c = |i: usize| &sealed[h + i * SEALED_CHUNK..h + (i + 1) * SEALED_CHUNK];
    let rest = &sealed[h + 2 * SEALED_CHUNK..];
    let swapped = [&sealed[..h], c(1), c(0), rest].concat();
    assert!(matches!(err_of(&swapped, &k), CodecError::Tampered));
    let dropped = [&sealed[..h], c(1), rest].concat();
    assert!(matches!(err_of(&dropped, &k), CodecError::Tampered));
}

#[test]
fn wrong_key_and_foreign_data_are_refused() {
    let (sealed, _) = seal_bytes(&key(1), 3, "ctx", b"wal").unwrap();
    assert!(matches!(err_of(&sealed, &key(2)), CodecError::Tampered));
    assert!(matches!(
        err_of(b"plain old file contents here", &key(1)),
        CodecError::BadHeader
    ));
    assert!(matches!(
        err_of(b"WRDNBK09 a future format", &key(1)),
        CodecError::BadHeader
    ));
}

#[test]
fn an_object_moved_to_another_name_is_refused() {
    let k = key(1);
    let (sealed, _) = seal_bytes(&k, 3, "wal/1/A", b"segment A").unwrap();
    assert!(open_bytes(&k, "wal/1/A", &sealed).is_ok());
    assert!(matches!(
        open_bytes(&k, "wal/1/B", &sealed),
        Err(CodecError::Tampered)
    ));
}

/// A source that fails after some bytes: the failure must stay an I/O error (a
/// retry may help), never look like corruption.
#[test]
fn a_failing_source_is_not_corruption() {
    struct Failing(Vec<u8>, usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1 >= self.0.len() / 2 {
                return Err(io::Error::other("connection reset"));
            }
            let n = buf.len().min(self.0.len() / 2 - self.1);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }
    let k = key(1);
    let (sealed, _) = seal_bytes(&k, 1, "ctx", &noise(4 * CHUNK)).unwrap();
    let mut opener = open(&k, "ctx", Failing(sealed, 0)).unwrap();
    let e = CodecError::from_io(opener.read_to_end(&mut Vec::new()).unwrap_err());
    assert!(matches!(e, CodecError::Io(_)), "{e}");
    assert!(!e.is_corruption());
}

#[test]
fn errors_read_clearly() {
    let msg = CodecError::Tampered.to_string();
    assert!(msg.starts_with("authentication failed"), "{msg}");
}

fn seal_v3(k: &EncryptionKey, level: i32, plain: &[u8]) -> Vec<u8> {
    let mut s = seal_unhashed(k, level, "ctx", Vec::new()).unwrap();
    s.write_all(plain).unwrap();
    s.finish().unwrap().0
}

#[test]
fn version_3_round_trips_at_fast_and_normal_levels_without_a_digest() {
    let k = key(9);
    for level in [-5, 1, 3] {
        for len in [0, 10, CHUNK, 3 * CHUNK + 17] {
            let plain = noise(len);
            let sealed = seal_v3(&k, level, &plain);
            assert_eq!(&sealed[..MAGIC_LEN], MAGIC_V3);
            let mut o = open(&k, "ctx", &sealed[..]).unwrap();
            let mut back = Vec::new();
            o.read_to_end(&mut back).unwrap();
            assert_eq!(back, plain, "level {level}, {len} bytes");
            assert_eq!(o.format(), Format::V3);
            assert_eq!(o.digest(), Some([0u8; DIGEST_LEN]));
        }
    }
}

/// Version 3 cuts the plaintext into frames of FRAME bytes whatever the writes' sizes:
/// whole frames straight from the caller's buffer, partial ones gathered.
#[test]
fn version_3_spans_several_frames_written_in_any_sizes() {
    let k = key(11);
    // Compressible, so the frames are small and a wrong frame order would show.
    let plain: Vec<u8> = (0..(3 * FRAME + 12_345))
        .map(|i| u8::try_from((i / 4096) % 251).unwrap())
        .collect();
    for writes in [
        vec![plain.len()],
        vec![FRAME, FRAME, FRAME, 12_345],
        vec![100_000; 33],
    ] {
        let mut s = seal_unhashed(&k, 3, "ctx", Vec::new()).unwrap();
        let mut at: usize = 0;
        for w in writes.iter().chain(std::iter::once(&usize::MAX)) {
            let end = at.saturating_add(*w).min(plain.len());
            s.write_all(&plain[at..end]).unwrap();
            at = end;
        }
        let (sealed, meta) = s.finish().unwrap();
        assert_eq!(meta.len, plain.len() as u64);
        assert!(sealed.len() < plain.len() / 10, "compressed");
        let mut back = Vec::new();
        open(&k, "ctx", &sealed[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == plain, "writes of {writes:?}: the plaintext differs");
    }
}

#[test]
fn version_3_detects_flipped_bits_truncation_and_a_moved_object() {
    let k = key(10);
    let plain = noise(2 * CHUNK + 999);
    let sealed = seal_v3(&k, 3, &plain);
    for i in (0..sealed.len()).step_by(997).chain([sealed.len() - 1]) {
        let mut bad = sealed.clone();
        bad[i] ^= 0x04;
        assert!(err_of(&bad, &k).is_corruption(), "flipped byte {i}");
    }
    for cut in [HEADER_V2_LEN, SEALED_CHUNK, sealed.len() - 1] {
        assert!(err_of(&sealed[..cut], &k).is_corruption(), "cut at {cut}");
    }
    let mut o = open(&k, "another/name", &sealed[..]).unwrap();
    let e = CodecError::from_io(o.read_to_end(&mut Vec::new()).unwrap_err());
    assert!(matches!(e, CodecError::Tampered), "{e}");
}
