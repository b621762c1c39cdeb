//! The dataset layer (`data::dataset`): the D3 protocol on real data, the D3-format loaders, the
//! prepared directory, and clear errors (file, line, field) for bad input.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};

use l2d::data::dataset::{import_raw_log, load_d3_dir, Dataset, RawLogSpec, Split};
use l2d::Error;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

#[test]
fn movielens_import_gives_the_reference_counts() {
    let (dataset, report) =
        import_raw_log(&RawLogSpec::movielens(&data("ml-latest-small")), "ml").unwrap();
    assert_eq!(report.interactions, 90_072);
    assert_eq!(report.users, 671);
    assert_eq!(report.items, 3_496);
    assert_eq!(dataset.catalog.len(), 3_496);
    assert_eq!(dataset.split(Split::Train).unwrap().len(), 71_520);
    assert_eq!(dataset.split(Split::Valid).unwrap().len(), 8_940);
    assert_eq!(dataset.split(Split::Test).unwrap().len(), 8_941);
    // Global time split: every train target is no later than every valid/test target.
    let last_train = dataset
        .split(Split::Train)
        .unwrap()
        .iter()
        .map(|s| s.timestamp)
        .max();
    let first_valid = dataset
        .split(Split::Valid)
        .unwrap()
        .iter()
        .map(|s| s.timestamp)
        .min();
    assert!(last_train <= first_valid);
    assert!(dataset
        .split(Split::Test)
        .unwrap()
        .iter()
        .all(|s| !s.history.is_empty() && s.history.len() <= 10));
    // Titles are kept byte-exact, non-ASCII included.
    assert!(dataset
        .catalog
        .items()
        .any(|i| i.title == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"));
}

#[test]
fn prepared_directory_round_trips() {
    let (dataset, _) =
        import_raw_log(&RawLogSpec::movielens(&data("ml-latest-small")), "ml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    dataset.write_dir(dir.path()).unwrap();
    let back = Dataset::read_dir(dir.path()).unwrap();
    assert!(back.catalog.items().eq(dataset.catalog.items()));
    for split in Split::ALL {
        assert_eq!(back.split(split).unwrap(), dataset.split(split).unwrap());
    }
}

#[test]
fn d3_directories_load_with_their_row_counts() {
    let cds = load_d3_dir(&data("CDs_and_Vinyl_R3")).unwrap();
    assert_eq!(cds.catalog.len(), 5_841);
    assert_eq!(cds.split(Split::Valid).unwrap().len(), 6_156);
    assert_eq!(cds.split(Split::Test).unwrap().len(), 6_157);
    let missing = cds.split(Split::Train).unwrap_err().to_string();
    assert!(missing.contains("split `train` is absent"), "{missing}");

    let ind = load_d3_dir(&data("Industrial_and_Scientific")).unwrap();
    assert_eq!(ind.catalog.len(), 3_686);
    assert_eq!(ind.split(Split::Valid).unwrap().len(), 4_532);
    assert_eq!(ind.split(Split::Test).unwrap().len(), 4_533);
    assert!(ind.split(Split::Test).unwrap()[0].timestamp.is_none());
    // Duplicate titles are allowed: items are identified by id.
    let junk = ind
        .catalog
        .items()
        .filter(|i| i.title == "Industrial & Scientific\" />")
        .count();
    assert_eq!(junk, 27);
}

/// Writes a small raw log (ratings + movies) with the given movies.csv body.
fn raw_log(dir: &Path, ratings: &str, movies: &str) -> RawLogSpec {
    std::fs::write(dir.join("ratings.csv"), ratings).unwrap();
    std::fs::write(dir.join("movies.csv"), movies).unwrap();
    RawLogSpec::movielens(dir)
}

fn five_core_ratings() -> String {
    let mut s = String::from("userId,movieId,rating,timestamp\n");
    for u in 1..=5 {
        for m in 1..=5 {
            s += &format!("{u},{m},4.0,{}\n", u * 100 + m);
        }
    }
    s
}

fn movies(titles: &[&str]) -> String {
    let mut s = String::from("movieId,title,genres\n");
    for (i, t) in titles.iter().enumerate() {
        s += &format!("{},{},Drama\n", i + 1, t);
    }
    s
}

#[test]
fn small_raw_log_follows_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let spec = raw_log(
        dir.path(),
        &five_core_ratings(),
        &movies(&["A", "\"B, \"\"quoted\"\"\"", "Ç", "D", "E"]),
    );
    let (dataset, report) = import_raw_log(&spec, "tiny").unwrap();
    assert_eq!(
        (report.interactions, report.users, report.items),
        (25, 5, 5)
    );
    assert_eq!(dataset.catalog.title(1), "B, \"quoted\"");
    let n = 5 * 4;
    assert_eq!(dataset.split(Split::Train).unwrap().len(), n * 8 / 10);
    assert_eq!(dataset.split(Split::Test).unwrap().len(), n - n * 9 / 10);
}

fn message(err: Error) -> String {
    err.to_string()
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = message(import_raw_log(&RawLogSpec::movielens(dir.path()), "x").unwrap_err());
    assert!(
        err.contains("movies.csv") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn missing_column_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let spec = raw_log(
        dir.path(),
        "userId,movieId,rating\n1,1,4\n",
        &movies(&["A"]),
    );
    let err = message(import_raw_log(&spec, "x").unwrap_err());
    assert!(
        err.contains("ratings.csv") && err.contains("missing column `timestamp`"),
        "{err}"
    );
}

#[test]
fn title_with_newline_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let spec = raw_log(
        dir.path(),
        &five_core_ratings(),
        &movies(&["A", "\"Two\nLines\"", "C"]),
    );
    let err = message(import_raw_log(&spec, "x").unwrap_err());
    assert!(
        err.contains("movies.csv:3: field `title`") && err.contains("line break"),
        "{err}"
    );
}

#[test]
fn empty_catalog_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let spec = raw_log(dir.path(), &five_core_ratings(), "movieId,title,genres\n");
    let err = message(import_raw_log(&spec, "x").unwrap_err());
    assert!(
        err.contains("movies.csv") && err.contains("is empty"),
        "{err}"
    );
}

#[test]
fn bad_timestamp_names_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let spec = raw_log(
        dir.path(),
        "userId,movieId,rating,timestamp\n1,1,4,yesterday\n",
        &movies(&["A"]),
    );
    let err = message(import_raw_log(&spec, "x").unwrap_err());
    assert!(err.contains("ratings.csv:2: field `timestamp`"), "{err}");
}

