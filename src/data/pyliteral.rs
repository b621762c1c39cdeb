//! A parser for the Python list literals found in D3-format CSV cells, such as
//! `['Freaks of Nature', "Don't Stop", 'a \'b\'']` or `[5198, 3227]`.

/// One element of a Python list literal.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// A quoted string, with escapes resolved.
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
}

impl PyValue {
    /// The value as an identifier string (strings as-is, integers in decimal).
    pub fn as_id(&self) -> Option<String> {
        match self {
            PyValue::Str(s) => Some(s.clone()),
            PyValue::Int(i) => Some(i.to_string()),
            PyValue::Float(_) => None,
        }
    }
}

/// Parses a flat Python list literal of strings and numbers; the error says what and where.
pub fn parse_list(text: &str) -> Result<Vec<PyValue>, String> {
    let mut parser = Parser {
        chars: text.char_indices().peekable(),
        text,
    };
    parser.skip_ws();
    parser.expect('[')?;
    let mut values = Vec::new();
    loop {
        parser.skip_ws();
        match parser.peek() {
            Some(']') => {
                parser.next();
                break;
            }
            None => return Err("unterminated list: missing `]`".into()),
            _ => {}
        }
        values.push(parser.value()?);
        parser.skip_ws();
        match parser.next() {
            Some((_, ',')) => continue,
            Some((_, ']')) => break,
            Some((at, c)) => return Err(format!("expected `,` or `]` at byte {at}, found `{c}`")),
            None => return Err("unterminated list: missing `]`".into()),
        }
    }
    parser.skip_ws();
    if let Some((at, c)) = parser.next() {
        return Err(format!("unexpected `{c}` at byte {at} after the list"));
    }
    Ok(values)
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|&(_, c)| c)
    }

    fn next(&mut self) -> Option<(usize, char)> {
        self.chars.next()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_whitespace()) {
            self.next();
        }
    }

    fn expect(&mut self, want: char) -> Result<(), String> {
        match self.next() {
            Some((_, c)) if c == want => Ok(()),
            Some((at, c)) => Err(format!("expected `{want}` at byte {at}, found `{c}`")),
            None => Err(format!("expected `{want}`, found end of text")),
        }
    }

    fn value(&mut self) -> Result<PyValue, String> {
        match self.peek() {
            Some(q @ ('\'' | '"')) => {
                self.next();
                self.string(q).map(PyValue::Str)
            }
            Some(c) if c == '-' || c == '+' || c.is_ascii_digit() || c == '.' => self.number(),
            Some(c) => Err(format!("expected a string or number, found `{c}`")),
            None => Err("expected a value, found end of text".into()),
        }
    }

    fn number(&mut self) -> Result<PyValue, String> {
        let start = self
            .chars
            .peek()
            .map(|&(i, _)| i)
            .unwrap_or(self.text.len());
        let mut end = start;
        while let Some(&(i, c)) = self.chars.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.' | '_') {
                end = i + c.len_utf8();
                self.next();
            } else {
                break;
            }
        }
        let literal = &self.text[start..end];
        if let Ok(i) = literal.parse::<i64>() {
            return Ok(PyValue::Int(i));
        }
        literal
            .parse::<f64>()
            .map(PyValue::Float)
            .map_err(|_| format!("malformed number `{literal}`"))
    }

    fn string(&mut self, quote: char) -> Result<String, String> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(format!("unterminated string (missing closing {quote})")),
                Some((_, c)) if c == quote => return Ok(out),
                Some((_, '\\')) => match self.next() {
                    None => return Err("unterminated escape at end of text".into()),
                    Some((_, e)) => match e {
                        '\\' | '\'' | '"' => out.push(e),
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '0' => out.push('\0'),
                        'x' => out.push(self.hex_escape(2)?),
                        'u' => out.push(self.hex_escape(4)?),
                        'U' => out.push(self.hex_escape(8)?),
                        '\n' => {}
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    },
                },
                Some((_, c)) => out.push(c),
            }
        }
    }

    fn hex_escape(&mut self, digits: usize) -> Result<char, String> {
        let mut code = 0u32;
        for _ in 0..digits {
            let (_, c) = self.next().ok_or("truncated hex escape")?;
            let d = c
                .to_digit(16)
                .ok_or_else(|| format!("bad hex digit `{c}` in escape"))?;
            code = code * 16 + d;
        }
        char::from_u32(code).ok_or_else(|| format!("invalid code point {code:#x} in escape"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_with_quotes_commas_and_escapes() {
        let v = parse_list(r#"['a, b', "Don't Stop", 'It\'s', 'caf\xe9 \u00e9', '']"#).unwrap();
        let s: Vec<_> = v.iter().map(|v| v.as_id().unwrap()).collect();
        assert_eq!(s, ["a, b", "Don't Stop", "It's", "café é", ""]);
    }

    #[test]
    fn numbers_and_empty() {
        assert_eq!(
            parse_list("[5198, -3, 2.5]").unwrap(),
            [PyValue::Int(5198), PyValue::Int(-3), PyValue::Float(2.5)]
        );
        assert!(parse_list(" [ ] ").unwrap().is_empty());
    }

    #[test]
    fn malformed_literals_are_rejected() {
        for bad in ["", "['a'", "['a' 'b']", "[a]", "['a'] x", "[1.2.3]", "'a'"] {
            assert!(parse_list(bad).is_err(), "{bad:?} should fail");
        }
    }
}
