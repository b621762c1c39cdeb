//! Datasets in the D3 protocol: import from raw interaction logs (5-core, per-user time order,
//! prefix samples with at most 10 history items, global 80/10/10 split by target time), load
//! D3-format CSV directories, and read/write l2d's prepared dataset directory (JSON lines).
//!
//! Long because: the one timeline rule (5-core, per-user time order, prefix samples, the split)
//! is shared by the import, the D3 loader and `append_log`, and each reader sits on the same
//! bounded record reader; split apart they would each need the rule.
//!
//! Prepared directory layout:
//! - `dataset.json`: name, source, item and sample counts, which splits are present;
//! - `catalog.jsonl`: one `{"id": .., "title": ..}` per line, in index order;
//! - `train.jsonl`, `valid.jsonl`, `test.jsonl`: one sample per line,
//!   `{"user": .., "history": [item ids, oldest first], "target": item id, "timestamp": int|null}`.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::catalog::{Catalog, Item, ItemIndex, ItemRef};
use crate::data::prompt::MAX_HISTORY;
use crate::data::pyliteral::{parse_list, PyValue};
use crate::error::{Error, Result};

/// Longest history list accepted in a D3 CSV cell (D3 keeps 10; this only stops absurd input).
pub const MAX_HISTORY_CELL: usize = 1000;
/// Longest CSV record or text line accepted, in bytes. Real ones are far shorter (a D3 row with
/// ten titles is about 2 KB); the bound stops a 2 GB line from being buffered whole.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Iterative k-core threshold of the D3 protocol.
pub const MIN_INTERACTIONS: usize = 5;

/// One of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    /// All splits, in time order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    /// Lower-case name, as used in file and directory names.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Split::ALL
            .into_iter()
            .find(|split| split.name() == s)
            .ok_or_else(|| {
                Error::invalid("split", format!("`{s}` (expected train, valid or test)"))
            })
    }
}

/// One recommendation sample: the user's previous items and the item they chose next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// User identifier from the source data.
    pub user: String,
    /// Previous items, oldest first, at most [`MAX_HISTORY`] for imported data.
    pub history: Vec<ItemIndex>,
    /// The item the user interacted with next.
    pub target: ItemIndex,
    /// Time of the target interaction, when the source has one.
    pub timestamp: Option<i64>,
}

/// A catalog plus its splits; a split the source does not provide is `None`.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Human-readable name (directory or file stem).
    pub name: String,
    /// The items.
    pub catalog: Catalog,
    /// Training samples, if present.
    pub train: Option<Vec<Sample>>,
    /// Validation samples, if present.
    pub valid: Option<Vec<Sample>>,
    /// Test samples, if present.
    pub test: Option<Vec<Sample>>,
}

impl Dataset {
    /// The samples of `split`, or an error saying the split is absent.
    pub fn split(&self, split: Split) -> Result<&[Sample]> {
        let samples = match split {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        };
        samples.as_deref().ok_or_else(|| Error::MissingSplit {
            dataset: self.name.clone(),
            split: split.name().into(),
            detail: "the source data does not provide it".into(),
        })
    }

    /// Sample count per split (`None` = absent).
    pub fn counts(&self) -> [(Split, Option<usize>); 3] {
        Split::ALL.map(|s| (s, self.split(s).ok().map(<[Sample]>::len)))
    }

    /// A one-paragraph summary with every count, as printed by `l2d prepare`.
    pub fn summary(&self) -> String {
        let mut out = format!("dataset {}: {} items", self.name, self.catalog.len());
        for (split, count) in self.counts() {
            match count {
                Some(n) => out += &format!(", {split} {n}"),
                None => out += &format!(", {split} absent"),
            }
        }
        out
    }
}

// ------------------------------------------------------------------------------------------
// Raw interaction logs → D3 protocol
// ------------------------------------------------------------------------------------------

