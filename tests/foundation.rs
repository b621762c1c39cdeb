//! Foundation: the D3 protocol on real data, the D3-format loaders, the prepared directory, and
//! clear errors (file, line, field) for bad input.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};

use l2d::dataset::{import_raw_log, load_d3_dir, Dataset, RawLogSpec, Split};
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
        .iter()
        .any(|i| i.title == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"));
}

#[test]
fn prepared_directory_round_trips() {
    let (dataset, _) =
        import_raw_log(&RawLogSpec::movielens(&data("ml-latest-small")), "ml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    dataset.write_dir(dir.path()).unwrap();
    let back = Dataset::read_dir(dir.path()).unwrap();
    assert_eq!(back.catalog.items(), dataset.catalog.items());
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
        .iter()
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
