//! Masking of one configuration source line, for the excerpt under an error and for naming the
//! key of a line. A small TOML scanner: it knows keys and values, quoted and unquoted values,
//! inline tables and arrays (a value inside inherits its key), comments, unterminated strings
//! (they run to the end of the line) and multi-line strings (`"""`/`'''`; a line inside one is
//! masked whole, so the scan starts at the top of the file). It never fails: whatever it does
//! not understand is masked.

use super::{MASK, is_secret_field, looks_secret, mask_message, mask_userinfo, quoted};

/// A source line with its secrets masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedLine {
    /// The masked line.
    pub text: String,
    /// Whether the line starts inside a multi-line string.
    pub in_string: bool,
    /// For each character of the original line (and one past its end): its index in `text`.
    map: Vec<usize>,
}

impl MaskedLine {
    /// The 1-based column in [`MaskedLine::text`] of a 1-based column of the original line.
    pub fn column(&self, column: usize) -> usize {
        let i = column.saturating_sub(1).min(self.map.len() - 1);
        self.map[i] + 1
    }

    /// The key assigned on the line (`key = …`), else the table header's name, else `None`.
    pub fn key(&self) -> Option<String> {
        if self.in_string {
            return None;
        }
        let l = self.text.trim();
        if l.starts_with('[') {
            let name = l.trim_start_matches('[').split(']').next()?.trim();
            return Some(name.to_string());
        }
        let (k, _) = l.split_once('=')?;
        Some(k.trim().to_string())
    }
}

/// Line `line` (1-based) of `text`, masked; `None` past the end.
pub fn masked_line(text: &str, line: usize) -> Option<MaskedLine> {
    let mut open = None;
    for (n, l) in text.split('\n').enumerate() {
        let l = l.strip_suffix('\r').unwrap_or(l);
        let in_string = open.is_some();
        let mut m = Masker::new(l, open);
        m.run();
        if n + 1 == line {
            return Some(MaskedLine {
                text: m.out,
                in_string,
                map: m.map,
            });
        }
        open = m.open;
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    /// Where a key (or a table header) may start.
    Key,
    /// After `=` or inside an array: a value.
    Value,
    /// After a value: only `,`, a closing bracket or a comment may follow.
    After,
}

/// An open inline table (`table`) or array, with the key it is the value of.
struct Ctx {
    key: String,
    table: bool,
}

struct Masker {
    c: Vec<char>,
    i: usize,
    out: String,
    out_len: usize,
    map: Vec<usize>,
    /// The delimiter of a multi-line string open at the end of the line.
    open: Option<&'static str>,
    stack: Vec<Ctx>,
    key: String,
    pos: Pos,
}

/// Unquoted values that may be shown: booleans, special floats and number/date shapes.
fn plain_scalar(run: &str) -> bool {
    matches!(
        run,
        "true" | "false" | "inf" | "+inf" | "-inf" | "nan" | "+nan" | "-nan"
    ) || (run.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-')
        && run
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '.' | ':'))
        && !looks_secret(run))
}

impl Masker {
    fn new(line: &str, open: Option<&'static str>) -> Masker {
        Masker {
            c: line.chars().collect(),
            i: 0,
            out: String::with_capacity(line.len()),
            out_len: 0,
            map: Vec::with_capacity(line.len() + 1),
            open,
            stack: Vec::new(),
            key: String::new(),
            pos: Pos::Key,
        }
    }

    /// Copies `n` characters as they are.
    fn copy(&mut self, n: usize) {
        for _ in 0..n {
            self.map.push(self.out_len);
            self.out.push(self.c[self.i]);
            self.out_len += 1;
            self.i += 1;
        }
    }

    /// Replaces `n` characters by `with`.
    fn replace(&mut self, n: usize, with: &str) {
        for _ in 0..n {
            self.map.push(self.out_len);
        }
        self.i += n;
        self.out.push_str(with);
        self.out_len += with.chars().count();
    }

    fn text(&self, from: usize, to: usize) -> String {
        self.c[from..to].iter().collect()
    }

    /// Whether the value at hand belongs to a secret-bearing key (its own or an enclosing one).
    fn secret_context(&self) -> bool {
        is_secret_field(&self.key) || self.stack.iter().any(|c| is_secret_field(&c.key))
    }

    fn run(&mut self) {
        if let Some(d) = self.open {
            self.inside_multiline(d);
        }
        while self.i < self.c.len() {
            let ch = self.c[self.i];
            if ch.is_whitespace() {
                self.copy(1);
            } else if ch == '#' {
                self.comment();
            } else {
                match self.pos {
                    Pos::Key => self.key_part(),
                    Pos::Value => self.value(),
                    Pos::After => self.after_value(),
                }
            }
        }
        self.map.push(self.out_len);
    }

    /// A line that starts inside a multi-line string: masked up to the closing delimiter.
    fn inside_multiline(&mut self, delim: &'static str) {
        let rest = self.text(0, self.c.len());
        match rest.find(delim) {
            None => {
                let n = self.c.len();
                self.replace(n, if n == 0 { "" } else { MASK });
            }
            Some(byte) => {
                let k = rest[..byte].chars().count();
                self.replace(k, if k == 0 { "" } else { MASK });
                self.copy(3);
                self.open = None;
                self.pos = Pos::After;
            }
        }
    }

