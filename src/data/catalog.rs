//! The item catalog: ids and titles. Items are identified by id (a string, as in the source
//! data); titles are untrusted display text, kept byte-exact and never used as identifiers.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Dense index of an item inside a [`Catalog`] (0..len).
pub type ItemIndex = u32;

/// Items by count (train targets, memory states), most first, ties by index; the first `k`.
/// The popularity baseline and the answer for an empty history.
pub fn popularity_ranking(counts: &[u32], k: usize) -> Vec<ItemIndex> {
    let mut order: Vec<ItemIndex> = (0..counts.len() as ItemIndex).collect();
    order.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Items whose count is 0 (no memory state: cold-start items), in catalog order.
pub fn stateless_items(counts: &[u32]) -> Vec<ItemIndex> {
    (0..counts.len())
        .filter(|&i| counts[i] == 0)
        .map(|i| i as ItemIndex)
        .collect()
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Identifier from the source data (unique within the catalog).
    pub id: String,
    /// Display title (may repeat across items, may contain any Unicode).
    pub title: String,
}

/// A borrowed catalog entry (what [`Catalog::item`] and [`ItemTexts::get`] return).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ItemRef<'a> {
    /// Identifier from the source data.
    pub id: &'a str,
    /// Display title.
    pub title: &'a str,
}

impl ItemRef<'_> {
    /// An owned copy.
    pub fn to_item(self) -> Item {
        Item {
            id: self.id.to_string(),
            title: self.title.to_string(),
        }
    }
}

/// The ids and titles of a list of items in one text buffer with two end offsets per item:
/// about 8 bytes per item besides the text, where two `String`s cost two headers and two heap
/// blocks, in a browser's wasm memory that never shrinks. What a [`Catalog`] and a blob hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemTexts {
    text: String,
    /// Per item: where its id ends, where its title ends (its id starts where the previous
    /// title ended).
    ends: Vec<u32>,
}

impl ItemTexts {
    /// An empty list with room for `items` items of `bytes` bytes of text in all.
    pub fn with_capacity(items: usize, bytes: usize) -> Self {
        ItemTexts {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(2 * items),
        }
    }

    /// The ids and titles of `items`.
    pub fn from_items(items: &[Item]) -> Result<Self> {
        let bytes = items.iter().map(|i| i.id.len() + i.title.len()).sum();
        let mut texts = ItemTexts::with_capacity(items.len(), bytes);
        for item in items {
            texts.push(&item.id, &item.title)?;
        }
        Ok(texts)
    }

    /// Makes room for `items` more items with `bytes` more bytes of text, growing to exactly
    /// that (not by doubling: wasm memory never shrinks, so a doubled buffer stays).
    pub fn reserve_exact(&mut self, items: usize, bytes: usize) {
        self.text.reserve_exact(bytes);
        self.ends.reserve_exact(2 * items);
    }

    /// Appends an item. Fails when the text would pass 4 GiB (offsets are 32-bit).
    pub fn push(&mut self, id: &str, title: &str) -> Result<()> {
        if self.text.len() + id.len() + title.len() > u32::MAX as usize {
            return Err(Error::invalid(
                "catalog",
                format!("ids and titles above {} bytes in all", u32::MAX),
            ));
        }
        self.text.push_str(id);
        self.ends.push(self.text.len() as u32);
        self.text.push_str(title);
        self.ends.push(self.text.len() as u32);
        Ok(())
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The item at `index` (panics past the end, like a slice).
    pub fn get(&self, index: usize) -> ItemRef<'_> {
        let start = if index == 0 {
            0
        } else {
            self.ends[2 * index - 1] as usize
        };
        let (id_end, title_end) = (
            self.ends[2 * index] as usize,
            self.ends[2 * index + 1] as usize,
        );
        ItemRef {
            id: &self.text[start..id_end],
            title: &self.text[id_end..title_end],
        }
    }

    /// Every item in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ItemRef<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// An ordered set of items with id lookup.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    items: ItemTexts,
    /// Item indices sorted by id (ties by index): the id lookup by binary search, 4 bytes per
    /// item. A hash map keyed by id would hold a second copy of every id (in the browser,
    /// whose wasm memory never shrinks).
    by_id: Vec<ItemIndex>,
}

impl Catalog {
    /// Builds a catalog; `source` names where the items came from for error messages.
    /// Rejects duplicate ids and titles containing line breaks (the first offending item in
    /// catalog order is named).
    pub fn new(items: Vec<Item>, source: &str) -> Result<Self> {
        Self::from_texts(ItemTexts::from_items(&items)?, source)
    }

