//! The blob format (`latent::blob`): write → read is the identity in every element type, each
//! corruption has its own error, items parts and cold-start vectors are checked against the
//! blob, and a blob refuses another model.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use l2d::data::catalog::{Catalog, Item};
use l2d::latent::aggregate::{global_item_vectors, LocalIndex};
use l2d::latent::blob::{Blob, BlobError, BlobKind};
use l2d::latent::memory::Memory;
use l2d::latent::score::DType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn tiny_blob(kind: BlobKind, dtype: DType) -> Blob {
    let mut rng = StdRng::seed_from_u64(3);
    let catalog = Catalog::new(
        vec![
            Item {
                id: "a".into(),
                title: "Amélie (2001)".into(),
            },
            Item {
                id: "b".into(),
                title: "<img src=x onerror=alert(1)>".into(),
            },
            Item {
                id: "c".into(),
                title: "Greatest Hits".into(),
            },
            Item {
                id: "d".into(),
                title: "Greatest Hits".into(),
            },
        ],
        "test",
    )
    .unwrap();
    let memory = Memory {
        dim: 8,
        states: (0..6 * 8).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
        items: vec![0, 1, 1, 3, 3, 3],
    };
    let local = LocalIndex::new(&memory, 4).unwrap();
    let matrix = match kind {
        BlobKind::Global => global_item_vectors(&memory, 4).unwrap(),
        BlobKind::Memory => local.states().clone(),
    };
    Blob::new(
        kind,
        [7; 32],
        &catalog,
        local.counts(),
        matrix.to_dtype(dtype),
    )
    .unwrap()
}

/// `bytes` parsed as a blob, with the items parts of `like` (what a blob file and the parts
/// beside it read back as).
fn parse_with_items(bytes: &[u8], like: &Blob) -> Blob {
    let parts = like.items_parts();
    Blob::from_bytes(bytes)
        .unwrap()
        .with_items(parts.iter().map(|p| ("items", p.as_slice())))
        .unwrap()
}

#[test]
fn blob_write_read_is_identity() {
    for kind in [BlobKind::Global, BlobKind::Memory] {
        for dtype in [DType::F32, DType::F16, DType::I8, DType::I4] {
            let blob = tiny_blob(kind, dtype);
            let back = parse_with_items(&blob.to_bytes(), &blob);
            assert_eq!(back, blob, "{kind:?} {dtype:?}");
            // Parsed without its items parts, it writes the same bytes (item count included).
            let bytes = blob.to_bytes();
            assert_eq!(Blob::from_bytes(&bytes).unwrap().to_bytes(), bytes);
            // With a cold-start vector for item "c", the one without states.
            let cold = l2d::latent::score::ItemMatrix::from_f32(
                (0..8).map(|d| d as f32 / 8.0).collect(),
                8,
                vec![true],
            )
            .unwrap();
            let blob = blob.with_cold(&cold).unwrap();
            assert_eq!(blob.cold_items(), vec![2]);
            let back = parse_with_items(&blob.to_bytes(), &blob);
            assert_eq!(back, blob, "{kind:?} {dtype:?} with cold-start vectors");
            // With follow weights after them (and without the cold-start vectors).
            for blob in [blob.clone(), Blob { cold: None, ..blob }] {
                let blob = blob.with_follows(tiny_follows()).unwrap();
                let back = parse_with_items(&blob.to_bytes(), &blob);
                assert_eq!(back, blob, "{kind:?} {dtype:?} with follow weights");
                assert_eq!(back.follows.unwrap().pairs(), 3);
            }
        }
    }
}

/// Follow weights over [`tiny_blob`]'s four items: a → b, b → d twice, d → a.
fn tiny_follows() -> l2d::latent::follows::Follows {
    let samples = [(vec![0u32], 1u32), (vec![1], 3), (vec![1], 3), (vec![3], 0)];
    l2d::latent::follows::Follows::from_samples(samples.iter().map(|(h, t)| (h.as_slice(), *t)), 4)
        .unwrap()
}

