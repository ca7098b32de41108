//! InfluxQL lexer: query text → [`Token`]s, each with the byte offset where it starts.
//!
//! The lexer is a cursor over the text, so the parser backtracks by saving and restoring
//! [`Lexer::pos`]. Lexing follows influxql's `scanner.go`:
//!
//! * whitespace is space, tab, `\n`, `\r`; comments `-- … end of line` and `/* … */` are
//!   returned as [`TokenKind::Whitespace`] too;
//! * bare identifiers are `[A-Za-z_][A-Za-z0-9_]*` (ASCII only) and are keywords when they
//!   match one case-insensitively; `"quoted identifiers"` are never keywords;
//! * `'strings'` and `"identifiers"` accept the escapes `\n`, `\\`, `\'`, `\"`; any other
//!   escape, a raw newline or a missing closing quote is an error;
//! * numbers: `123` is an integer, `1.5`, `.5`, `5.` are floats; an integer immediately
//!   followed by a letter or `µ` is a duration (`10s`, `1h30m`, checked later by
//!   `duration::parse_duration`). Extension over InfluxDB 1.x: an exponent (`1e3`, `2.5E-3`)
//!   makes a float;
//! * a regex `/…/` (with `\/` for a slash; other backslashes are kept) is lexed only when the
//!   parser asks for one ([`Lexer::scan_regex`]), i.e. where InfluxQL allows a regex;
//!   elsewhere `/` is division.
//!
//! Invariants: no input makes the lexer panic; `pos` always lies on a char boundary; each
//! call either consumes at least one character or returns `Eof` / an error.

use super::error::ParseError;

macro_rules! keywords {
    ($($name:ident => $text:literal,)*) => {
        /// An InfluxQL reserved word. To use one as a name, quote it (`"name"`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum Keyword {
            $($name,)*
        }

        impl Keyword {
            /// The keyword in upper case, as InfluxDB prints it in error messages.
            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $(Keyword::$name => $text,)*
                }
            }

            /// The keyword spelled by `word` (any case), if any.
            pub(crate) fn lookup(word: &str) -> Option<Keyword> {
                // Keywords are 2 to 13 ASCII letters: skip the comparisons for anything else.
                if !(2..=13).contains(&word.len()) {
                    return None;
                }
                $(
                    if word.eq_ignore_ascii_case($text) {
                        return Some(Keyword::$name);
                    }
                )*
                None
            }
        }
    };
}

// influxql token.go: the keywords, plus AND, OR, TRUE and FALSE which are looked up the same way.
keywords! {
    All => "ALL",
    Alter => "ALTER",
    Analyze => "ANALYZE",
    And => "AND",
    Any => "ANY",
    As => "AS",
    Asc => "ASC",
    Begin => "BEGIN",
    By => "BY",
    Cardinality => "CARDINALITY",
    Continuous => "CONTINUOUS",
    Create => "CREATE",
    Database => "DATABASE",
    Databases => "DATABASES",
    Default => "DEFAULT",
    Delete => "DELETE",
    Desc => "DESC",
    Destinations => "DESTINATIONS",
    Diagnostics => "DIAGNOSTICS",
    Distinct => "DISTINCT",
    Drop => "DROP",
    Duration => "DURATION",
    End => "END",
    Every => "EVERY",
    Exact => "EXACT",
    Explain => "EXPLAIN",
    False => "FALSE",
    Field => "FIELD",
    For => "FOR",
    From => "FROM",
    Future => "FUTURE",
    Grant => "GRANT",
    Grants => "GRANTS",
    Group => "GROUP",
    Groups => "GROUPS",
    In => "IN",
    Inf => "INF",
    Insert => "INSERT",
    Into => "INTO",
    Key => "KEY",
    Keys => "KEYS",
    Kill => "KILL",
    Limit => "LIMIT",
    Measurement => "MEASUREMENT",
    Measurements => "MEASUREMENTS",
    Name => "NAME",
    Offset => "OFFSET",
    On => "ON",
    Or => "OR",
    Order => "ORDER",
    Password => "PASSWORD",
    Past => "PAST",
    Policies => "POLICIES",
    Policy => "POLICY",
    Privileges => "PRIVILEGES",
    Queries => "QUERIES",
    Query => "QUERY",
    Read => "READ",
    Replication => "REPLICATION",
    Resample => "RESAMPLE",
    Retention => "RETENTION",
    Revoke => "REVOKE",
    Select => "SELECT",
    Series => "SERIES",
    Set => "SET",
    Shard => "SHARD",
    Shards => "SHARDS",
    Show => "SHOW",
    Slimit => "SLIMIT",
    Soffset => "SOFFSET",
    Stats => "STATS",
    Subscription => "SUBSCRIPTION",
    Subscriptions => "SUBSCRIPTIONS",
    Tag => "TAG",
    To => "TO",
    True => "TRUE",
    User => "USER",
    Users => "USERS",
    Values => "VALUES",
    Verbose => "VERBOSE",
    Where => "WHERE",
    With => "WITH",
    Write => "WRITE",
}