    fn comment(&mut self) {
        self.copy(1);
        let n = self.c.len() - self.i;
        let masked = mask_message(&self.text(self.i, self.c.len()), "");
        self.replace(n, &masked);
    }

    /// Where a key may start: a table header, a closing `}`, or `key =` (else junk, masked).
    fn key_part(&mut self) {
        let ch = self.c[self.i];
        let line_start = self.c[..self.i].iter().all(|c| c.is_whitespace());
        if ch == '[' && self.stack.is_empty() && line_start {
            let mut j = self.i;
            while j < self.c.len() && self.c[j] != ']' {
                j += 1;
            }
            while j < self.c.len() && self.c[j] == ']' {
                j += 1;
            }
            let header = self.text(self.i, j);
            if looks_secret(header.trim_matches(|c| c == '[' || c == ']')) {
                self.replace(j - self.i, &format!("[{MASK}]"));
            } else {
                self.copy(j - self.i);
            }
            return;
        }
        match ch {
            '}' => return self.close(),
            ',' => return self.copy(1),
            _ => {}
        }
        let in_table = self.stack.last().is_some_and(|c| c.table);
        let (mut j, mut quote) = (self.i, None);
        while j < self.c.len() {
            let c = self.c[j];
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c == '=' || c == '#' || (in_table && (c == ',' || c == '}')) => break,
                None => {}
            }
            j += 1;
        }
        let region = self.text(self.i, j);
        if j < self.c.len() && self.c[j] == '=' {
            let name = region.trim().rsplit('.').next().unwrap_or_default();
            self.key = name
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_string();
            if looks_secret(&region) {
                self.replace(j - self.i, &format!("{MASK} "));
            } else {
                self.copy(j - self.i);
            }
            self.copy(1);
            self.pos = Pos::Value;
        } else {
            self.replace(j - self.i, MASK);
        }
    }

    fn value(&mut self) {
        let ch = self.c[self.i];
        match ch {
            '"' | '\'' => self.string(ch),
            '{' => {
                let key = std::mem::take(&mut self.key);
                self.stack.push(Ctx { key, table: true });
                self.copy(1);
                self.pos = Pos::Key;
            }
            '[' => {
                let key = self.key.clone();
                self.stack.push(Ctx { key, table: false });
                self.copy(1);
            }
            ']' | '}' => self.close(),
            ',' => self.copy(1),
            _ => {
                let n = self.bare_len();
                let run = self.text(self.i, self.i + n);
                if self.secret_context() || !plain_scalar(run.trim()) {
                    self.replace(n, MASK);
                } else {
                    self.copy(n);
                }
                self.pos = Pos::After;
            }
        }
    }

    /// Length of an unquoted value (up to `,`, a closing bracket or a comment; no trailing blanks).
    fn bare_len(&self) -> usize {
        let mut j = self.i;
        while j < self.c.len() && !matches!(self.c[j], ',' | ']' | '}' | '#') {
            j += 1;
        }
        while j > self.i + 1 && self.c[j - 1].is_whitespace() {
            j -= 1;
        }
        j - self.i
    }

    /// A quoted value: basic, literal, multi-line (maybe left open) or unterminated.
    fn string(&mut self, q: char) {
        let triple = self.c[self.i..].iter().take(3).all(|c| *c == q) && self.c.len() >= self.i + 3;
        let delim_len = if triple { 3 } else { 1 };
        let start = self.i + delim_len;
        let (content, end) = if triple {
            let rest = self.text(start, self.c.len());
            let d: String = [q; 3].iter().collect();
            match rest.find(&d) {
                Some(b) => (rest[..b].to_string(), start + rest[..b].chars().count()),
                None => (rest.clone(), self.c.len()),
            }
        } else if q == '"' {
            quoted(&self.c, start, q)
        } else {
            let (content, end) = quoted_literal(&self.c, start);
            (content, end)
        };
        let shown =
            if self.secret_context() || looks_secret(&content) || (triple && end == self.c.len()) {
                MASK.to_string()
            } else {
                mask_userinfo(&content)
            };
        self.copy(delim_len);
        self.replace(end - start, if content.is_empty() { "" } else { &shown });
        if end < self.c.len() {
            self.copy(delim_len);
        } else if triple {
            self.open = Some(if q == '"' { "\"\"\"" } else { "'''" });
        }
        self.pos = Pos::After;
    }

    fn after_value(&mut self) {
        match self.c[self.i] {
            ',' => {
                self.copy(1);
                self.pos = match self.stack.last() {
                    Some(c) if !c.table => Pos::Value,
                    _ => Pos::Key,
                };
            }
            ']' | '}' => self.close(),
            _ => {
                let n = self.bare_len();
                self.replace(n, MASK);
            }
        }
    }

    /// A closing `]` or `}`: back to the enclosing key.
    fn close(&mut self) {
        if let Some(ctx) = self.stack.pop() {
            self.key = ctx.key;
        }
        self.copy(1);
        self.pos = Pos::After;
    }
}

/// A literal string (`'…'`, no escapes) from `start`: its content and the index of the closing
/// quote (the line's length when there is none).
fn quoted_literal(c: &[char], start: usize) -> (String, usize) {
    let end = c[start..]
        .iter()
        .position(|ch| *ch == '\'')
        .map_or(c.len(), |p| start + p);
    (c[start..end].iter().collect(), end)
}