/// int4 rows (int8 rows on 15 levels) are stored two per byte, for even and odd widths, and
/// read back as the same rows; the dtype code says so (4 plain, 5 around an offset).
#[test]
fn int4_rows_pack_two_per_byte_and_read_back() {
    use l2d::latent::score::{ItemMatrix, RowData};
    for (dim, rows) in [(8, 5), (7, 3), (1, 4), (193, 2)] {
        let values: Vec<f32> = (0..dim * rows)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * (1.0 + (i % 3) as f32))
            .collect();
        let f32_rows = ItemMatrix::from_f32(values, dim, vec![true; rows]).unwrap();
        let int4 = f32_rows.to_dtype(DType::I4);
        assert_eq!(int4.dtype(), DType::I4);
        assert!(
            matches!(int4.data(), RowData::I4 { .. }),
            "{dim}: packed in memory"
        );
        let q = int4.data().integers(0..rows, dim).unwrap();
        assert!(q.iter().all(|v| (-7..=7).contains(v)), "{dim}: levels");
        assert!(
            q.iter().any(|v| v.abs() == 7),
            "{dim}: each row's largest reaches 7"
        );
        let int8 = f32_rows.to_dtype(DType::I8);
        let blob = |m: &ItemMatrix| {
            let items = (0..rows)
                .map(|i| Item {
                    id: format!("i{i}"),
                    title: format!("t{i}"),
                })
                .collect();
            let catalog = Catalog::new(items, "int4 test").unwrap();
            Blob::new(
                BlobKind::Global,
                [1; 32],
                &catalog,
                vec![1; rows],
                m.clone(),
            )
            .unwrap()
        };
        let (b4, b8) = (blob(&int4), blob(&int8));
        let bytes = b4.to_bytes();
        assert_eq!(bytes[13], 5, "{dim}: int4 around an offset");
        assert_eq!(
            b8.to_bytes().len() - bytes.len(),
            rows * (dim - dim.div_ceil(2)),
            "{dim}: half a byte per value, a row rounded up to whole bytes"
        );
        let back = parse_with_items(&bytes, &b4);
        assert_eq!(back, b4, "{dim}");
        assert_eq!(back.matrix.dtype(), DType::I4);
        if dim % 2 == 1 {
            // The unused high half of an odd row's last byte must be 0, even under a valid
            // checksum (a writer's bug, not a corruption the checksum would catch).
            let mut forged = bytes.clone();
            let first_row_end = 128 + rows * 4 + dim * 4 + rows * 4 + dim.div_ceil(2);
            forged[first_row_end - 1] |= 0x30;
            let sum: [u8; 32] = sha2::Digest::finalize(
                <sha2::Sha256 as sha2::Digest>::new_with_prefix(&forged[128..]),
            )
            .into();
            forged[64..96].copy_from_slice(&sum);
            let err = Blob::from_bytes(&forged).unwrap_err();
            assert!(
                matches!(err, BlobError::OutOfRange { found: 3, .. })
                    && err.to_string().contains("int4 padding"),
                "{dim}: {err}"
            );
        }
    }
}

/// int8 rows are written centred (dtype code 3, a per-dimension offset); blobs of the earlier
/// layout without an offset (code 2, the shipped memory blob) read as they were written.
#[test]
fn int8_blobs_with_and_without_an_offset_read_back() {
    let centred = tiny_blob(BlobKind::Global, DType::I8);
    let bytes = centred.to_bytes();
    assert_eq!(bytes[13], 3, "int8 around an offset");
    let l2d::latent::score::RowData::I8 { values, scales, .. } = centred.matrix.data().clone()
    else {
        panic!("int8 rows");
    };
    let plain = l2d::latent::score::ItemMatrix::from_data(
        l2d::latent::score::RowData::I8 {
            values,
            scales,
            offset: None,
        },
        8,
        centred.matrix.valid().to_vec(),
    )
    .unwrap();
    let old = Blob {
        matrix: plain,
        ..centred.clone()
    };
    let old_bytes = old.to_bytes();
    assert_eq!(old_bytes[13], 2);
    assert_eq!(parse_with_items(&old_bytes, &old), old);
    assert_eq!(
        old_bytes.len() + 4 * 8,
        bytes.len(),
        "the offset costs dim f32s"
    );
    // A code-3 blob cut inside its offset is refused by name.
    let mut cut = bytes.clone();
    cut.truncate(cut.len() - 1);
    assert!(Blob::from_bytes(&cut).is_err());
}