/// What a token is. Literal text is kept for numbers and durations so that the parser can
/// report range errors at the right place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    Eof,
    /// Whitespace and comments.
    Whitespace,
    /// A bare or double-quoted identifier (quotes removed, escapes resolved).
    Ident(String),
    Keyword(Keyword),
    /// `$name`: bound parameters are not supported; the parser reports them.
    BoundParam(String),
    /// A single-quoted string (quotes removed, escapes resolved).
    Str(String),
    Integer(String),
    Number(String),
    Duration(String),
    /// Only produced by [`Lexer::scan_regex`]: the pattern with `\/` turned into `/`.
    Regex(String),
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitAnd,
    BitOr,
    BitXor,
    Eq,
    Neq,
    EqRegex,
    NeqRegex,
    Lt,
    Lte,
    Gt,
    Gte,
    LParen,
    RParen,
    Comma,
    Colon,
    DoubleColon,
    Semicolon,
    Dot,
    /// A character that starts no token.
    Illegal(char),
}

impl TokenKind {
    /// How the token is named after `found` in an error message (influxql's `tokstr`).
    pub(crate) fn describe(&self) -> String {
        let text = match self {
            TokenKind::Eof => "EOF",
            TokenKind::Whitespace => "WS",
            TokenKind::Ident(s) if s.is_empty() => "IDENT",
            TokenKind::Str(s) if s.is_empty() => "STRING",
            TokenKind::Ident(s)
            | TokenKind::Str(s)
            | TokenKind::Integer(s)
            | TokenKind::Number(s)
            | TokenKind::Duration(s)
            | TokenKind::Regex(s) => s,
            TokenKind::BoundParam(s) => return format!("${s}"),
            TokenKind::Keyword(k) => k.as_str(),
            TokenKind::Add => "+",
            TokenKind::Sub => "-",
            TokenKind::Mul => "*",
            TokenKind::Div => "/",
            TokenKind::Mod => "%",
            TokenKind::BitAnd => "&",
            TokenKind::BitOr => "|",
            TokenKind::BitXor => "^",
            TokenKind::Eq => "=",
            TokenKind::Neq => "!=",
            TokenKind::EqRegex => "=~",
            TokenKind::NeqRegex => "!~",
            TokenKind::Lt => "<",
            TokenKind::Lte => "<=",
            TokenKind::Gt => ">",
            TokenKind::Gte => ">=",
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::Comma => ",",
            TokenKind::Colon => ":",
            TokenKind::DoubleColon => "::",
            TokenKind::Semicolon => ";",
            TokenKind::Dot => ".",
            TokenKind::Illegal(c) => return c.to_string(),
        };
        text.to_string()
    }
}

/// A token and the byte offset of its first character.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) offset: usize,
}