fn d3_dir(csv_body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("info")).unwrap();
    std::fs::create_dir_all(dir.path().join("test")).unwrap();
    std::fs::write(
        dir.path().join("info/items.txt"),
        "First, the \"one\"\t0\nSecond\t1\nThird\t2\n",
    )
    .unwrap();
    let header = "user_id,history_item_title,item_title,history_item_id,item_id\n";
    std::fs::write(
        dir.path().join("test/items.csv"),
        format!("{header}{csv_body}"),
    )
    .unwrap();
    dir
}

#[test]
fn d3_quotes_and_commas_in_list_literals() {
    let dir = d3_dir("u1,\"['First, the \"\"one\"\"', 'Second']\",Third,\"[0, 1]\",2\n");
    let ds = load_d3_dir(dir.path()).unwrap();
    let test = ds.split(Split::Test).unwrap();
    assert_eq!(test[0].history, vec![0, 1]);
    assert_eq!(ds.catalog.title(0), "First, the \"one\"");
    assert!(ds.split(Split::Valid).is_err());
}

#[test]
fn malformed_list_literal_names_file_line_and_field() {
    let dir = d3_dir("u1,\"['First', 'Second']\",Third,\"[0, 1\",2\n");
    let err = message(load_d3_dir(dir.path()).unwrap_err());
    assert!(
        err.contains("items.csv:2: field `history_item_id`: malformed list literal"),
        "{err}"
    );
}