/// Each corruption of a valid blob's bytes, and the error it must give.
#[test]
fn each_corruption_has_its_own_error() {
    type Corrupt = fn(&mut Vec<u8>);
    type Expect = fn(&BlobError) -> bool;
    let cases: [(&str, Corrupt, Expect); 12] = [
        (
            "magic",
            |b| b[0] = b'X',
            |e| matches!(e, BlobError::BadMagic { .. }),
        ),
        (
            "version",
            |b| b[8] = 9,
            |e| matches!(e, BlobError::UnsupportedVersion { found: 9 }),
        ),
        // A blob of the earlier layout, ids and titles inside: refused by its version.
        (
            "version 1",
            |b| b[8] = 1,
            |e| {
                matches!(e, BlobError::UnsupportedVersion { found: 1 })
                    && e.to_string().contains("version 1")
            },
        ),
        (
            "cut payload",
            |b| b.truncate(b.len() - 3),
            |e| matches!(e, BlobError::Truncated { .. }),
        ),
        (
            "cut header",
            |b| b.truncate(50),
            |e| matches!(e, BlobError::Truncated { .. }),
        ),
        (
            "payload byte",
            |b| *b.last_mut().unwrap() ^= 0x55,
            |e| matches!(e, BlobError::ChecksumMismatch { .. }),
        ),
        (
            "trailing",
            |b| b.extend_from_slice(b"junk"),
            |e| matches!(e, BlobError::TrailingBytes { extra: 4 }),
        ),
        // A forged header asking for 10^9 items fails before allocating.
        (
            "10^9 items",
            |b| b[16..20].copy_from_slice(&1_000_000_000u32.to_le_bytes()),
            |e| matches!(e, BlobError::Truncated { .. }),
        ),
        (
            "dim 0",
            |b| b[24..28].copy_from_slice(&0u32.to_le_bytes()),
            |e| matches!(e, BlobError::OutOfRange { field: "dim", .. }),
        ),
        (
            "cold flag without section",
            |b| b[14] |= 2,
            |e| matches!(e, BlobError::Truncated { what, .. } if what.starts_with("cold-start rows")),
        ),
        (
            "follows flag without section",
            |b| b[14] |= 4,
            |e| matches!(e, BlobError::Truncated { what, .. } if what == "follows length"),
        ),
        (
            "unknown flag",
            |b| b[14] = 8,
            |e| matches!(e, BlobError::OutOfRange { field: "flags", .. }),
        ),
    ];
    let bytes = tiny_blob(BlobKind::Global, DType::F32).to_bytes();
    assert!(Blob::from_bytes(&bytes).is_ok());
    for (name, corrupt, expected) in cases {
        let mut bad = bytes.clone();
        corrupt(&mut bad);
        let err = Blob::from_bytes(&bad).expect_err(name);
        assert!(expected(&err), "{name}: {err:?}");
    }
}

/// A source that counts its reads (what the browser's download outside wasm memory is).
struct CountingSource {
    bytes: Vec<u8>,
    reads: std::cell::Cell<usize>,
}

impl l2d::latent::blob::BlobSource for CountingSource {
    fn len(&self) -> usize {
        self.bytes.len()
    }
    fn read_into(&self, offset: usize, out: &mut [u8]) {
        self.reads.set(self.reads.get() + 1);
        out.copy_from_slice(&self.bytes[offset..offset + out.len()]);
    }
}

/// Parsing range by range from a source gives the blob (and each corruption's error) that
/// parsing the whole bytes gives, with a few buffered reads rather than one per field: the
/// shipped memory blob, the tiny blobs of every kind and dtype, and the corrupted ones.
#[test]
fn a_blob_read_from_a_source_equals_one_read_from_bytes() {
    let shipped = std::fs::read(common::default_dir().join("memory.blob")).unwrap();
    let mut cases: Vec<(String, Vec<u8>)> = vec![("shipped memory blob".into(), shipped)];
    for kind in [BlobKind::Global, BlobKind::Memory] {
        for dtype in [DType::F32, DType::F16, DType::I8, DType::I4] {
            cases.push((
                format!("{kind:?} {dtype:?}"),
                tiny_blob(kind, dtype).to_bytes(),
            ));
        }
    }
    cases.push((
        "with follow weights".into(),
        tiny_blob(BlobKind::Memory, DType::I4)
            .with_follows(tiny_follows())
            .unwrap()
            .to_bytes(),
    ));
    let good = tiny_blob(BlobKind::Global, DType::I8).to_bytes();
    let mut cut = good.clone();
    cut.truncate(good.len() - 5);
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    cases.push(("cut".into(), cut));
    cases.push(("flipped".into(), flipped));
    cases.push(("magic only".into(), b"L2DB".to_vec()));
    for (name, bytes) in cases {
        let whole = Blob::from_bytes(&bytes);
        let source = CountingSource {
            bytes,
            reads: std::cell::Cell::new(0),
        };
        let streamed = Blob::from_source(&source);
        assert_eq!(whole, streamed, "{name}");
        if let Ok(blob) = whole {
            // Header, window refills and the rows: far fewer reads than fields.
            let fields = blob.counts.len();
            assert!(
                source.reads.get() < 64 + fields / 100,
                "{name}: {} reads",
                source.reads.get()
            );
        }
    }
}