/// A cursor over the query text.
#[derive(Debug, Clone)]
pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0 }
    }

    /// Byte offset of the next character.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Moves the cursor back (or forward) to a position previously returned by [`pos`].
    ///
    /// [`pos`]: Lexer::pos
    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// The character `n` characters ahead of the cursor.
    pub(crate) fn peek_char_at(&self, n: usize) -> Option<char> {
        self.src.get(self.pos..)?.chars().nth(n)
    }

    fn peek_char(&self) -> Option<char> {
        self.peek_char_at(0)
    }

    fn bump(&mut self, c: char) {
        self.pos += c.len_utf8();
    }

    fn eat_while(&mut self, pred: impl Fn(char) -> bool) {
        while let Some(c) = self.peek_char() {
            if !pred(c) {
                break;
            }
            self.bump(c);
        }
    }

    fn text_from(&self, start: usize) -> String {
        self.src
            .get(start..self.pos)
            .unwrap_or_default()
            .to_string()
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError::syntax(self.src, offset, message)
    }

    /// The next token, whitespace and comments included (as [`TokenKind::Whitespace`]).
    pub(crate) fn next_raw(&mut self) -> Result<Token, ParseError> {
        let start = self.pos;
        let token = |kind| {
            Ok(Token {
                kind,
                offset: start,
            })
        };
        let Some(c) = self.peek_char() else {
            return token(TokenKind::Eof);
        };
        let next = self.peek_char_at(1);
        if is_whitespace(c) || (c == '-' && next == Some('-')) || (c == '/' && next == Some('*')) {
            self.skip_trivia()?;
            return token(TokenKind::Whitespace);
        }
        if c.is_ascii_alphabetic() || c == '_' {
            self.eat_while(is_ident_char);
            let word = self.text_from(start);
            return token(match Keyword::lookup(&word) {
                Some(k) => TokenKind::Keyword(k),
                None => TokenKind::Ident(word),
            });
        }
        if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) {
            return token(self.scan_number(start));
        }
        match c {
            '"' => return token(TokenKind::Ident(self.scan_quoted('"')?)),
            '\'' => return token(TokenKind::Str(self.scan_quoted('\'')?)),
            _ => {}
        }
        self.bump(c);
        let kind = match c {
            '$' => {
                let name = if self.peek_char() == Some('"') {
                    self.scan_quoted('"')?
                } else {
                    let name_start = self.pos;
                    self.eat_while(is_ident_char);
                    self.text_from(name_start)
                };
                TokenKind::BoundParam(name)
            }
            '+' => TokenKind::Add,
            '-' => TokenKind::Sub,
            '*' => TokenKind::Mul,
            '/' => TokenKind::Div,
            '%' => TokenKind::Mod,
            '&' => TokenKind::BitAnd,
            '|' => TokenKind::BitOr,
            '^' => TokenKind::BitXor,
            '=' => self.pair('~', TokenKind::EqRegex, TokenKind::Eq),
            '!' => match self.peek_char() {
                Some('=') => self.pair('=', TokenKind::Neq, TokenKind::Neq),
                Some('~') => self.pair('~', TokenKind::NeqRegex, TokenKind::NeqRegex),
                _ => TokenKind::Illegal('!'),
            },
            '>' => self.pair('=', TokenKind::Gte, TokenKind::Gt),
            '<' => match self.peek_char() {
                Some('>') => self.pair('>', TokenKind::Neq, TokenKind::Neq),
                _ => self.pair('=', TokenKind::Lte, TokenKind::Lt),
            },
            '(' => TokenKind::LParen,
            ')' => TokenKind::RParen,
            ',' => TokenKind::Comma,
            ';' => TokenKind::Semicolon,
            ':' => self.pair(':', TokenKind::DoubleColon, TokenKind::Colon),
            '.' => TokenKind::Dot,
            other => TokenKind::Illegal(other),
        };
        token(kind)
    }

    /// `pair` if the next character is `second` (consumed), else `single`.
    fn pair(&mut self, second: char, pair: TokenKind, single: TokenKind) -> TokenKind {
        if self.peek_char() == Some(second) {
            self.bump(second);
            pair
        } else {
            single
        }
    }

    /// Consumes whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        loop {
            match (self.peek_char(), self.peek_char_at(1)) {
                (Some(c), _) if is_whitespace(c) => self.bump(c),
                (Some('-'), Some('-')) => {
                    self.eat_while(|c| c != '\n');
                }
                (Some('/'), Some('*')) => {
                    let start = self.pos;
                    self.pos += 2;
                    loop {
                        match self.peek_char() {
                            None => return Err(self.error(start, "unterminated comment")),
                            Some('*') if self.peek_char_at(1) == Some('/') => {
                                self.pos += 2;
                                break;
                            }
                            Some(c) => self.bump(c),
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Scans a quoted string or identifier; the cursor is on the opening quote.
    fn scan_quoted(&mut self, quote: char) -> Result<String, ParseError> {
        let start = self.pos;
        self.bump(quote);
        let what = if quote == '"' {
            "quoted identifier"
        } else {
            "string literal"
        };
        let mut out = String::new();
        loop {
            let Some(c) = self.peek_char() else {
                return Err(self.error(start, format!("unterminated {what}")));
            };
            let at = self.pos;
            self.bump(c);
            match c {
                c if c == quote => return Ok(out),
                '\n' => return Err(self.error(start, format!("newline in {what}"))),
                '\\' => {
                    let escaped = self.peek_char();
                    let resolved = match escaped {
                        Some('n') => '\n',
                        Some(e @ ('\\' | '"' | '\'')) => e,
                        Some(other) => {
                            return Err(self.error(at, format!("bad escape: \\{other}")));
                        }
                        None => return Err(self.error(start, format!("unterminated {what}"))),
                    };
                    if let Some(e) = escaped {
                        self.bump(e);
                    }
                    out.push(resolved);
                }
                c => out.push(c),
            }
        }
    }

    /// Scans a number or duration; the cursor is on a digit or on a `.` before a digit.
    fn scan_number(&mut self, start: usize) -> TokenKind {
        self.eat_while(|c| c.is_ascii_digit());
        let mut is_float = false;
        if self.peek_char() == Some('.') {
            // As InfluxDB: `5.` is the float 5 (the dot is consumed).
            is_float = true;
            self.pos += 1;
            self.eat_while(|c| c.is_ascii_digit());
        }
        if matches!(self.peek_char(), Some('e' | 'E')) {
            let digit_at = |n| {
                self.peek_char_at(n)
                    .is_some_and(|c: char| c.is_ascii_digit())
            };
            let sign = matches!(self.peek_char_at(1), Some('+' | '-'));
            if digit_at(1) || (sign && digit_at(2)) {
                is_float = true;
                self.pos += if sign { 2 } else { 1 };
                self.eat_while(|c| c.is_ascii_digit());
            }
        }
        if is_float {
            return TokenKind::Number(self.text_from(start));
        }
        if self
            .peek_char()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == 'µ')
        {
            self.eat_while(|c| c.is_ascii_alphanumeric() || c == 'µ');
            return TokenKind::Duration(self.text_from(start));
        }
        TokenKind::Integer(self.text_from(start))
    }

    /// Whether a regex starts at the cursor (`/`, but not a `/*` comment).
    pub(crate) fn at_regex(&self) -> bool {
        self.peek_char() == Some('/') && self.peek_char_at(1) != Some('*')
    }

    /// Scans a regex literal; the cursor is on the opening `/` (see [`at_regex`]). `\/` is a
    /// slash; any other backslash is kept for the regex engine (influxql's `ScanRegex`).
    ///
    /// [`at_regex`]: Lexer::at_regex
    pub(crate) fn scan_regex(&mut self) -> Result<Token, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek_char() {
                None => return Err(self.error(start, "bad regex: missing closing /")),
                Some('\n') => return Err(self.error(start, "bad regex: newline in regex")),
                Some('/') => {
                    self.pos += 1;
                    return Ok(Token {
                        kind: TokenKind::Regex(out),
                        offset: start,
                    });
                }
                Some('\\') => {
                    self.pos += 1;
                    if self.peek_char() == Some('/') {
                        self.pos += 1;
                        out.push('/');
                    } else {
                        out.push('\\');
                    }
                }
                Some(c) => {
                    self.bump(c);
                    out.push(c);
                }
            }
        }
    }
}