/// Where a raw log is and which columns to read (MovieLens names by default).
#[derive(Debug, Clone)]
pub struct RawLogSpec {
    /// Interactions CSV (one row per interaction).
    pub interactions: PathBuf,
    /// Items CSV (id and title per row).
    pub items: PathBuf,
    /// User column in the interactions CSV.
    pub user_column: String,
    /// Item column in the interactions CSV.
    pub item_column: String,
    /// Timestamp column (integer seconds) in the interactions CSV.
    pub time_column: String,
    /// Id column in the items CSV.
    pub item_id_column: String,
    /// Title column in the items CSV.
    pub title_column: String,
}

impl RawLogSpec {
    /// MovieLens layout: `ratings.csv` (userId, movieId, timestamp), `movies.csv` (movieId, title).
    pub fn movielens(dir: &Path) -> Self {
        RawLogSpec {
            interactions: dir.join("ratings.csv"),
            items: dir.join("movies.csv"),
            user_column: "userId".into(),
            item_column: "movieId".into(),
            time_column: "timestamp".into(),
            item_id_column: "movieId".into(),
            title_column: "title".into(),
        }
    }
}

/// What the import kept and dropped, beyond the dataset itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows in the interactions file.
    pub raw_interactions: usize,
    /// Interactions dropped because their item has no row in the items file.
    pub without_title: usize,
    /// Interactions left after the iterative 5-core filter.
    pub interactions: usize,
    /// Users left after the filter.
    pub users: usize,
    /// Items left after the filter.
    pub items: usize,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} raw interactions ({} without an item title, dropped); after {}-core: {} interactions, {} users, {} items",
            self.raw_interactions,
            self.without_title,
            MIN_INTERACTIONS,
            self.interactions,
            self.users,
            self.items
        )
    }
}

/// A reader that fails once a record runs past [`MAX_RECORD_BYTES`] without a line break, so
/// that no parser above it ever buffers more. With `quoted`, line breaks inside CSV double
/// quotes belong to the record (RFC 4180; a doubled quote toggles twice).
struct RecordLimit<R> {
    inner: R,
    quoted: bool,
    in_quotes: bool,
    run: usize,
    /// 1-based number of the line being read.
    line: u64,
}

impl<R: Read> RecordLimit<R> {
    fn new(inner: R, quoted: bool) -> Self {
        RecordLimit {
            inner,
            quoted,
            in_quotes: false,
            run: 0,
            line: 1,
        }
    }
}

impl<R: Read> Read for RecordLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'"' && self.quoted {
                self.in_quotes = !self.in_quotes;
            }
            if b == b'\n' {
                self.line += 1;
                if !self.in_quotes {
                    self.run = 0;
                    continue;
                }
            }
            self.run += 1;
            if self.run > MAX_RECORD_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("record longer than {MAX_RECORD_BYTES} bytes"),
                ));
            }
        }
        Ok(n)
    }
}

/// Non-empty lines of a text file with their 1-based numbers; a line longer than
/// [`MAX_RECORD_BYTES`] or invalid UTF-8 is a parse error naming file and line.
fn bounded_lines(path: &Path, mut row: impl FnMut(&str, u64) -> Result<()>) -> Result<()> {
    let file = path.display().to_string();
    let handle = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = std::io::BufReader::new(RecordLimit::new(handle, false));
    let mut line = String::new();
    for line_no in 1u64.. {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(Error::parse(&file, line_no, "line", e.to_string())),
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if !text.trim().is_empty() {
            row(text, line_no)?;
        }
    }
    Ok(())
}

struct CsvTable {
    file: String,
    reader: csv::Reader<RecordLimit<fs::File>>,
    header: Vec<String>,
}

impl CsvTable {
    fn open(path: &Path) -> Result<Self> {
        let file = path.display().to_string();
        let handle = fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(RecordLimit::new(handle, true));
        let header = reader
            .headers()
            .map_err(|e| csv_error(&file, "header", e))?
            .iter()
            .map(str::to_string)
            .collect();
        Ok(CsvTable {
            file,
            reader,
            header,
        })
    }

