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

/// Finds the deepest existing element of `path` in `text` and returns where it starts: the
/// key itself for a table entry, the value for an array element.
pub fn locate(text: &str, path: &str) -> Option<Position> {
    let document = ImDocument::parse(text.to_owned()).ok()?;
    let mut node = Node::Table(document.as_table());
    let mut best = None;
    for segment in split_path(path) {
        let Some((start, next)) = node.child(&segment) else {
            break;
        };
        best = start.or(best);
        node = next;
    }
    best.map(|offset| position_of(text, offset))
}

/// Line and column (1-based, in characters) of a byte offset.
pub fn position_of(text: &str, offset: usize) -> Position {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary_compat(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|last| last.chars().count())
        .unwrap_or(0)
        + 1;
    Position { line, column }
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
        assert_eq!(
            locate(TEXT, "daemon.state_dir"),
            Some(Position { line: 2, column: 1 })
        );
        assert_eq!(
            locate(TEXT, "target[1].name"),
            Some(Position { line: 8, column: 1 })
        );
        assert_eq!(
            locate(TEXT, "target[1].maintenance_window.schedule"),
            Some(Position {
                line: 9,
                column: 24
            })
        );
        // Missing leaf: the deepest existing parent.
        assert_eq!(
            locate(TEXT, "target[1].nothing"),
            Some(Position { line: 7, column: 1 })
        );
    }
}
