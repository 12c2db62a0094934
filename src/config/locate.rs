//! Turns a key path (`target[2].maintenance_window.schedule`) into a line and column of the
//! config text, so every message points at the place to fix.

use toml_edit::{ImDocument, Item, Value};

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|part| !part.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            let key = &rest[..open];
            if !key.is_empty() {
                segments.push(Segment::Key(key.to_owned()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(index) = stripped[..close].parse() {
                    segments.push(Segment::Index(index));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            segments.push(Segment::Key(rest.to_owned()));
        }
    }
    segments
}

/// A place in the parsed document: an item (table, array of tables, value) or an inline value.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a toml_edit::Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    /// The child named by `segment` and the offset where it starts.
    fn child(self, segment: &Segment) -> Option<(Option<usize>, Node<'a>)> {
        match (self, segment) {
            (Node::Item(Item::Table(table)), Segment::Key(_)) => Node::Table(table).child(segment),
            (Node::Item(Item::Value(value)), _) => Node::Value(value).child(segment),
            (Node::Item(Item::ArrayOfTables(array)), Segment::Index(index)) => {
                let table = array.get(*index)?;
                Some((table.span().map(|span| span.start), Node::Table(table)))
            }
            (Node::Table(table), Segment::Key(key)) => {
                let (found, next) = table.get_key_value(key)?;
                Some((found.span().map(|span| span.start), Node::Item(next)))
            }
            (Node::Value(Value::InlineTable(table)), Segment::Key(key)) => {
                let (found, next) = table.get_key_value(key)?;
                Some((found.span().map(|span| span.start), Node::Item(next)))
            }
            (Node::Value(Value::Array(array)), Segment::Index(index)) => {
                let next = array.get(*index)?;
                Some((next.span().map(|span| span.start), Node::Value(next)))
            }
            _ => None,
        }
    }
}

/// The document parsed once, with the byte offset of every line start: locating an issue
/// walks its key path through the parsed tree (a hash lookup per key, an index per array
/// element) and finds its line by binary search, so locating every issue of a config is
/// linear in the size of the config (a 50,000-issue config is not re-parsed 50,000 times).
pub struct Locator<'text> {
    text: &'text str,
    document: Option<ImDocument<String>>,
    line_starts: Vec<usize>,
}

impl<'text> Locator<'text> {
    /// Parses `text` once; a text that is not TOML locates nothing by path, only by offset.
    pub fn new(text: &'text str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(index, _)| index + 1))
            .collect();
        Self {
            text,
            document: ImDocument::parse(text.to_owned()).ok(),
            line_starts,
        }
    }

    /// Finds the deepest existing element of `path` and returns where it starts: the key
    /// itself for a table entry, the value for an array element.
    pub fn locate(&self, path: &str) -> Option<Position> {
        let document = self.document.as_ref()?;
        let mut node = Node::Table(document.as_table());
        let mut best = None;
        for segment in split_path(path) {
            let Some((start, next)) = node.child(&segment) else {
                break;
            };
            best = start.or(best);
            node = next;
        }
        best.map(|offset| self.position_of(offset))
    }

    /// Line and column (1-based, in characters) of a byte offset.
    pub fn position_of(&self, offset: usize) -> Position {
        let offset = self
            .text
            .floor_char_boundary_compat(offset.min(self.text.len()));
        let line_index = self
            .line_starts
            .partition_point(|start| *start <= offset)
            .saturating_sub(1);
        let line_start = self.line_starts.get(line_index).copied().unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        Position {
            line: line_index + 1,
            column,
        }
    }
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, index: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut index: usize) -> usize {
        while index > 0 && !self.is_char_boundary(index) {
            index -= 1;
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[daemon]\nstate_dir = \"/x\"\n\n[[target]]\nname = \"a\"\n\n[[target]]\nname = \"b\"\nmaintenance_window = { schedule = \"bad\", duration = \"2h\" }\n";

    #[test]
    fn finds_keys_in_tables_arrays_and_inline_tables() {
        let locator = Locator::new(TEXT);
        let locate = |path: &str| locator.locate(path);
        assert_eq!(
            locate("daemon.state_dir"),
            Some(Position { line: 2, column: 1 })
        );
        assert_eq!(
            locate("target[1].name"),
            Some(Position { line: 8, column: 1 })
        );
        assert_eq!(
            locate("target[1].maintenance_window.schedule"),
            Some(Position {
                line: 9,
                column: 24
            })
        );
        // Missing leaf: the deepest existing parent.
        assert_eq!(
            locate("target[1].nothing"),
            Some(Position { line: 7, column: 1 })
        );
    }

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a = 1\nb = \"é\" # x\n\nc = 2";
        let locator = Locator::new(text);
        assert_eq!(locator.position_of(0), Position { line: 1, column: 1 });
        let hash = text.find('#').unwrap();
        assert_eq!(locator.position_of(hash), Position { line: 2, column: 9 });
        let c = text.find('c').unwrap();
        assert_eq!(locator.position_of(c), Position { line: 4, column: 1 });
        assert_eq!(locator.position_of(text.len() + 10).line, 4);
        assert_eq!(locator.locate("c"), Some(Position { line: 4, column: 1 }));
        assert_eq!(Locator::new("not = [toml").locate("not"), None);
    }
}