    fn column(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::MissingColumn {
                file: self.file.clone(),
                column: name.into(),
                found: self.header.join(", "),
            })
    }

    fn optional_column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// Calls `row` with each record and its 1-based line number.
    fn for_each(
        &mut self,
        mut row: impl FnMut(&csv::StringRecord, u64) -> Result<()>,
    ) -> Result<()> {
        let mut record = csv::StringRecord::new();
        loop {
            match self.reader.read_record(&mut record) {
                Ok(false) => return Ok(()),
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    row(&record, line)?;
                }
                Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                    let line = self.reader.get_ref().line;
                    return Err(Error::parse(&self.file, line, "record", e.to_string()));
                }
                Err(e) => return Err(csv_error(&self.file, "record", e)),
            }
        }
    }
}

fn csv_error(file: &str, field: &str, e: csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line());
    Error::parse(file, line, field, e.to_string())
}

fn parse_timestamp(text: &str) -> Option<i64> {
    text.trim().parse::<i64>().ok().or_else(|| {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite())
            .map(|t| t as i64)
    })
}

/// Reads an items CSV into a catalog (file order), rejecting bad titles with file:line:field.
fn read_item_table(spec: &RawLogSpec) -> Result<Catalog> {
    let mut table = CsvTable::open(&spec.items)?;
    let id_col = table.column(&spec.item_id_column)?;
    let title_col = table.column(&spec.title_column)?;
    let file = table.file.clone();
    let mut items = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    table.for_each(|record, line| {
        let id = record[id_col].trim().to_string();
        let title = record[title_col].to_string();
        if id.is_empty() {
            return Err(Error::parse(
                &file,
                line,
                &spec.item_id_column,
                "empty item id",
            ));
        }
        crate::data::catalog::check_title(&title)
            .map_err(|m| Error::parse(&file, line, &spec.title_column, m))?;
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(Error::parse(
                &file,
                line,
                &spec.item_id_column,
                format!("duplicate item id `{id}` (first on line {first})"),
            ));
        }
        items.push(Item { id, title });
        Ok(())
    })?;
    if items.is_empty() {
        return Err(Error::Empty {
            what: format!("item catalog {file}"),
            detail: " (no rows after the header)".into(),
        });
    }
    Catalog::new(items, &file)
}

/// The rows of an interactions CSV: users numbered in order of first appearance, and
/// (user number, item, timestamp) in file order. Rows whose item `lookup` does not know are
/// counted, not kept (the caller reports them).
struct InteractionLog {
    users: Vec<String>,
    interactions: Vec<(u32, ItemIndex, i64)>,
    raw: usize,
    unknown_item: usize,
}

fn read_interactions(
    spec: &RawLogSpec,
    lookup: impl Fn(&str) -> Option<ItemIndex>,
) -> Result<InteractionLog> {
    let mut table = CsvTable::open(&spec.interactions)?;
    let user_col = table.column(&spec.user_column)?;
    let item_col = table.column(&spec.item_column)?;
    let time_col = table.column(&spec.time_column)?;
    let file = table.file.clone();
    let mut user_numbers: HashMap<String, u32> = HashMap::new();
    let mut log = InteractionLog {
        users: Vec::new(),
        interactions: Vec::new(),
        raw: 0,
        unknown_item: 0,
    };
    table.for_each(|record, line| {
        log.raw += 1;
        let user = record[user_col].trim();
        if user.is_empty() {
            return Err(Error::parse(
                &file,
                line,
                &spec.user_column,
                "empty user id",
            ));
        }
        let time = parse_timestamp(&record[time_col]).ok_or_else(|| {
            Error::parse(
                &file,
                line,
                &spec.time_column,
                format!(
                    "expected an integer timestamp, found {:?}",
                    &record[time_col]
                ),
            )
        })?;
        let Some(item) = lookup(record[item_col].trim()) else {
            log.unknown_item += 1;
            return Ok(());
        };
        let next = log.users.len() as u32;
        let user = *user_numbers.entry(user.to_string()).or_insert_with(|| {
            log.users.push(user.to_string());
            next
        });
        log.interactions.push((user, item, time));
        Ok(())
    })?;
    Ok(log)
}