#[test]
fn d3_unknown_item_names_line_and_field() {
    let dir = d3_dir("u1,\"['First']\",Third,[7],2\n");
    let err = message(load_d3_dir(dir.path()).unwrap_err());
    assert!(
        err.contains("items.csv:2: field `history_item_id`") && err.contains("`7`"),
        "{err}"
    );
}

#[test]
fn d3_title_with_newline_is_rejected() {
    let dir = d3_dir("u1,\"['First']\",\"Thi\nrd\",[0],2\n");
    let err = message(load_d3_dir(dir.path()).unwrap_err());
    assert!(
        err.contains("items.csv:2: field `item_title`") && err.contains("line break"),
        "{err}"
    );
}

/// Writes `samples`' targets as a raw interactions CSV (userId, movieId, timestamp).
fn interactions_csv(path: &Path, dataset: &Dataset, samples: &[l2d::data::dataset::Sample]) {
    let mut s = String::from("userId,movieId,timestamp\n");
    for sample in samples {
        let id = dataset.catalog.item(sample.target).id;
        s += &format!("{},{id},{}\n", sample.user, sample.timestamp.unwrap());
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn appending_the_valid_log_to_train_gives_the_valid_samples() {
    let (full, _) = import_raw_log(&RawLogSpec::movielens(&data("ml-latest-small")), "ml").unwrap();
    let valid = full.split(Split::Valid).unwrap();
    let mut base = full.clone();
    (base.valid, base.test) = (None, None);
    let dir = tempfile::tempdir().unwrap();
    let spec = RawLogSpec {
        interactions: dir.path().join("new.csv"),
        ..RawLogSpec::movielens(dir.path())
    };
    interactions_csv(&spec.interactions, &full, valid);
    let (report, appended) = base.append_log(&spec, false).unwrap();
    let train = full.split(Split::Train).unwrap().len();
    assert_eq!(appended, train..train + report.samples);
    let known: std::collections::HashSet<&str> = full
        .split(Split::Train)
        .unwrap()
        .iter()
        .map(|s| s.user.as_str())
        .collect();
    // Users the train split knows get exactly the import's samples, in the same order.
    let expected: Vec<_> = valid
        .iter()
        .filter(|s| known.contains(s.user.as_str()))
        .collect();
    let got: Vec<_> = base.split(Split::Train).unwrap()[appended]
        .iter()
        .filter(|s| known.contains(s.user.as_str()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(report.raw_interactions, valid.len());
    assert_eq!((report.unknown_item, report.new_items), (0, 0));
    // A user unknown to train loses the first interaction (it has no history) and only that.
    assert_eq!(report.samples, valid.len() - report.first_interactions);
}

/// (user, history ids, target id) of an appended sample.
type Appended = (&'static str, Vec<&'static str>, &'static str);

#[test]
fn append_log_cases() {
    // Base: users 1–5 each rated movies 1–5 (timestamps u*100+m).
    struct Case {
        name: &'static str,
        ratings: &'static str,
        items: Option<&'static str>,
        /// (user, history ids, target id) of the appended samples, or the error's words.
        expect: Result<Vec<Appended>, Vec<&'static str>>,
        new_items: usize,
    }
    let cases = [
        Case {
            name: "a known user's next item follows their history",
            ratings: "userId,movieId,timestamp\n1,3,900\n",
            items: None,
            expect: Ok(vec![("1", vec!["1", "2", "3", "4", "5"], "3")]),
            new_items: 0,
        },
        Case {
            name: "new interactions are ordered by time per user",
            ratings: "userId,movieId,timestamp\n2,1,950\n2,4,900\n",
            items: None,
            expect: Ok(vec![
                ("2", vec!["1", "2", "3", "4", "5"], "4"),
                ("2", vec!["1", "2", "3", "4", "5", "4"], "1"),
            ]),
            new_items: 0,
        },
        Case {
            name: "a new user's first item has no history, the second has",
            ratings: "userId,movieId,timestamp\n9,2,900\n9,5,901\n",
            items: None,
            expect: Ok(vec![("9", vec!["2"], "5")]),
            new_items: 0,
        },
        Case {
            name: "a new item from the items file becomes a target at once",
            ratings: "userId,movieId,timestamp\n3,6,900\n",
            items: Some("movieId,title\n6,F (2026)\n1,A\n"),
            expect: Ok(vec![("3", vec!["1", "2", "3", "4", "5"], "6")]),
            new_items: 1,
        },
        Case {
            name: "an unknown item is dropped and counted",
            ratings: "userId,movieId,timestamp\n3,77,900\n",
            items: None,
            expect: Ok(vec![]),
            new_items: 0,
        },
        Case {
            name: "a changed title is an error naming the item",
            ratings: "userId,movieId,timestamp\n3,1,900\n",
            items: Some("movieId,title\n1,Not A\n"),
            expect: Err(vec![
                "new_items.csv",
                "title of item `1`",
                "\"A\"",
                "\"Not A\"",
            ]),
            new_items: 0,
        },
        Case {
            name: "an interaction the dataset has already is skipped",
            ratings: "userId,movieId,timestamp\n1,5,105\n1,3,900\n",
            items: None,
            expect: Ok(vec![("1", vec!["1", "2", "3", "4", "5"], "3")]),
            new_items: 0,
        },
        Case {
            name: "a bad timestamp names file, line and field",
            ratings: "userId,movieId,timestamp\n3,1,soon\n",
            items: None,
            expect: Err(vec!["new.csv:2: field `timestamp`"]),
            new_items: 0,
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let spec = raw_log(
            dir.path(),
            &five_core_ratings(),
            &movies(&["A", "B", "C", "D", "E"]),
        );
        let (full, _) = import_raw_log(&spec, "tiny").unwrap();
        let mut dataset = full.clone();
        std::fs::write(dir.path().join("new.csv"), case.ratings).unwrap();
        if let Some(items) = case.items {
            std::fs::write(dir.path().join("new_items.csv"), items).unwrap();
        }
        let new = RawLogSpec {
            interactions: dir.path().join("new.csv"),
            items: dir.path().join("new_items.csv"),
            ..spec
        };
        let result = dataset.append_log(&new, case.items.is_some());
        match (&case.expect, result) {
            (Ok(expected), Ok((report, appended))) => {
                let train = dataset.split(Split::Train).unwrap();
                let id = |i: u32| dataset.catalog.item(i).id;
                let got: Vec<_> = train[appended]
                    .iter()
                    .map(|s| {
                        let history: Vec<&str> = s.history.iter().map(|&i| id(i)).collect();
                        (s.user.as_str(), history, id(s.target))
                    })
                    .collect();
                let expected: Vec<_> = expected
                    .iter()
                    .map(|(u, h, t)| (*u, h.clone(), *t))
                    .collect();
                assert_eq!(got, expected, "{}", case.name);
                assert_eq!(report.new_items, case.new_items, "{}", case.name);
                assert_eq!(
                    dataset.catalog.len(),
                    full.catalog.len() + case.new_items,
                    "{}",
                    case.name
                );
                // Existing items keep their indices.
                assert_eq!(
                    dataset
                        .catalog
                        .items()
                        .take(full.catalog.len())
                        .collect::<Vec<_>>(),
                    full.catalog.items().collect::<Vec<_>>(),
                    "{}",
                    case.name
                );
            }
            (Err(words), Err(err)) => {
                let text = err.to_string();
                for w in words {
                    assert!(text.contains(w), "{}: {text}", case.name);
                }
            }
            (expected, got) => panic!("{}: expected {expected:?}, got {got:?}", case.name),
        }
    }
}