/// Each change to a blob's items parts, and the error (or not) it must give.
#[test]
fn items_parts_are_checked_against_the_blob() {
    type Edit = fn(&[u8]) -> Vec<Vec<u8>>;
    type Expect = fn(&Result<Blob, BlobError>) -> bool;
    fn lines(p: &[u8]) -> Vec<Vec<u8>> {
        p.split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }
    let cases: [(&str, Edit, Expect); 7] = [
        ("as written", |p| vec![p.to_vec()], |r| r.is_ok()),
        (
            "split into two parts at a line end",
            |p| {
                let l = lines(p);
                vec![l[..2].concat(), l[2..].concat()]
            },
            |r| r.as_ref().is_ok_and(|b| b.items.get(3).id == "d"),
        ),
        (
            "a title changed",
            |p| {
                vec![String::from_utf8(p.to_vec())
                    .unwrap()
                    .replace("\"b\"", "\"B\"")
                    .into_bytes()]
            },
            |r| matches!(r, Err(BlobError::ItemsMismatch { .. })),
        ),
        (
            "the last line dropped",
            |p| vec![lines(p)[..3].concat()],
            |r| matches!(r, Err(BlobError::ItemsMismatch { .. })),
        ),
        (
            "an extra line",
            |p| vec![p.to_vec(), b"{\"id\":\"e\",\"title\":\"e\"}\n".to_vec()],
            |r| {
                matches!(
                    r,
                    Err(BlobError::ItemCount {
                        expected: 4,
                        found: 5
                    })
                )
            },
        ),
        (
            "line 2 not an item",
            |p| {
                let mut l = lines(p);
                l[1] = b"[1, 2]\n".to_vec();
                vec![l.concat()]
            },
            |r| matches!(r, Err(BlobError::BadItemLine { line: 2, .. })),
        ),
        (
            "a part cut inside a line",
            |p| vec![p[..p.len() - 3].to_vec()],
            |r| matches!(r, Err(BlobError::BadItemLine { .. })),
        ),
    ];
    let blob = tiny_blob(BlobKind::Global, DType::F32);
    let parts = blob.items_parts();
    assert_eq!(parts.len(), 1);
    let bytes = blob.to_bytes();
    for (name, edit, expected) in cases {
        let edited = edit(&parts[0]);
        let read = Blob::from_bytes(&bytes)
            .unwrap()
            .with_items(edited.iter().map(|p| ("items-0.jsonl", p.as_slice())));
        assert!(expected(&read), "{name}: {read:?}");
    }
}

/// The shipped blobs read with their items parts, which the library writes byte for byte as
/// they are (so a rebuild gives the same files).
#[test]
fn the_shipped_items_parts_are_what_the_library_writes() {
    for name in ["global.blob", "memory.blob"] {
        let blob = Blob::read_file(&common::default_dir().join(name)).unwrap();
        let parts = blob.items_parts();
        for (file, part) in blob.items_part_names(parts.len()).iter().zip(&parts) {
            assert_eq!(
                &std::fs::read(common::default_dir().join(file)).unwrap(),
                part,
                "{name}: {file}"
            );
        }
    }
}

#[test]
fn cold_vectors_must_match_the_stateless_items() {
    let blob = tiny_blob(BlobKind::Global, DType::F32);
    let two_rows =
        l2d::latent::score::ItemMatrix::from_f32(vec![0.0; 16], 8, vec![true; 2]).unwrap();
    assert!(matches!(
        blob.with_cold(&two_rows),
        Err(BlobError::Invalid(_))
    ));
}

/// A blob is only used with the model it was built from: (fingerprint, dim) → outcome.
#[test]
fn a_blob_checks_its_model() {
    let good = Blob::from_bytes(&tiny_blob(BlobKind::Global, DType::F32).to_bytes()).unwrap();
    let cases: [([u8; 32], usize, Expect); 3] = [
        ([8; 32], 8, |r| {
            matches!(r, Err(BlobError::ModelMismatch { .. }))
        }),
        ([7; 32], 192, |r| {
            matches!(
                r,
                Err(BlobError::DimensionMismatch {
                    expected: 192,
                    found: 8
                })
            )
        }),
        ([7; 32], 8, |r| r.is_ok()),
    ];
    type Expect = fn(&Result<(), BlobError>) -> bool;
    for (fingerprint, dim, expected) in cases {
        let outcome = good.check_model(&fingerprint, dim);
        assert!(expected(&outcome), "{dim}: {outcome:?}");
    }
}