/// The samples of one user's new interactions (`new`, in time order) after the items they
/// had before (`prior`, oldest first): one per new interaction that has at least one item
/// before it, with the previous ≤ [`MAX_HISTORY`] items. The one rule for import and update.
fn push_timeline_samples(
    user: &str,
    prior: &[ItemIndex],
    new: &[(i64, ItemIndex)],
    out: &mut Vec<Sample>,
) {
    let items: Vec<ItemIndex> = prior
        .iter()
        .copied()
        .chain(new.iter().map(|&(_, i)| i))
        .collect();
    for (offset, &(time, target)) in new.iter().enumerate() {
        let pos = prior.len() + offset;
        if pos == 0 {
            continue;
        }
        out.push(Sample {
            user: user.to_string(),
            history: items[pos.saturating_sub(MAX_HISTORY)..pos].to_vec(),
            target,
            timestamp: Some(time),
        });
    }
}

/// Imports a raw log under the D3 protocol (Bao et al., "Decoding Matters", 2024; as used by the L2D paper): iterative 5-core, stable per-user
/// time sort, one sample per position ≥ 1 with the previous ≤ 10 items, samples sorted stably by
/// target time and split 80/10/10.
pub fn import_raw_log(spec: &RawLogSpec, name: &str) -> Result<(Dataset, ImportReport)> {
    let all_items = read_item_table(spec)?;
    let file = spec.interactions.display().to_string();
    let log = read_interactions(spec, |id| all_items.index_of(id))?;
    let (user_names, mut interactions) = (log.users, log.interactions);
    let (raw, without_title) = (log.raw, log.unknown_item);
    if interactions.is_empty() {
        return Err(Error::Empty {
            what: format!("interaction log {file}"),
            detail: " (no interaction with a known item)".into(),
        });
    }

    // Iterative 5-core.
    loop {
        let mut user_count = vec![0usize; user_names.len()];
        let mut item_count = vec![0usize; all_items.len()];
        for &(u, i, _) in &interactions {
            user_count[u as usize] += 1;
            item_count[i as usize] += 1;
        }
        let before = interactions.len();
        interactions.retain(|&(u, i, _)| {
            user_count[u as usize] >= MIN_INTERACTIONS && item_count[i as usize] >= MIN_INTERACTIONS
        });
        if interactions.len() == before {
            break;
        }
    }
    if interactions.is_empty() {
        return Err(Error::Empty {
            what: format!("{name} after the {MIN_INTERACTIONS}-core filter"),
            detail: String::new(),
        });
    }

    // Catalog of surviving items, in items-file order.
    let mut kept = vec![false; all_items.len()];
    for &(_, i, _) in &interactions {
        kept[i as usize] = true;
    }
    let mut remap = vec![ItemIndex::MAX; all_items.len()];
    let mut items = Vec::new();
    for (old, item) in all_items.items().enumerate() {
        if kept[old] {
            remap[old] = items.len() as ItemIndex;
            items.push(item.to_item());
        }
    }
    let catalog = Catalog::new(items, &spec.items.display().to_string())?;

    // Per-user timelines in order of first appearance; stable sort by time.
    let mut user_order: Vec<u32> = Vec::new();
    let mut timelines: HashMap<u32, Vec<(i64, ItemIndex)>> = HashMap::new();
    for &(u, i, t) in &interactions {
        let timeline = timelines.entry(u).or_insert_with(|| {
            user_order.push(u);
            Vec::new()
        });
        timeline.push((t, remap[i as usize]));
    }
    let mut samples = Vec::new();
    for u in &user_order {
        let timeline = timelines
            .get_mut(u)
            .expect("every ordered user has a timeline");
        timeline.sort_by_key(|&(t, _)| t);
        push_timeline_samples(&user_names[*u as usize], &[], timeline, &mut samples);
    }
    samples.sort_by_key(|s| s.timestamp);
    let n = samples.len();
    let (train_end, valid_end) = (n * 8 / 10, n * 9 / 10);
    let test = samples.split_off(valid_end);
    let valid = samples.split_off(train_end);
    let report = ImportReport {
        raw_interactions: raw,
        without_title,
        interactions: interactions.len(),
        users: user_order.len(),
        items: catalog.len(),
    };
    Ok((
        Dataset {
            name: name.to_string(),
            catalog,
            train: Some(samples),
            valid: Some(valid),
            test: Some(test),
        },
        report,
    ))
}