    /// [`Catalog::new`] from ids and titles already in one buffer (a blob's), taken as they
    /// are: no copy.
    pub fn from_texts(items: ItemTexts, source: &str) -> Result<Self> {
        if items.len() > ItemIndex::MAX as usize {
            return Err(Error::mismatch(
                format!("{source}: item count"),
                format!("at most {}", ItemIndex::MAX),
                items.len(),
            ));
        }
        let id = |i: ItemIndex| items.get(i as usize).id;
        let mut by_id: Vec<ItemIndex> = (0..items.len() as ItemIndex).collect();
        by_id.sort_unstable_by(|&a, &b| id(a).cmp(id(b)).then(a.cmp(&b)));
        // A repeated id: the later occurrences (each id's run is in index order).
        let first_duplicate = by_id
            .windows(2)
            .filter(|w| id(w[0]) == id(w[1]))
            .map(|w| w[1] as usize)
            .min();
        let first_bad_title = items
            .iter()
            .enumerate()
            .find_map(|(index, item)| check_title(item.title).err().map(|m| (index, m)));
        match (first_bad_title, first_duplicate) {
            (Some((index, message)), d) if d.is_none_or(|d| index <= d) => {
                Err(Error::parse(source, index as u64 + 1, "title", message))
            }
            (_, Some(index)) => Err(Error::parse(
                source,
                index as u64 + 1,
                "id",
                format!("duplicate item id `{}`", items.get(index).id),
            )),
            _ => Ok(Catalog { items, by_id }),
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the catalog has no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// All items in index order.
    pub fn items(&self) -> impl ExactSizeIterator<Item = ItemRef<'_>> + '_ {
        self.items.iter()
    }

    /// The ids and titles, as a blob stores them.
    pub fn texts(&self) -> &ItemTexts {
        &self.items
    }

    /// The item at `index`.
    pub fn item(&self, index: ItemIndex) -> ItemRef<'_> {
        self.items.get(index as usize)
    }

    /// The title of the item at `index`.
    pub fn title(&self, index: ItemIndex) -> &str {
        self.items.get(index as usize).title
    }

    /// Index of the item with this id, if any.
    pub fn index_of(&self, id: &str) -> Option<ItemIndex> {
        self.by_id
            .binary_search_by(|&i| self.items.get(i as usize).id.cmp(id))
            .ok()
            .map(|at| self.by_id[at])
    }

    /// Index of `id`, or an error naming `what` looked it up.
    pub fn require(&self, id: &str, what: &str) -> Result<ItemIndex> {
        self.index_of(id).ok_or_else(|| Error::UnknownItem {
            what: what.to_string(),
            id: id.to_string(),
        })
    }

    /// Indices of every item whose title is exactly `title` (titles may repeat).
    pub fn indices_with_title(&self, title: &str) -> Vec<ItemIndex> {
        (0..self.items.len() as ItemIndex)
            .filter(|&i| self.title(i) == title)
            .collect()
    }

    /// Resolves a user-given history entry: an item id first, else an exact title
    /// (the first item with that title). `None` when neither matches.
    pub fn resolve(&self, id_or_title: &str) -> Option<ItemIndex> {
        self.index_of(id_or_title).or_else(|| {
            self.items
                .iter()
                .position(|item| item.title == id_or_title)
                .map(|i| i as ItemIndex)
        })
    }
}

/// The one rule for acceptable titles: non-empty and single-line.
pub fn check_title(title: &str) -> std::result::Result<(), String> {
    if title.trim().is_empty() {
        return Err("empty title".into());
    }
    if title.contains(['\n', '\r']) {
        return Err(format!(
            "title contains a line break: {:?}",
            title.chars().take(80).collect::<String>()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(pairs: &[(&str, &str)]) -> Vec<Item> {
        pairs
            .iter()
            .map(|(id, title)| Item {
                id: id.to_string(),
                title: title.to_string(),
            })
            .collect()
    }

    #[test]
    fn every_id_is_found_and_unknown_ids_are_not() {
        let catalog = Catalog::new(
            items(&[
                ("b", "B"),
                ("a", "A"),
                ("10", "Ten"),
                ("1", "One"),
                ("", "Empty id"),
            ]),
            "t",
        )
        .unwrap();
        for (id, index) in [("b", 0), ("a", 1), ("10", 2), ("1", 3), ("", 4)] {
            assert_eq!(catalog.index_of(id), Some(index), "{id:?}");
        }
        for id in ["c", "0", "100", "B", " a"] {
            assert_eq!(catalog.index_of(id), None, "{id:?}");
        }
        assert_eq!(Catalog::new(Vec::new(), "t").unwrap().index_of("a"), None);
    }

    #[test]
    fn item_texts_give_back_every_id_and_title() {
        let pairs = [
            ("a", "A"),
            ("", "no id"),
            ("42", ""),
            ("ü", "Cité des enfants (1995)"),
        ];
        let texts = ItemTexts::from_items(&items(&pairs)).unwrap();
        assert_eq!(texts.len(), pairs.len());
        for (i, (id, title)) in pairs.iter().enumerate() {
            assert_eq!(texts.get(i), ItemRef { id, title });
        }
        assert!(texts.iter().map(ItemRef::to_item).eq(items(&pairs)));
        assert!(ItemTexts::default().is_empty());
    }

    /// The first offending item in catalog order is named, whichever rule it breaks.
    #[test]
    fn the_first_bad_item_is_named() {
        let cases: [(&[(&str, &str)], &str); 4] = [
            (
                &[("a", "A"), ("b", "B"), ("a", "C"), ("b", "D")],
                ":3: field `id`",
            ),
            (
                &[("x", "X"), ("y", "Y"), ("y", "Z"), ("x", "W")],
                ":3: field `id`",
            ),
            (
                &[("a", "A"), ("b", "bad\ntitle"), ("a", "C")],
                ":2: field `title`",
            ),
            (&[("a", "A"), ("a", "B"), ("c", " ")], ":2: field `id`"),
        ];
        for (pairs, expected) in cases {
            let err = Catalog::new(items(pairs), "catalog.jsonl")
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{pairs:?}: {err}");
        }
    }
}