/// What [`Dataset::append_log`] added and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendReport {
    /// Rows in the new interactions file.
    pub raw_interactions: usize,
    /// Rows dropped because their item is neither in the catalog nor in the new items file.
    pub unknown_item: usize,
    /// Items appended to the catalog (in the new items file, not in the catalog before).
    pub new_items: usize,
    /// Users of the new log the dataset did not know.
    pub new_users: usize,
    /// Interactions already in the dataset (same user, item and time as a sample's target):
    /// skipped, so applying the same log twice appends nothing the second time.
    pub already_known: usize,
    /// Interactions that start a user's timeline (no earlier item, so no sample).
    pub first_interactions: usize,
    /// Samples appended to the train split.
    pub samples: usize,
}

impl fmt::Display for AppendReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} new interactions ({} with an unknown item, dropped; {} already in the dataset, skipped; {} start a timeline, no sample); {} new items, {} new users; {} samples appended",
            self.raw_interactions,
            self.unknown_item,
            self.already_known,
            self.first_interactions,
            self.new_items,
            self.new_users,
            self.samples
        )
    }
}

impl Dataset {
    /// Each user's items so far, oldest first, the last [`MAX_HISTORY`] of them: the history
    /// of the user's first sample followed by every sample's target, over all present splits
    /// in split order (time order under the D3 protocol).
    pub fn timelines(&self) -> HashMap<&str, Vec<ItemIndex>> {
        let mut timelines: HashMap<&str, Vec<ItemIndex>> = HashMap::new();
        for split in Split::ALL {
            for sample in self.split(split).unwrap_or(&[]) {
                let timeline = timelines
                    .entry(sample.user.as_str())
                    .or_insert_with(|| sample.history.clone());
                timeline.push(sample.target);
                if timeline.len() > 2 * MAX_HISTORY {
                    timeline.drain(..timeline.len() - MAX_HISTORY);
                }
            }
        }
        for timeline in timelines.values_mut() {
            let excess = timeline.len().saturating_sub(MAX_HISTORY);
            timeline.drain(..excess);
        }
        timelines
    }

    /// Appends a raw log of new interactions (columns as in `spec`; new items from
    /// `spec.items` when `with_items`): items not yet in the catalog are appended at the end
    /// (existing indices stay), and each interaction after a user's known items becomes a
    /// train sample, in time order, by the import's rule. No k-core filter: every interaction
    /// with a known item counts. Returns the appended samples' positions in the train split.
    pub fn append_log(
        &mut self,
        spec: &RawLogSpec,
        with_items: bool,
    ) -> Result<(AppendReport, std::ops::Range<usize>)> {
        let mut new_items = 0;
        if with_items {
            let table = read_item_table(spec)?;
            let mut items: Vec<Item> = self.catalog.items().map(ItemRef::to_item).collect();
            for item in table.items() {
                match self.catalog.index_of(item.id) {
                    Some(known) if self.catalog.title(known) != item.title => {
                        return Err(Error::mismatch(
                            format!("{}: title of item `{}`", spec.items.display(), item.id),
                            format!("{:?} (as in the catalog)", self.catalog.title(known)),
                            format!("{:?}", item.title),
                        ))
                    }
                    Some(_) => {}
                    None => {
                        items.push(item.to_item());
                        new_items += 1;
                    }
                }
            }
            self.catalog = Catalog::new(items, &spec.items.display().to_string())?;
        }
        let log = read_interactions(spec, |id| self.catalog.index_of(id))?;
        let known: std::collections::HashSet<(&str, ItemIndex, i64)> = Split::ALL
            .into_iter()
            .flat_map(|split| self.split(split).unwrap_or(&[]))
            .filter_map(|s| Some((s.user.as_str(), s.target, s.timestamp?)))
            .collect();
        let mut per_user: Vec<Vec<(i64, ItemIndex)>> = vec![Vec::new(); log.users.len()];
        let mut already_known = 0;
        for &(u, item, time) in &log.interactions {
            if known.contains(&(log.users[u as usize].as_str(), item, time)) {
                already_known += 1;
            } else {
                per_user[u as usize].push((time, item));
            }
        }
        let timelines = self.timelines();
        let mut samples = Vec::new();
        let (mut new_users, mut first_interactions) = (0, 0);
        for (user, new) in log.users.iter().zip(per_user.iter_mut()) {
            new.sort_by_key(|&(t, _)| t);
            let prior = timelines.get(user.as_str()).map_or(&[][..], Vec::as_slice);
            if prior.is_empty() {
                new_users += 1;
                first_interactions += usize::from(!new.is_empty());
            }
            push_timeline_samples(user, prior, new, &mut samples);
        }
        samples.sort_by_key(|s| s.timestamp);
        let report = AppendReport {
            raw_interactions: log.raw,
            unknown_item: log.unknown_item,
            already_known,
            new_items,
            new_users,
            first_interactions,
            samples: samples.len(),
        };
        let train = self.train.get_or_insert_with(Vec::new);
        let start = train.len();
        train.extend(samples);
        Ok((report, start..train.len()))
    }
}

// ------------------------------------------------------------------------------------------
// D3-format directories (info/*.txt + {train,valid,test}/*.csv)
// ------------------------------------------------------------------------------------------

fn single_file(dir: &Path, extension: &str) -> Result<Option<PathBuf>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(Error::mismatch(
            format!("{}: *.{extension} files", dir.display()),
            "exactly one",
            n,
        )),
    }
}

/// Reads a D3 `info/*.txt` catalog: `title<TAB>id` or `semantic-id<TAB>title<TAB>id` per line.
fn read_d3_info(path: &Path) -> Result<Catalog> {
    let file = path.display().to_string();
    let mut items = Vec::new();
    bounded_lines(path, |line, line_no| {
        let fields: Vec<&str> = line.split('\t').collect();
        let (title, id) = match fields.as_slice() {
            [title, id] => (title.to_string(), id.trim()),
            [sid, title, id] if sid.starts_with('<') => (title.to_string(), id.trim()),
            [rest @ .., id] if rest.len() >= 2 => (rest.join("\t"), id.trim()),
            _ => {
                return Err(Error::parse(
                    &file,
                    line_no,
                    "line",
                    "expected `title<TAB>id` or `semantic-id<TAB>title<TAB>id`",
                ))
            }
        };
        if id.is_empty() {
            return Err(Error::parse(&file, line_no, "id", "empty item id"));
        }
        items.push(Item {
            id: id.to_string(),
            title,
        });
        Ok(())
    })?;
    if items.is_empty() {
        return Err(Error::Empty {
            what: format!("item catalog {file}"),
            detail: String::new(),
        });
    }
    Catalog::new(items, &file)
}

fn py_list_cell(
    record: &csv::StringRecord,
    col: usize,
    file: &str,
    line: u64,
    field: &str,
) -> Result<Vec<PyValue>> {
    parse_list(&record[col])
        .map_err(|m| Error::parse(file, line, field, format!("malformed list literal: {m}")))
}

/// Reads one D3 split CSV (either column layout) against `catalog`.
fn read_d3_split(path: &Path, catalog: &Catalog) -> Result<Vec<Sample>> {
    let mut table = CsvTable::open(path)?;
    let file = table.file.clone();
    let history_col = table.column("history_item_id")?;
    let target_col = table.column("item_id")?;
    let history_title_col = table.column("history_item_title")?;
    let title_col = table.column("item_title")?;
    let user_col = table.optional_column("user_id");
    let time_col = table.optional_column("timestamp");
    let mut samples = Vec::new();
    table.for_each(|record, line| {
        if record[history_col].len() > MAX_HISTORY_CELL * 64 {
            return Err(Error::parse(
                &file,
                line,
                "history_item_id",
                format!(
                    "{} bytes: longer than any history of {MAX_HISTORY_CELL} items",
                    record[history_col].len()
                ),
            ));
        }
        let ids = py_list_cell(record, history_col, &file, line, "history_item_id")?;
        if ids.len() > MAX_HISTORY_CELL {
            return Err(Error::parse(
                &file,
                line,
                "history_item_id",
                format!("{} history items (at most {MAX_HISTORY_CELL})", ids.len()),
            ));
        }
        let titles = py_list_cell(record, history_title_col, &file, line, "history_item_title")?;
        if titles.len() != ids.len() {
            return Err(Error::parse(
                &file,
                line,
                "history_item_title",
                format!("{} titles for {} history item ids", titles.len(), ids.len()),
            ));
        }
        crate::data::catalog::check_title(&record[title_col])
            .map_err(|m| Error::parse(&file, line, "item_title", m))?;
        let history = ids
            .iter()
            .map(|v| {
                let id = v.as_id().ok_or_else(|| {
                    Error::parse(
                        &file,
                        line,
                        "history_item_id",
                        format!("expected an id, found {v:?}"),
                    )
                })?;
                catalog.index_of(&id).ok_or_else(|| {
                    Error::parse(
                        &file,
                        line,
                        "history_item_id",
                        format!("item id `{id}` is not in the catalog"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let target_id = record[target_col].trim();
        let target = catalog.index_of(target_id).ok_or_else(|| {
            Error::parse(
                &file,
                line,
                "item_id",
                format!("item id `{target_id}` is not in the catalog"),
            )
        })?;
        let timestamp = match time_col {
            Some(c) => Some(parse_timestamp(&record[c]).ok_or_else(|| {
                Error::parse(
                    &file,
                    line,
                    "timestamp",
                    format!("expected an integer, found {:?}", &record[c]),
                )
            })?),
            None => None,
        };
        samples.push(Sample {
            user: user_col.map(|c| record[c].to_string()).unwrap_or_default(),
            history,
            target,
            timestamp,
        });
        Ok(())
    })?;
    Ok(samples)
}

/// Loads a D3-format directory: `info/*.txt` and whichever of `train/`, `valid/`, `test/`
/// hold a CSV. Absent splits stay `None` (and [`Dataset::split`] reports them).
pub fn load_d3_dir(dir: &Path) -> Result<Dataset> {
    let info = single_file(&dir.join("info"), "txt")?.ok_or_else(|| Error::Empty {
        what: format!("{}", dir.join("info").display()),
        detail: " (no info/*.txt catalog: is this a D3-format directory?)".into(),
    })?;
    let catalog = read_d3_info(&info)?;
    let mut splits: [Option<Vec<Sample>>; 3] = [None, None, None];
    for (slot, split) in splits.iter_mut().zip(Split::ALL) {
        if let Some(csv) = single_file(&dir.join(split.name()), "csv")? {
            *slot = Some(read_d3_split(&csv, &catalog)?);
        }
    }
    if splits.iter().all(Option::is_none) {
        return Err(Error::Empty {
            what: dir.display().to_string(),
            detail: " (no train/, valid/ or test/ CSV found)".into(),
        });
    }
    let [train, valid, test] = splits;
    Ok(Dataset {
        name: dir_name(dir),
        catalog,
        train,
        valid,
        test,
    })
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

// ------------------------------------------------------------------------------------------
// Prepared dataset directory (JSON lines)
// ------------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct SampleRecord {
    user: String,
    history: Vec<String>,
    target: String,
    timestamp: Option<i64>,
}

/// `dataset.json` of a prepared directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// Dataset name.
    pub name: String,
    /// Number of catalog items.
    pub items: usize,
    /// Samples per split; absent splits are `null`.
    pub train: Option<usize>,
    /// Validation samples.
    pub valid: Option<usize>,
    /// Test samples.
    pub test: Option<usize>,
}

fn write_jsonl<T: Serialize>(path: &Path, rows: impl Iterator<Item = T>) -> Result<()> {
    let file = fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = BufWriter::new(file);
    for row in rows {
        serde_json::to_writer(&mut out, &row).map_err(|e| Error::Json {
            file: path.display().to_string(),
            source: e,
        })?;
        out.write_all(b"\n").map_err(|e| Error::io(path, e))?;
    }
    out.flush().map_err(|e| Error::io(path, e))
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(
    path: &Path,
    mut row: impl FnMut(T, u64) -> Result<()>,
) -> Result<()> {
    bounded_lines(path, |line, line_no| {
        let value = serde_json::from_str(line).map_err(|e| {
            Error::parse(path.display().to_string(), line_no, "json", e.to_string())
        })?;
        row(value, line_no)
    })
}

impl Dataset {
    /// Writes the prepared directory (creating it), replacing any earlier content.
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let catalog = &self.catalog;
        write_jsonl(&dir.join("catalog.jsonl"), catalog.items())?;
        for split in Split::ALL {
            let path = dir.join(format!("{split}.jsonl"));
            match self.split(split) {
                Ok(samples) => write_jsonl(
                    &path,
                    samples.iter().map(|s| SampleRecord {
                        user: s.user.clone(),
                        history: s
                            .history
                            .iter()
                            .map(|&i| catalog.item(i).id.to_string())
                            .collect(),
                        target: catalog.item(s.target).id.to_string(),
                        timestamp: s.timestamp,
                    }),
                )?,
                Err(_) if path.exists() => {
                    fs::remove_file(&path).map_err(|e| Error::io(&path, e))?
                }
                Err(_) => {}
            }
        }
        let meta = DatasetMeta {
            name: self.name.clone(),
            items: catalog.len(),
            train: self.train.as_ref().map(Vec::len),
            valid: self.valid.as_ref().map(Vec::len),
            test: self.test.as_ref().map(Vec::len),
        };
        let path = dir.join("dataset.json");
        let text = serde_json::to_string_pretty(&meta).expect("metadata serializes");
        fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))
    }

    /// Reads a prepared directory written by [`Dataset::write_dir`].
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let meta_path = dir.join("dataset.json");
        let meta_text = fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let meta: DatasetMeta = serde_json::from_str(&meta_text).map_err(|e| Error::Json {
            file: meta_path.display().to_string(),
            source: e,
        })?;
        let catalog_path = dir.join("catalog.jsonl");
        let mut items = Vec::new();
        read_jsonl(&catalog_path, |item: Item, _| {
            items.push(item);
            Ok(())
        })?;
        if items.is_empty() {
            return Err(Error::Empty {
                what: catalog_path.display().to_string(),
                detail: String::new(),
            });
        }
        let catalog = Catalog::new(items, &catalog_path.display().to_string())?;
        let mut splits: [Option<Vec<Sample>>; 3] = [None, None, None];
        for (slot, split) in splits.iter_mut().zip(Split::ALL) {
            let path = dir.join(format!("{split}.jsonl"));
            if !path.exists() {
                continue;
            }
            let file = path.display().to_string();
            let mut samples = Vec::new();
            read_jsonl(&path, |r: SampleRecord, line| {
                let lookup = |id: &str, field: &str| {
                    catalog.index_of(id).ok_or_else(|| {
                        Error::parse(
                            &file,
                            line,
                            field,
                            format!("item id `{id}` is not in the catalog"),
                        )
                    })
                };
                samples.push(Sample {
                    history: r
                        .history
                        .iter()
                        .map(|id| lookup(id, "history"))
                        .collect::<Result<_>>()?,
                    target: lookup(&r.target, "target")?,
                    user: r.user,
                    timestamp: r.timestamp,
                });
                Ok(())
            })?;
            *slot = Some(samples);
        }
        let [train, valid, test] = splits;
        let dataset = Dataset {
            name: meta.name.clone(),
            catalog,
            train,
            valid,
            test,
        };
        let found = dataset.counts().map(|(_, c)| c);
        let expected = [meta.train, meta.valid, meta.test];
        if found != expected || meta.items != dataset.catalog.len() {
            return Err(Error::mismatch(
                format!(
                    "{}: counts (items; train, valid, test)",
                    meta_path.display()
                ),
                format!("{}; {expected:?}", meta.items),
                format!("{}; {found:?} in the .jsonl files", dataset.catalog.len()),
            ));
        }
        Ok(dataset)
    }
}
